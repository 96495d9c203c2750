"""The edge's check of the grpc-timeout header (services.gateway.edge_timeout)."""

from pathlib import Path

import pytest

from services.common.server import HPACK_DECODER_TABLE, server_options
from services.gateway import edge_timeout
from services.gateway.edge_errors import ERRORS_FILTER
from services.gateway.edge_limits import RATE_LIMIT_FILTER, EdgeRateLimit
from services.gateway.edge_security import JWT_FILTER, EdgeJwt
from services.gateway.envoy import EdgeConfig, render


def _names(config: EdgeConfig) -> list[str]:
    chain = render(config)["static_resources"]["listeners"][0]["filter_chains"][0]
    return [f["name"] for f in chain["filters"][0]["typed_config"]["http_filters"]]


@pytest.mark.parametrize("value", ["1S", "500m", "99999999u", "1H", "30M", "20000000n", "0S"])
def test_grpc_spec_timeouts_are_valid(value):
    assert edge_timeout.valid(value)


@pytest.mark.parametrize(
    "value", ["abc", "5", "S", "", "123456789S", "1.5S", "-1S", "+1S", "5s", "5 S", " 5S",
              "5S ", "5SS", "٥S", "0x5S"])
def test_anything_else_is_not(value):
    assert not edge_timeout.valid(value)


def test_the_lua_pattern_is_the_spec():
    source = edge_timeout.timeout_lua()
    assert 'local UNITS = "HMSmun"' in source and "local MAX_DIGITS = 8" in source
    assert '"^(%d+)[" .. UNITS .. "]$"' in source
    # A REST refusal is 400 in the error shape, a gRPC one INVALID_ARGUMENT (3).
    assert '[":status"] = "400"' in source and '["grpc-status"] = "3"' in source


def test_the_check_runs_after_the_errors_filter_and_before_the_transcoder():
    names = _names(EdgeConfig(descriptor=Path("voice.pb")))
    assert names.index(ERRORS_FILTER) < names.index(edge_timeout.TIMEOUT_FILTER)
    assert names.index(edge_timeout.TIMEOUT_FILTER) < names.index(
        "envoy.filters.http.grpc_json_transcoder")


def test_authentication_and_rate_limits_come_first():
    names = _names(EdgeConfig(
        descriptor=Path("voice.pb"),
        jwt=EdgeJwt(jwks=Path("/tmp/jwks.json"), issuer="i", audiences=("a",)),
        rate_limit=EdgeRateLimit(per_second=1, burst=1)))
    check = names.index(edge_timeout.TIMEOUT_FILTER)
    assert names.index(JWT_FILTER) < check and names.index(RATE_LIMIT_FILTER) < check


def test_servers_decode_headers_without_a_dynamic_table():
    # grpcio remembered an unparsable grpc-timeout in the table and failed every later one.
    assert HPACK_DECODER_TABLE == ("grpc.http2.hpack_table_size.decoder", 0)
    assert HPACK_DECODER_TABLE in server_options(1024)
