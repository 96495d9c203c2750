"""The rendered edge configuration is one Envoy itself accepts."""

import json
import subprocess
from pathlib import Path

import pytest

from edge import expect_continue, limits, web
from edge.config import MAX_BODY_BYTES, EdgeConfig
from edge.errors import (
    ERRORS_FILTER,
    GRPC_CODE_NAMES,
    GRPC_CONTENT_TYPE,
    HTTP_STATUS_NAMES,
)
from edge.fields import FIELDS_FILTER
from edge.paths import GRPC_ONLY_FILTER
from edge.render import render, write
from edge.timeout import TIMEOUT_FILTER
from localstack.components import envoy_binary

DESCRIPTOR = Path("gen/voice_v1.pb")


def test_only_the_gateway_health_and_reflection_are_public_and_admin_is_loopback():
    config = render(EdgeConfig(descriptor=DESCRIPTOR))
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    routes = manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    prefixes = [r["match"].get("prefix") or r["match"].get("path")
                or r["match"]["safe_regex"]["regex"] for r in routes]
    assert prefixes == [
        "/",  # a request that expects 100-continue, to the internal listener (edge.expect_continue)
        "/voice.v1.Gateway/",
        "/grpc.health.v1.Health/",
        "/grpc.reflection.v1.ServerReflection/",
        "/grpc.reflection.v1alpha.ServerReflection/",
        # REST's JSON routes, for the buffer their bodies need (edge.fields)
        "/v1/rvc", "/v1/rvc/", "/v1/synthesize", "/v1/synthesize/", "/v1/synthesize:stream",
        "/v1/tts", "/v1/tts/", "/v1/voices", "/v1/voices/",
        "/v1/voices/[^/]+/?",  # PUT to a path template
        # The web playground's files, served by Envoy itself (edge.web)
        *web.PAGES,
        "/",
    ]
    assert routes[0]["route"]["cluster"] == expect_continue.CONTINUE_LISTENER
    # The gRPC routes take gRPC calls only: a REST request to their paths is a 404.
    assert all(r["match"]["grpc"] == {} for r in routes[1:5])
    assert routes[-1]["direct_response"]["status"] == 404
    # Only the public listener has an address; the other is the internal 100-continue one.
    public, internal = config["static_resources"]["listeners"]
    assert "address" not in internal and internal["internal_listener"] == {}


def test_paths_are_normalized_before_they_are_routed():
    """``..``, ``%2e%2e``, ``%2F``, ``%5C`` and ``//`` resolve before routing, so no
    path reaches a service the routes do not name (edge.paths)."""
    manager = _manager(render(EdgeConfig(descriptor=DESCRIPTOR)))
    assert manager["normalize_path"] is True
    assert manager["merge_slashes"] is True
    assert manager["path_with_escaped_slashes_action"] == "UNESCAPE_AND_FORWARD"


@pytest.mark.parametrize("discovery", ["STATIC", "STRICT_DNS"])
def test_envoy_validates_the_configuration(tmp_path, discovery):
    host = "127.0.0.1" if discovery == "STATIC" else "localhost"
    path = write(
        EdgeConfig(descriptor=DESCRIPTOR.resolve(), gateway_host=host, discovery=discovery),
        tmp_path / "envoy.json",
    )
    json.loads(path.read_text())
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _manager(config: dict) -> dict:
    return _manager_of(config["static_resources"]["listeners"][0])


def _manager_of(listener: dict) -> dict:
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def test_the_error_filter_sees_responses_after_the_transcoder():
    """Responses run through the HTTP filters in reverse order: the Lua filter must come
    first to rewrite what the transcoder made of a gRPC status."""
    filters = _manager(render(EdgeConfig(descriptor=DESCRIPTOR)))["http_filters"]
    assert [f["name"] for f in filters] == [
        ERRORS_FILTER,
        limits.BODY_LIMIT_FILTER,  # every request's body, from its headers on
        TIMEOUT_FILTER,  # refuses a malformed grpc-timeout; its refusals are shaped
        FIELDS_FILTER,  # reads a request's JSON before the transcoder drops unknown fields
        "envoy.filters.http.grpc_json_transcoder",
        GRPC_ONLY_FILTER,  # a request still REST here is a 404, never a call to a gateway
        "envoy.filters.http.router",
    ]
    lua = filters[0]["typed_config"]
    assert lua["@type"].endswith("filters.http.lua.v3.Lua")
    source = lua["default_source_code"]["inline_string"]
    assert "function envoy_on_request" in source and "function envoy_on_response" in source
    # The names the script gives codes and statuses come from the tables here.
    assert "[3] = 'INVALID_ARGUMENT'" in source and "[16] = 'UNAUTHENTICATED'" in source
    assert "[413] = 'RESOURCE_EXHAUSTED'" in source
    # Only error responses are buffered; successful streams are never read.
    on_response = source.split("function envoy_on_response")[1]
    assert on_response.index("status < 400 then return end") < on_response.index(":body(")


def test_code_names_are_grpcs_and_every_status_names_one():
    assert len(GRPC_CODE_NAMES) == 17
    assert GRPC_CODE_NAMES.index("DEADLINE_EXCEEDED") == 4
    assert GRPC_CODE_NAMES.index("UNAVAILABLE") == 14
    assert set(HTTP_STATUS_NAMES.values()) <= set(GRPC_CODE_NAMES)
    assert all(400 <= status < 600 for status in HTTP_STATUS_NAMES)


def test_local_replies_to_rest_requests_are_in_the_error_shape():
    config = EdgeConfig(descriptor=DESCRIPTOR)
    manager = _manager(render(config))
    mappers = manager["local_reply_config"]["mappers"]
    assert "body_format" not in manager["local_reply_config"]  # no format for gRPC requests
    # First those naming a limit (tests/unit/edge/test_limits.py).
    limited = limits.reply_mappers(
        config.max_body_bytes, config.max_concurrent_streams, config.max_queue, None
    )
    assert mappers[: len(limited)] == limited
    mappers = mappers[len(limited):]
    # Then Envoy's own refusals that carry no body: a message of ours names the rule.
    too_large, malformed = mappers[:2]
    assert too_large["body_format_override"]["json_format"]["error"]["message"] == (
        f"the request's headers, its URL included, exceed {limits.MAX_HEADERS_KB} KiB")
    assert manager["max_request_headers_kb"] == limits.MAX_HEADERS_KB
    assert malformed["body_format_override"]["json_format"]["error"]["message"] == (
        "malformed HTTP request (%RESPONSE_CODE_DETAILS%)")
    mappers = mappers[2:]
    named = {}
    for mapper in mappers:
        status, not_grpc = mapper["filter"]["and_filter"]["filters"]
        comparison = status["status_code_filter"]["comparison"]
        header = not_grpc["header_filter"]["header"]
        assert header["name"] == "content-type" and header["invert_match"] is True
        # gRPC as Envoy tells it: application/grpc-web is REST to the transcoder.
        assert header["string_match"] == {"safe_regex": {"regex": GRPC_CONTENT_TYPE}}
        assert header["treat_missing_header_as_empty"] is True
        body = mapper["body_format_override"]
        assert body["content_type"] == "application/json"
        error = body["json_format"]["error"]
        assert error["code"] == "%RESPONSE_CODE%"
        assert error["message"] == "%LOCAL_REPLY_BODY%"
        named[(comparison["op"], comparison["value"]["default_value"])] = error["status"]
    assert named == {
        **{("EQ", status): name for status, name in HTTP_STATUS_NAMES.items()},
        ("GE", 400): "UNKNOWN",
    }
    assert list(named)[-1] == ("GE", 400)  # the first mapper that matches wins


def test_unknown_routes_reply_plain_text_for_the_error_formatting():
    host = _manager(render(EdgeConfig(descriptor=DESCRIPTOR)))["route_config"]["virtual_hosts"][0]
    routes = host["routes"]
    assert routes[-1]["direct_response"] == {
        "status": 404,
        "body": {"inline_string": "no such route"},
    }
    assert "response_headers_to_add" not in routes[-1]


def test_the_body_limit_reaches_the_transcoder():
    def transcoder(config: EdgeConfig) -> dict:
        (found,) = (f for f in _manager(render(config))["http_filters"]
                    if f["name"] == "envoy.filters.http.grpc_json_transcoder")
        return found["typed_config"]

    small = transcoder(EdgeConfig(descriptor=DESCRIPTOR, max_body_bytes=1234))
    assert small["max_request_body_size"] == small["max_response_body_size"] == 1234
    assert transcoder(EdgeConfig(descriptor=DESCRIPTOR))["max_request_body_size"] == MAX_BODY_BYTES


def test_the_transcoder_ignores_query_parameters_that_name_no_field():
    """The old server ignored ``?t=1``; without the option the transcoder maps no method
    for such a request and passes it on as REST."""
    (transcoder,) = (f for f in _manager(render(EdgeConfig(descriptor=DESCRIPTOR)))["http_filters"]
                     if f["name"] == "envoy.filters.http.grpc_json_transcoder")
    assert transcoder["typed_config"]["ignore_unknown_query_parameters"] is True


@pytest.mark.parametrize("cors", [(), ("https://a.b",)])
def test_only_grpc_reaches_the_router(cors):
    """The guard is the last filter before the router, after CORS (which answers every
    preflight itself), in both listeners; it answers a request that is not gRPC with the
    edge's 404 (edge.paths)."""
    config = render(EdgeConfig(descriptor=DESCRIPTOR, cors_origins=cors))
    for listener in config["static_resources"]["listeners"]:
        names = [f["name"] for f in _manager_of(listener)["http_filters"]]
        assert names[-2:] == [GRPC_ONLY_FILTER, "envoy.filters.http.router"], names
    (guard,) = (f for f in _manager(config)["http_filters"] if f["name"] == GRPC_ONLY_FILTER)
    source = guard["typed_config"]["default_source_code"]["inline_string"]
    assert source.startswith('local NO_ROUTE = "no such route"\n')
    assert "local function is_grpc(content_type)" in source
    assert 'if not is_grpc(handle:headers():get("content-type")) then' in source
    assert '[":status"] = "404"' in source and "envoy_on_response" not in source


def test_the_client_is_the_tcp_peer_or_what_trusted_proxies_say():
    """A client's X-Forwarded-For never picks its address (its rate-limit bucket); behind
    N proxies that append to it, the Nth entry from the right does."""
    plain = _manager(render(EdgeConfig(descriptor=DESCRIPTOR)))
    assert plain["use_remote_address"] is True and plain["xff_num_trusted_hops"] == 0
    # A request from outside keeps the x-request-id its client sent (the services log it).
    assert plain["preserve_external_request_id"] is True
    behind = _manager(render(EdgeConfig(descriptor=DESCRIPTOR, trusted_proxy_hops=2)))
    assert behind["use_remote_address"] is True and behind["xff_num_trusted_hops"] == 2


def test_the_old_server_paths_are_the_unversioned_rest_routes():
    """The error filter adds FastAPI's detail on exactly the routes of the old server."""
    from google.api import annotations_pb2
    from voice.v1 import gateway_pb2

    from edge.errors import OLD_SERVER_PATHS

    paths = set()
    for method in gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].methods:
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        for binding in (rule, *rule.additional_bindings):
            paths.add(getattr(binding, binding.WhichOneof("pattern")))
    assert set(OLD_SERVER_PATHS) == {p for p in paths if not p.startswith("/v1/")}
