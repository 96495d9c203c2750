"""How the edge reads a request's path before it routes it.

The edge routes gRPC by path prefix (``/voice.v1.Gateway/``, health, reflection)
and REST by the transcoder's rules; anything else is a 404, and the internal
services (``voice.v1.TextToSpeech``, ``voice.v1.VoiceConversion``) have no route.
Envoy used to route the path as the client sent it, and pass it on as it was:
``POST /voice.v1.Gateway/../voice.v1.VoiceConversion/ListModels`` matched the
gateway's prefix and reached the gateway with ``..`` in it (503), as did
``%2e%2e``, ``..%2F`` and ``..%5C``. A server that resolved such a path would
have been one step from a service the edge is meant to hide.

Now the connection manager puts every path into one form before any filter or
route sees it, and the upstream gets that same form:

* ``normalize_path``: RFC 3986 normalization: ``.`` and ``..`` segments are
  resolved and percent-encoded unreserved characters decoded (``%2e`` is ``.``);
* ``path_with_escaped_slashes_action`` UNESCAPE_AND_FORWARD: ``%2F`` and ``%5C``
  are separators like ``/`` (and ``\\``), so an encoded slash cannot hide a
  ``..`` from the normalization, and the path routed is the path forwarded;
* ``merge_slashes``: ``//`` is ``/``.

So each trick names the path it resolves to: ``/voice.v1.VoiceConversion/...``
has no route (REST: 404 in the error shape; gRPC: UNIMPLEMENTED), and
``/voice.v1.Gateway/./ListVoices`` is ListVoices. The gRPC routes also match gRPC
requests only (``grpc`` in the route match: content type application/grpc or
application/grpc+...), so a REST request to a gRPC path is a 404 as well rather
than an HTTP/1 request the gateway cannot read. A transcoded REST call is routed
again after the transcoder has made it a gRPC call, and matches them then.

Only gRPC reaches a gateway. A REST request the transcoder leaves alone keeps
the route it first matched, and the JSON paths' buffering routes
(edge.fields.body_routes) point at the gateways: a query
parameter the transcoder did not know (before ``ignore_unknown_query_parameters``)
sent ``POST /v1/synthesize?t=1`` on as HTTP/1 JSON, which the gateway reset, and
the client got 503 "upstream connect error ... remote reset" for a request of its
own making. The last filter before the router (GRPC_ONLY_FILTER, grpc_only_filter)
answers any request that is not gRPC by then with the 404 the edge gives a path
it has no route for; a REST call the transcoder made gRPC, and gRPC, pass. The
other requests that reach the router as REST never get to it: CORS preflights
(the CORS filter ahead of it answers them all) and the 100-continue detour
(edge.expect_continue.continue_route, which turns the filter off).

Tests: tests/unit/edge/test_render.py, tests/integration/test_edge_limits.py,
tests/integration/test_edge_query.py.
"""

from __future__ import annotations

from edge import errors
from edge.envoy_types import lua_http_filter

GRPC_ONLY_FILTER = "voice.edge_grpc_only"
# What a client gets for a path the edge has no route for (edge.routes).
NO_ROUTE = "no such route"
# The connection manager's path options.
PATH_OPTIONS = {
    "normalize_path": True,
    "merge_slashes": True,
    "path_with_escaped_slashes_action": "UNESCAPE_AND_FORWARD",
}


def grpc_match(prefix: str) -> dict:
    """A route match for the gRPC calls under ``prefix``."""
    return {"prefix": prefix, "grpc": {}}


GRPC_ONLY_LUA = r'''
function envoy_on_request(handle)
  if not is_grpc(handle:headers():get("content-type")) then
    handle:respond({[":status"] = "404", ["content-type"] = "text/plain"}, NO_ROUTE)
  end
end
'''


def grpc_only_lua() -> str:
    """The guard's source: the 404's text, the gRPC test, then GRPC_ONLY_LUA."""
    return f'local NO_ROUTE = "{NO_ROUTE}"\n' + errors.IS_GRPC_LUA + GRPC_ONLY_LUA


def grpc_only_filter() -> dict:
    """The HTTP filter, last before the router, that lets only gRPC on to a gateway:
    a request that is still REST there (the transcoder did not map it) gets a 404."""
    return lua_http_filter(GRPC_ONLY_FILTER, grpc_only_lua())
