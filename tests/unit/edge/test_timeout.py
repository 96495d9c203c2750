"""The edge's check of the grpc-timeout header (edge.timeout)."""

import re
from pathlib import Path

import pytest

from edge import limits, timeout
from edge.config import EdgeConfig
from edge.errors import ERRORS_FILTER, GRPC_CONTENT_TYPE, IS_GRPC_LUA, is_grpc
from edge.limits import RATE_LIMIT_FILTER, EdgeRateLimit
from edge.render import render
from edge.security import JWT_FILTER, EdgeJwt
from services.common.server import HPACK_DECODER_TABLE, server_options


def _names(config: EdgeConfig) -> list[str]:
    chain = render(config)["static_resources"]["listeners"][0]["filter_chains"][0]
    return [f["name"] for f in chain["filters"][0]["typed_config"]["http_filters"]]


@pytest.mark.parametrize("value", ["1S", "500m", "99999999u", "1H", "30M", "20000000n", "0S"])
def test_grpc_spec_timeouts_are_valid(value):
    assert timeout.valid(value)


@pytest.mark.parametrize(
    "value", ["abc", "5", "S", "", "123456789S", "1.5S", "-1S", "+1S", "5s", "5 S", " 5S",
              "5S ", "5SS", "٥S", "0x5S"])
def test_anything_else_is_not(value):
    assert not timeout.valid(value)


def test_the_lua_pattern_is_the_spec():
    source = timeout.timeout_lua()
    assert 'local UNITS = "HMSmun"' in source and "local MAX_DIGITS = 8" in source
    assert '"^(%d+)[" .. UNITS .. "]$"' in source
    # A REST refusal is 400 in the error shape, a gRPC one INVALID_ARGUMENT (3).
    assert '[":status"] = "400"' in source and '["grpc-status"] = "3"' in source


@pytest.mark.parametrize("content_type", [
    "application/grpc", "application/grpc+proto", "application/grpc+json"])
def test_grpc_is_what_envoy_takes_for_grpc(content_type):
    assert is_grpc(content_type)


@pytest.mark.parametrize("content_type", [
    "application/grpc-web", "application/grpc-web+proto", "application/grpc-web-text",
    "application/grpcx", "Application/GRPC", "application/json", "", None])
def test_grpc_web_and_the_rest_are_rest(content_type):
    """The transcoder transcodes application/grpc-web: its client reads a REST 400, not a
    trailers-only gRPC reply it cannot parse."""
    assert not is_grpc(content_type)
    assert not re.fullmatch(GRPC_CONTENT_TYPE, content_type or "")


def test_a_refusal_is_grpc_only_for_what_envoy_takes_for_grpc():
    """The filter shares edge.errors' test (IS_GRPC_LUA) rather than a prefix of its own:
    it used to take anything starting application/grpc, grpc-web included, for gRPC."""
    source = timeout.timeout_lua()
    assert IS_GRPC_LUA in source
    assert source.index(IS_GRPC_LUA) < source.index("function envoy_on_request")
    assert 'if is_grpc(headers:get("content-type")) then' in source
    own = source.replace(IS_GRPC_LUA, "")
    assert "sub(1, 16)" not in own and '== "application/grpc' not in own
    assert ":lower()" not in source  # Envoy's test is case-sensitive


def test_the_check_runs_after_the_errors_filter_and_before_the_transcoder():
    names = _names(EdgeConfig(descriptor=Path("voice.pb")))
    assert names.index(ERRORS_FILTER) < names.index(timeout.TIMEOUT_FILTER)
    assert names.index(timeout.TIMEOUT_FILTER) < names.index(
        "envoy.filters.http.grpc_json_transcoder")


def test_authentication_and_rate_limits_come_first():
    names = _names(EdgeConfig(
        descriptor=Path("voice.pb"),
        jwt=EdgeJwt(jwks=Path("/tmp/jwks.json"), issuer="i", audiences=("a",)),
        rate_limit=EdgeRateLimit(per_second=1, burst=1)))
    check = names.index(timeout.TIMEOUT_FILTER)
    assert names.index(JWT_FILTER) < check and names.index(RATE_LIMIT_FILTER) < check


def test_servers_decode_headers_without_a_dynamic_table():
    # grpcio remembered an unparsable grpc-timeout in the table and failed every later one.
    assert HPACK_DECODER_TABLE == ("grpc.http2.hpack_table_size.decoder", 0)
    assert HPACK_DECODER_TABLE in server_options(1024)


def test_servers_take_the_metadata_of_the_largest_request_the_edge_lets_through():
    # The transcoder sends a REST call's URL twice (:path and x-envoy-original-path).
    options = dict(server_options(1024))
    assert options["grpc.max_metadata_size"] >= 2 * limits.MAX_HEADERS_KB * 1024
    assert options["grpc.absolute_max_metadata_size"] > options["grpc.max_metadata_size"]
