"""The rendered edge configuration is one Envoy itself accepts."""

import json
import subprocess
from pathlib import Path

import pytest

from services.gateway import edge_limits
from services.gateway.edge_errors import ERRORS_FILTER, GRPC_CODE_NAMES, HTTP_STATUS_NAMES
from services.gateway.edge_fields import FIELDS_FILTER
from services.gateway.edge_timeout import TIMEOUT_FILTER
from services.gateway.envoy import MAX_BODY_BYTES, EdgeConfig, render, write
from services.stack.components import envoy_binary

DESCRIPTOR = Path("gen/voice_v1.pb")


def test_only_the_gateway_health_and_reflection_are_public_and_admin_is_loopback():
    config = render(EdgeConfig(descriptor=DESCRIPTOR))
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    routes = manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    prefixes = [r["match"].get("prefix") or r["match"]["path"] for r in routes]
    assert prefixes == [
        "/voice.v1.Gateway/",
        "/grpc.health.v1.Health/",
        "/grpc.reflection.v1.ServerReflection/",
        "/grpc.reflection.v1alpha.ServerReflection/",
        # REST's JSON routes, for the buffer their bodies need (services.gateway.edge_fields)
        "/v1/rvc", "/v1/synthesize", "/v1/synthesize:stream", "/v1/tts",
        "/",
    ]
    assert routes[-1]["direct_response"]["status"] == 404


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
    listener = config["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def test_the_error_filter_sees_responses_after_the_transcoder():
    """Responses run through the HTTP filters in reverse order: the Lua filter must come
    first to rewrite what the transcoder made of a gRPC status."""
    filters = _manager(render(EdgeConfig(descriptor=DESCRIPTOR)))["http_filters"]
    assert [f["name"] for f in filters] == [
        ERRORS_FILTER,
        TIMEOUT_FILTER,  # refuses a malformed grpc-timeout; its refusals are shaped
        FIELDS_FILTER,  # reads a request's JSON before the transcoder drops unknown fields
        "envoy.filters.http.grpc_json_transcoder",
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
    # First those naming a limit (tests/unit/gateway/test_envoy_limits.py).
    limits = edge_limits.reply_mappers(
        config.max_body_bytes, config.max_concurrent_streams, config.max_queue, None
    )
    assert mappers[: len(limits)] == limits
    mappers = mappers[len(limits):]
    named = {}
    for mapper in mappers:
        status, not_grpc = mapper["filter"]["and_filter"]["filters"]
        comparison = status["status_code_filter"]["comparison"]
        header = not_grpc["header_filter"]["header"]
        assert header["name"] == "content-type" and header["invert_match"] is True
        assert header["string_match"] == {"prefix": "application/grpc"}
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


def test_the_old_server_paths_are_the_unversioned_rest_routes():
    """The error filter adds FastAPI's detail on exactly the routes of the old server."""
    from google.api import annotations_pb2
    from voice.v1 import gateway_pb2

    from services.gateway.edge_errors import OLD_SERVER_PATHS

    paths = set()
    for method in gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].methods:
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        for binding in (rule, *rule.additional_bindings):
            paths.add(getattr(binding, binding.WhichOneof("pattern")))
    assert set(OLD_SERVER_PATHS) == {p for p in paths if not p.startswith("/v1/")}
