"""Query strings on the REST routes, through the stack's real edge.

The old FastAPI server ignored a query parameter it did not know (``?t=1`` to bust a
cache); the edge does too, on every route, whatever the parameter's value. A parameter
that names a field of the request message binds it, as the transcoder has it, and must
be well-formed: a malformed percent-encoding, or bytes that are not UTF-8, are a 400 in
the error shape naming the parameter. And no REST request ever reaches a gateway
untranscoded (the gateway reset it, and the client got 503 "upstream connect error").
"""

from __future__ import annotations

import contextlib
import http.client
import json
from collections.abc import Iterator

import pytest
from google.api import annotations_pb2
from voice.v1 import gateway_pb2

from edge.config import EdgeConfig
from edge.errors import OLD_SERVER_PATHS
from edge.limits import MAX_HEADERS_KB
from edge.paths import GRPC_ONLY_FILTER
from edge.render import render
from localstack.config import free_ports
from tests.integration.http_client import Reply as PlainReply
from tests.integration.stacks import envoy_spec, supervised

GATEWAY = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"]
# Cache-busting and its cousins: none names a field of any request message (the
# google.api.HttpBody routes' message is their body: no parameter binds it).
UNKNOWN = "t=1712345678&_=%zz&flag&=x&utm_source=a%20b&content_type=%zz&data=%E9"
# Routes that would change the stack's state, were they implemented: left alone.
CHANGES_STATE = {("DELETE", "/config/reference-audio")}


class Reply(PlainReply):
    def error(self) -> dict:
        assert self.headers.get("content-type") == "application/json", (self.status, self.body)
        return self.json()["error"]


def send(port: int, method: str, target: str, body: bytes | None = None) -> Reply:
    """One request, its target sent byte for byte (no client re-quotes a ``%zz``)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"content-type": "application/json"} if body is not None else {}
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                     response.read())
    finally:
        connection.close()


def rest_routes() -> list:
    """(method, path) of every REST binding of voice.v1.Gateway, from the protos."""
    routes = set()
    for method in GATEWAY.methods:
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        for binding in (rule, *rule.additional_bindings):
            verb = binding.WhichOneof("pattern")
            routes.add((verb.upper(), getattr(binding, verb)))
    return [pytest.param(m, p, id=f"{m} {p}") for m, p in sorted(routes - CHANGES_STATE)]


def _body(method: str, path: str) -> bytes | None:
    """A body every route refuses quickly and the same way each time: no synthesis runs."""
    if method == "GET":
        return None
    return b"{}" if path.startswith("/v1/") and path != "/v1/audio/speech" else b"[]"


def _same_answer(plain: Reply, queried: Reply, path: str) -> None:
    assert queried.status == plain.status, (path, plain.body[:300], queried.body[:300])
    assert b"upstream connect error" not in queried.body, queried.body[:300]
    if plain.status >= 400:
        assert queried.error() == plain.error(), path
        if path in OLD_SERVER_PATHS:
            assert queried.json()["detail"] == plain.json()["detail"]
    else:
        assert queried.headers.get("content-type") == plain.headers.get("content-type")
        if plain.headers.get("content-type") == "application/json":
            assert sorted(queried.json()) == sorted(plain.json()), path


@pytest.mark.parametrize(("method", "path"), rest_routes())
def test_an_unknown_query_parameter_changes_no_answer(stack, method, path):
    body = _body(method, path)
    plain = send(stack.config.api_port, method, path, body)
    # The route's own answer (the old API's config changes are 501, by design), not the edge's.
    assert plain.status not in (404, 503), (path, plain.body[:300])
    _same_answer(plain, send(stack.config.api_port, method, f"{path}?{UNKNOWN}", body), path)


@pytest.mark.parametrize("path", ["/v1/voices/", "/health/", "/v1/synthesize/"])
def test_a_trailing_slash_with_a_query_is_the_route_still(stack, path):
    """The transcoder maps a path with a trailing slash as the path without it."""
    method = "POST" if "synthesize" in path else "GET"
    body = b"{}" if method == "POST" else None
    plain = send(stack.config.api_port, method, path.rstrip("/"), body)
    _same_answer(plain, send(stack.config.api_port, method, f"{path}?t=1", body), path)


@pytest.mark.parametrize("query", [
    "voice=no-such-voice",
    "t=1&voice=no-such-voice",  # beside an unknown one
    "voice=no%2Dsuch%2Dvoice",  # percent-encoded
    "vo%69ce=no-such-voice",  # the name too
])
def test_a_known_query_parameter_binds_its_field(stack, query):
    reply = send(stack.config.api_port, "POST", f"/v1/synthesize?{query}",
                 json.dumps({"text": "Hi."}).encode())
    assert reply.status == 404, reply.body[:300]  # the gateway looked the voice up
    assert "no-such-voice" in reply.error()["message"], reply.body[:300]


def test_a_nested_field_binds_by_its_dotted_name_and_its_type_is_checked(stack):
    reply = send(stack.config.api_port, "POST", "/v1/synthesize?sampling.seed=x",
                 b'{"text": "Hi."}')
    assert reply.status == 400, reply.body[:300]
    error = reply.error()
    assert error["status"] == "INVALID_ARGUMENT" and "sampling.seed" in error["message"], error


@pytest.mark.parametrize(("target", "named", "why"), [
    ("/v1/synthesize?text=%zz", "text", "malformed percent-encoding"),
    ("/v1/synthesize?t=1&voice=ab%2", "voice", "malformed percent-encoding"),
    ("/v1/synthesize?voice=%", "voice", "malformed percent-encoding"),
    ("/v1/synthesize:stream?te%78t=%zz", "text", "malformed percent-encoding"),
    ("/v1/synthesize?voice=%E9", "voice", "not UTF-8"),  # Latin-1, not UTF-8
    ("/v1/synthesize?voice=%ED%A0%80", "voice", "not UTF-8"),  # a surrogate
    ("/v1/tts?sampling.seed=%zz", "sampling.seed", "malformed percent-encoding"),
])
def test_a_malformed_value_of_a_known_parameter_is_400_naming_it(stack, target, named, why):
    """The transcoder passed ``%zz`` on as those three characters (``?text=%zz`` spoke
    them), and ``%E9`` as a string the gateway could not parse (a 400 naming nothing)."""
    reply = send(stack.config.api_port, "POST", target, b'{"text": "Hi."}')
    assert reply.status == 400, reply.body[:300]
    error = reply.error()
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT", error
    assert error["message"] == f"query parameter '{named}': " + (
        "malformed percent-encoding" if why.startswith("malformed")
        else "not UTF-8 once percent-decoded"), error


def test_well_formed_utf8_in_a_known_parameter_is_taken(stack):
    reply = send(stack.config.api_port, "POST", "/v1/synthesize?voice=caf%C3%A9-%F0%9F%98%80",
                 b'{"text": "Hi."}')
    # The gateway's own check of a voice name, on the name decoded.
    assert reply.status == 400, reply.body[:300]
    assert "voice name 'caf\u00e9-\U0001f600' is malformed" in reply.error()["message"]


def test_a_malformed_unknown_parameter_is_ignored(stack):
    reply = send(stack.config.api_port, "GET", "/v1/voices?a=%zz&%E9=%E9&b%zz")
    assert reply.status == 200, reply.body[:300]
    assert reply.json()["voices"]


def test_a_long_query_the_edge_takes_reaches_the_gateway_whole(stack):
    # The transcoder forwards the URL twice (:path, x-envoy-original-path): 2 x 28 KB of
    # metadata, past gRPC's default 8 KiB that answered 429 "metadata size exceeds".
    reply = send(stack.config.api_port, "GET", "/v1/voices?t=" + "a" * 28_000)
    assert reply.status == 200, reply.body[:300]
    assert reply.json()["voices"]


@pytest.mark.parametrize("path", ["/v1/voices", "/health"])
def test_a_query_past_the_header_limit_is_431_naming_it(stack, path):
    reply = send(stack.config.api_port, "GET", f"{path}?t=" + "a" * 40_000)
    assert reply.status == 431, reply.body[:300]
    assert reply.error()["message"] == (
        f"the request's headers, its URL included, exceed {MAX_HEADERS_KB} KiB")


@pytest.mark.parametrize("target", ["/v1/synthesize?#frag", "/v1/tts#x", "/v1/a%00b"])
def test_a_path_envoy_cannot_normalise_is_400_saying_so(stack, target):
    reply = send(stack.config.api_port, "POST", target, b'{"text": "Hi."}')
    assert reply.status == 400, reply.body[:300]
    assert reply.error()["message"] == "malformed HTTP request (path_normalization_failed)"


# --- a request the transcoder leaves alone --------------------------------------------------


@contextlib.contextmanager
def _edge(stack, tmp_path, change) -> Iterator[int]:
    """An Envoy with the stack's edge config, changed by ``change``, before its gateway:
    its port, until it is stopped on leaving."""
    port, admin = free_ports(2)
    config = render(EdgeConfig(descriptor=stack.config.descriptor.resolve(),
                               gateway_port=stack.config.gateway_port, listen_host="127.0.0.1",
                               listen_port=port, admin_port=admin))
    change(config)
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(config))
    with supervised(specs=[envoy_spec(path, admin)], logs=tmp_path, timeout=30):
        yield port


def _managers(config: dict):
    for listener in config["static_resources"]["listeners"]:
        yield listener["filter_chains"][0]["filters"][0]["typed_config"]


def _strict_transcoder(config: dict) -> None:
    """What the edge had: a parameter that is no field makes the transcoder map nothing."""
    for manager in _managers(config):
        for http_filter in manager["http_filters"]:
            if http_filter["name"] == "envoy.filters.http.grpc_json_transcoder":
                http_filter["typed_config"]["ignore_unknown_query_parameters"] = False


def _without_guard(config: dict) -> None:
    _strict_transcoder(config)
    for manager in _managers(config):
        manager["http_filters"] = [f for f in manager["http_filters"]
                                   if f["name"] != GRPC_ONLY_FILTER]


@pytest.mark.parametrize("target", ["/v1/synthesize?t=1", "/v1/tts?t=1"])
def test_a_rest_request_left_untranscoded_is_404_not_a_gateway_reset(stack, tmp_path, target):
    """With a transcoder that maps no method for the request, the JSON path's buffering
    route still points at the gateways: the guard before the router answers 404 in the
    error shape. Without the guard the same request reached the gateway as HTTP/1 JSON,
    and the client got the gateway's reset as a 503."""
    body = b"{}"  # refused by the gateway at once, once transcoded
    with _edge(stack, tmp_path, _strict_transcoder) as port:
        reply = send(port, "POST", target, body)
        # A request the transcoder does map still goes through.
        mapped = send(port, "POST", target.split("?")[0], body)
    assert reply.status == 404, reply.body[:300]
    assert reply.error() == {"code": 404, "message": "no such route", "status": "NOT_FOUND"}
    assert mapped.status == 400 and mapped.error()["status"] == "INVALID_ARGUMENT", mapped.body

    with _edge(stack, tmp_path, _without_guard) as unguarded:
        reset = send(unguarded, "POST", target, body)
    assert reset.status == 503 and b"upstream connect error" in reset.body, reset.body[:300]
