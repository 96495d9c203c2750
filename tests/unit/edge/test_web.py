"""The web playground's routes (edge.web): every file of web/ served by Envoy itself,
after the API's routes and before the 404, shadowing none of them, with its content
type and the page's security headers; and a real Envoy serving them."""

from __future__ import annotations

import re
from pathlib import Path

from google.api import annotations_pb2
from voice.v1 import gateway_pb2

from edge import web
from edge.config import EdgeConfig
from edge.errors import OLD_SERVER_PATHS
from edge.paths import GRPC_ONLY_FILTER
from edge.render import render, write
from edge.routes import PUBLIC_GRPC_PREFIXES
from localstack.config import free_ports
from tests.integration.http_client import call
from tests.integration.stacks import envoy_spec, supervised

DESCRIPTOR = Path("gen/voice_v1.pb")
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


def _routes(config: dict, listener: int = 0) -> list[dict]:
    manager = config["static_resources"]["listeners"][listener]["filter_chains"][0]
    return manager["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]


def _page_routes(config: dict, listener: int = 0) -> list[dict]:
    return [r for r in _routes(config, listener) if r.get("name", "").startswith("web:")]


def _rest_paths() -> set[str]:
    """Every path the transcoder maps (templates as written)."""
    paths = set()
    for method in gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].methods:
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        for binding in (rule, *rule.additional_bindings):
            verb = binding.WhichOneof("pattern")
            if verb and verb != "custom":
                paths.add(getattr(binding, verb))
    return paths


def test_every_file_of_web_is_served_and_none_is_too_large_for_envoy():
    on_disk = {p.name for p in web.WEB_DIR.iterdir() if p.is_file() and not p.name.startswith(".")}
    assert set(web.FILES) == on_disk
    assert len(web.FILES) == len(web.PAGES)
    for name in web.FILES:
        assert (web.WEB_DIR / name).stat().st_size <= web.MAX_FILE_BYTES, name


def test_the_page_names_each_file_where_it_is_served():
    """index.html loads its stylesheet and app.js; the modules import the others."""
    served = {name: path for path, (name, _) in web.PAGES.items()}
    assert served["index.html"] == "/"
    text = {name: (web.WEB_DIR / name).read_text() for name in web.FILES}
    for name, path in served.items():
        if name == "index.html":
            continue
        assert path == f"/playground/{name}"
        assert any(f'"playground/{name}"' in text[other] or f'"./{name}"' in text[other]
                   for other in web.FILES if other != name), f"nothing loads {name}"


def test_the_page_routes_come_after_the_api_and_just_before_the_404():
    routes = _routes(render(EdgeConfig(descriptor=DESCRIPTOR)))
    pages = _page_routes(render(EdgeConfig(descriptor=DESCRIPTOR)))
    assert [r["match"]["path"] for r in pages] == list(web.PAGES)
    assert routes[-len(pages) - 1:-1] == pages
    assert routes[-1]["direct_response"]["status"] == 404
    # Behind CORS the preflight route goes between them and the 404: OPTIONS only.
    cors = _routes(render(EdgeConfig(descriptor=DESCRIPTOR, cors_origins=("https://a.b",))))
    assert cors[-len(pages) - 2:-2] == pages
    assert cors[-2]["match"]["headers"][0]["string_match"] == {"exact": "OPTIONS"}


def test_the_page_routes_shadow_no_api_grpc_or_old_server_path():
    for route in _page_routes(render(EdgeConfig(descriptor=DESCRIPTOR))):
        match = route["match"]
        assert set(match) == {"path", "headers"}  # one exact path, no prefix
        (method,) = match["headers"]
        assert method["name"] == ":method"
        regex = re.compile(method["string_match"]["safe_regex"]["regex"])
        assert [m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")
                if regex.fullmatch(m)] == ["GET", "HEAD"]
        path = match["path"]
        assert path not in OLD_SERVER_PATHS and path not in _rest_paths()
        assert not path.startswith(("/v1/", *PUBLIC_GRPC_PREFIXES))
        assert not any(rest.startswith(path) for rest in _rest_paths() if path != "/")


def test_each_file_has_its_type_the_security_headers_and_no_route_to_a_gateway():
    for route in _page_routes(render(EdgeConfig(descriptor=DESCRIPTOR))):
        name, _ = web.PAGES[route["match"]["path"]]
        assert route["direct_response"] == {
            "status": 200, "body": {"filename": str(web.WEB_DIR / name)}}
        assert "route" not in route
        headers = {h["header"]["key"]: h["header"]["value"] for h in route["response_headers_to_add"]}
        assert all(h["append_action"] == "OVERWRITE_IF_EXISTS_OR_ADD"
                   for h in route["response_headers_to_add"])
        assert headers["content-type"] == TYPES[Path(name).suffix] + "; charset=utf-8"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        csp = dict(d.split(" ", 1) for d in headers["content-security-policy"].split("; "))
        assert csp["default-src"] == "'none'"
        for directive in ("script-src", "style-src", "connect-src"):
            assert csp[directive] == "'self'"
        assert csp["media-src"] == "'self' blob:" and csp["frame-ancestors"] == "'none'"
        assert "unsafe" not in headers["content-security-policy"]
        # Only the guard that answers REST with a 404 is off: every other filter runs.
        assert route["typed_per_filter_config"] == {GRPC_ONLY_FILTER: {
            "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}}


def test_envoy_may_send_the_files_and_without_a_web_folder_there_is_no_playground(tmp_path):
    config = render(EdgeConfig(descriptor=DESCRIPTOR))
    route_config = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]["route_config"]
    assert route_config["max_direct_response_body_size_bytes"] == web.MAX_FILE_BYTES
    # The internal listener that answers 100-continue serves them as well.
    assert _page_routes(config, 1) == _page_routes(config)
    bare = render(EdgeConfig(descriptor=DESCRIPTOR, web_dir=None))
    assert _page_routes(bare) == []
    assert "max_direct_response_body_size_bytes" not in bare["static_resources"]["listeners"][0][
        "filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
    elsewhere = render(EdgeConfig(descriptor=DESCRIPTOR, web_dir=tmp_path))
    assert {r["direct_response"]["body"]["filename"] for r in _page_routes(elsewhere)} == {
        str(tmp_path / name) for name in web.FILES}


def test_envoy_serves_the_page_and_nothing_else_changes(tmp_path):
    """A real Envoy (no gateway behind it): the files with their headers, GET and HEAD
    only; the API's routes and the 404 as before."""
    api, admin, gateway = free_ports(3)
    config = write(EdgeConfig(descriptor=DESCRIPTOR.resolve(), listen_host="127.0.0.1",
                              listen_port=api, admin_port=admin, gateway_port=gateway),
                   tmp_path / "envoy.json")
    with supervised(specs=[envoy_spec(config, admin)], logs=tmp_path, watch=False):
        base = f"http://127.0.0.1:{api}"
        for path, (name, content_type) in web.PAGES.items():
            reply = call("GET", base + path)
            assert reply.status == 200, (path, reply.body)
            assert reply.body == (web.WEB_DIR / name).read_bytes()
            assert reply.headers["content-type"] == content_type
            assert reply.headers["content-security-policy"] == web.PAGE_CSP
            assert reply.headers["cache-control"] == "no-cache"
            head = call("HEAD", base + path)
            assert head.status == 200 and head.body == b""
        for method, path in (("POST", "/"), ("DELETE", "/playground/app.js"),
                             ("GET", "/playground/"), ("GET", "/index.html"),
                             ("GET", "/favicon.ico")):
            reply = call(method, base + path)
            assert reply.status == 404, (method, path)
            assert reply.json()["error"]["message"] == "no such route"
            assert "content-security-policy" not in reply.headers
        # The API is still the transcoder's: with no gateway, Envoy's 503 in the error shape.
        reply = call("GET", base + "/v1/voices")
        assert reply.status == 503 and reply.json()["error"]["status"] == "UNAVAILABLE"
