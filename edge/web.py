"""The web playground: the static files of web/ (index.html, its stylesheet and its
JavaScript modules), served by Envoy itself at ``/`` with no process behind it.

Each file is a route of its own, ahead of the 404 and after every API route, with
a ``direct_response`` whose body Envoy reads from the file when it loads its
configuration (so a changed file needs Envoy restarted; Kubernetes rolls the edge
pods when the ConfigMap ``edge-web`` changes, edge.k8s). The routes match exact
paths and GET (or HEAD) only, so they shadow nothing: the API is under ``/v1/``,
the old server's routes are ``/synthesize``, ``/tts`` and the like, gRPC is POST;
any other method on these paths, or any other path, is the edge's 404.

The page calls the public REST API on the same origin, nothing else: its
Content-Security-Policy (PAGE_CSP) allows scripts, styles and connections to the
page's own origin only, audio from ``blob:`` URLs (clips it made), and no frames,
forms or plugins. Every other filter of the edge applies to these routes as to
the API (the error shape, the body limit, JWT authentication and the rate limit
where configured), but the guard that lets only gRPC reach the router
(edge.paths), which the routes turn off: no request of theirs reaches a gateway.
So behind JWT authentication the page itself needs a bearer token, which a browser
does not send on its own: the playground is for edges without it.

Tests: tests/unit/edge/test_web.py, tests/browser/test_playground.py.
"""

from __future__ import annotations

from pathlib import Path

from edge.paths import GRPC_ONLY_FILTER

# The files in the repository: what the local stack serves (EdgeConfig.web_dir).
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
# Path -> (file in the web folder, its content type): the page at /, the rest under
# /playground/. The page names them relatively (playground/app.js), and the modules
# each other (./api.js), so it also works behind a path prefix.
_JS = "text/javascript; charset=utf-8"
PAGES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/playground/style.css": ("style.css", "text/css; charset=utf-8"),
    "/playground/app.js": ("app.js", _JS),
    "/playground/api.js": ("api.js", _JS),
    "/playground/audio.js": ("audio.js", _JS),
    "/playground/voices.js": ("voices.js", _JS),
}
FILES = tuple(name for name, _ in PAGES.values())
# Envoy refuses a configuration whose direct-response file is larger than the route
# configuration's max_direct_response_body_size_bytes (4 KiB unless set).
MAX_FILE_BYTES = 256 * 1024
# Same origin only; blob: for the clips the page plays back; a data: favicon, so the
# browser asks for no /favicon.ico (the edge's 404).
PAGE_CSP = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "media-src 'self' blob:",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
))
SECURITY_HEADERS = {
    "content-security-policy": PAGE_CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    # The files change with a release, not a URL: browsers check before reusing them.
    "cache-control": "no-cache",
}


def _headers(content_type: str) -> list[dict]:
    # Overwrite: a direct response with a body is text/plain unless told otherwise.
    return [
        {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        for key, value in {"content-type": content_type, **SECURITY_HEADERS}.items()
    ]


def page_routes(web_dir: Path) -> list[dict]:
    """A GET route per file of PAGES, read from ``web_dir`` by Envoy."""
    off = {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}
    return [
        {
            "name": f"web:{path}",
            "match": {
                "path": path,
                "headers": [
                    {"name": ":method", "string_match": {"safe_regex": {"regex": "GET|HEAD"}}}
                ],
            },
            "direct_response": {"status": 200, "body": {"filename": str(web_dir / name)}},
            "response_headers_to_add": _headers(content_type),
            # The guard would answer these REST requests with the 404 (edge.paths).
            "typed_per_filter_config": {GRPC_ONLY_FILTER: dict(off)},
        }
        for path, (name, content_type) in PAGES.items()
    ]
