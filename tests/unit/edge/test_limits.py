"""The edge's limits in the rendered Envoy config: circuit breakers, the
per-client rate limit, retries of calls no gateway began, more gateways,
and the settings that feed them."""

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest

from edge import errors, expect_continue, limits
from edge.config import EdgeConfig
from edge.errors import ERRORS_FILTER
from edge.filters import ROUTER_FILTER
from edge.limits import RATE_LIMIT_FILTER, EdgeRateLimit
from edge.render import render, write
from edge.security import JWT_FILTER, EdgeJwt
from localstack.components import envoy_binary
from localstack.config import StackConfig
from services.common.settings import SettingsError
from tests import edge_credentials

DESCRIPTOR = Path("gen/voice_v1.pb")


def _manager(config: dict) -> dict:
    listener = config["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def _cluster(config: dict) -> dict:
    (cluster,) = [c for c in config["static_resources"]["clusters"] if c["name"] == "gateway"]
    return cluster


def _filter(config: dict, name: str) -> dict:
    (found,) = [f["typed_config"] for f in _manager(config)["http_filters"] if f["name"] == name]
    return found


def test_circuit_breakers_bound_calls_in_flight_and_waiting():
    config = render(EdgeConfig(DESCRIPTOR, max_concurrent_streams=7, max_queue=3))
    (thresholds,) = _cluster(config)["circuit_breakers"]["thresholds"]
    assert thresholds["max_requests"] == 7
    assert thresholds["max_pending_requests"] == 3
    assert thresholds["max_connections"] == 7
    assert thresholds["max_retries"] >= 1
    defaults = _cluster(render(EdgeConfig(DESCRIPTOR)))["circuit_breakers"]["thresholds"][0]
    assert defaults["max_requests"] == defaults["max_pending_requests"] == 1000


def test_rate_limit_is_off_by_default():
    names = [f["name"] for f in _manager(render(EdgeConfig(DESCRIPTOR)))["http_filters"]]
    assert RATE_LIMIT_FILTER not in names


def test_rate_limit_keeps_a_bucket_per_client_address_and_spares_health():
    config = render(EdgeConfig(DESCRIPTOR, rate_limit=EdgeRateLimit(per_second=3, burst=5)))
    names = [f["name"] for f in _manager(config)["http_filters"]]
    # Before the transcoder, so a client over its rate costs no body transcoding.
    assert names.index(RATE_LIMIT_FILTER) < names.index("envoy.filters.http.grpc_json_transcoder")
    limit = _filter(config, RATE_LIMIT_FILTER)
    assert limit["rate_limited_as_resource_exhausted"] is True
    assert limit["always_consume_default_token_bucket"] is False
    (descriptor,) = limit["descriptors"]
    assert descriptor["token_bucket"] == {"max_tokens": 5, "tokens_per_fill": 3, "fill_interval": "1s"}
    # The client's entry has no value: each address gets a bucket of its own.
    assert descriptor["entries"] == [
        {"key": limits.LIMITED_KEY, "value": "yes"},
        {"key": limits.ADDRESS_KEY, "value": ""},
    ]
    assert limit["max_dynamic_descriptors"] == limits.MAX_CLIENTS
    (rule,) = limit["rate_limits"]
    not_health, client = rule["actions"]
    assert client == {"remote_address": {}}
    match = not_health["header_value_match"]
    assert match["expect_match"] is False and match["descriptor_key"] == limits.LIMITED_KEY
    regex = re.compile(match["headers"][0]["string_match"]["safe_regex"]["regex"])
    for path in ("/health", "/health?verbose=1", "/v1/health", "/v1/health?x=1",
                 "/health/", "/v1/health/?t=1",
                 "/voice.v1.Gateway/GetHealth", "/voice.v1.Gateway/GetLegacyHealth",
                 "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"):
        assert regex.fullmatch(path), path
    for path in ("/v1/voices", "/v1/synthesize", "/healthz", "/voice.v1.Gateway/ListVoices",
                 "/x/health", "/voice.v1.Gateway/GetHealthX"):
        assert not regex.fullmatch(path), path


def test_with_jwt_the_bucket_is_the_token_subject(tmp_path):
    credentials = edge_credentials.make(tmp_path)
    config = render(EdgeConfig(DESCRIPTOR, jwt=EdgeJwt(jwks=credentials.jwks),
                               rate_limit=EdgeRateLimit(per_second=1, burst=1)))
    names = [f["name"] for f in _manager(config)["http_filters"]]
    assert names.index(JWT_FILTER) < names.index(RATE_LIMIT_FILTER)
    (provider,) = _filter(config, JWT_FILTER)["providers"].values()
    limit = _filter(config, RATE_LIMIT_FILTER)
    client = limit["rate_limits"][0]["actions"][1]["metadata"]
    assert client["metadata_key"] == {
        "key": JWT_FILTER,
        "path": [{"key": provider["payload_in_metadata"]}, {"key": "sub"}],
    }
    assert client["source"] == "DYNAMIC" and client["default_value"]
    assert limit["descriptors"][0]["entries"][1] == {"key": client["descriptor_key"], "value": ""}


@pytest.mark.parametrize(
    ("per_second", "bucket", "retry_after"),
    [(2, {"tokens_per_fill": 2, "fill_interval": "1s"}, 1),
     (0.5, {"tokens_per_fill": 1, "fill_interval": "2s"}, 2),
     (0.3, {"tokens_per_fill": 1, "fill_interval": "3.333s"}, 4),
     (12.5, {"tokens_per_fill": 1, "fill_interval": "0.08s"}, 1)],
)
def test_fractional_rates_refill_a_token_at_a_time(per_second, bucket, retry_after):
    limit = EdgeRateLimit(per_second=per_second, burst=20)
    config = render(EdgeConfig(DESCRIPTOR, rate_limit=limit))
    token_bucket = _filter(config, RATE_LIMIT_FILTER)["descriptors"][0]["token_bucket"]
    assert token_bucket == {"max_tokens": 20, **bucket}
    assert limits.retry_after_seconds(limit) == retry_after


def _mapper_texts(config: dict) -> list[tuple[dict, str]]:
    mappers = _manager(config)["local_reply_config"]["mappers"]
    return [(m, m.get("body", {}).get("inline_string", "")) for m in mappers]


def test_each_refusal_names_its_limit_with_retry_after():
    config = render(EdgeConfig(DESCRIPTOR, max_body_bytes=5000, max_concurrent_streams=7,
                               max_queue=3, rate_limit=EdgeRateLimit(per_second=0.5, burst=4)))
    texts = _mapper_texts(config)
    rate = [(m, t) for m, t in texts if "EDGE_RATE_LIMIT_PER_SECOND=0.5" in t]
    overload = [(m, t) for m, t in texts if "EDGE_MAX_CONCURRENT_STREAMS=7" in t]
    body = [(m, t) for m, t in texts if "EDGE_MAX_BODY_BYTES=5000" in t]
    assert len(rate) == len(overload) == len(body) == 2
    assert all("EDGE_RATE_LIMIT_BURST=4" in t for _, t in rate)
    assert all("EDGE_MAX_QUEUE=3" in t for _, t in overload)
    for mapper, _ in rate + overload:
        headers = {h["header"]["key"]: h["header"]["value"] for h in mapper["headers_to_add"]}
        assert headers["retry-after"] == ("2" if mapper in [m for m, _ in rate] else "1")
    # gRPC first (marked by the error filter), plain message; then REST: 429, error shape.
    for pair in (rate, overload):
        (grpc, _), (rest, _) = pair
        assert grpc["filter"]["and_filter"]["filters"][1] == limits.grpc_filter()
        assert limits.grpc_filter()["metadata_filter"]["matcher"]["filter"] == ERRORS_FILTER
        assert "body_format_override" not in grpc and "status_code" not in grpc
        assert rest["status_code"] == 429
        assert rest["body_format_override"]["json_format"]["error"]["status"] == "RESOURCE_EXHAUSTED"
    # An overflow is RESOURCE_EXHAUSTED for gRPC too (Envoy would say UNAVAILABLE).
    grpc_overload = {h["header"]["key"]: h["header"]["value"]
                     for h in overload[0][0]["headers_to_add"]}
    assert grpc_overload["grpc-status"] == "8"
    assert overload[0][0]["filter"]["and_filter"]["filters"][0] == {
        "response_flag_filter": {"flags": ["UO"]}}
    # The limit mappers come before the generic ones (the first that matches wins).
    first_generic = next(i for i, (m, t) in enumerate(texts) if not t)
    assert all(i < first_generic for i, (m, t) in enumerate(texts) if t)


def test_routes_retry_only_calls_no_gateway_began():
    config = render(EdgeConfig(DESCRIPTOR))
    routes = _manager(config)["route_config"]["virtual_hosts"][0]["routes"]
    to_gateway = [r for r in routes if r.get("route", {}).get("cluster") == "gateway"]
    # The four public prefixes, the JSON REST paths and the PUT template (edge.fields).
    assert len(to_gateway) == 14
    for route in to_gateway:
        policy = route["route"]["retry_policy"]
        assert set(policy["retry_on"].split(",")) == {
            "connect-failure", "refused-stream", "reset-before-request"}
        assert policy["num_retries"] == 2
        (predicate,) = policy["retry_host_predicate"]
        assert predicate["name"] == "envoy.retry_host_predicates.previous_hosts"
        assert route["route"]["timeout"] == "0s"


def test_more_gateways_join_the_load_assignment_with_health_checks():
    config = render(EdgeConfig(DESCRIPTOR, gateway_port=50051,
                               more_gateways=(("127.0.0.2", 50061), ("127.0.0.3", 50071))))
    cluster = _cluster(config)
    (locality,) = cluster["load_assignment"]["endpoints"]
    addresses = [e["endpoint"]["address"]["socket_address"] for e in locality["lb_endpoints"]]
    assert [(a["address"], a["port_value"]) for a in addresses] == [
        ("127.0.0.1", 50051), ("127.0.0.2", 50061), ("127.0.0.3", 50071)]
    (check,) = cluster["health_checks"]
    assert check["grpc_health_check"] == {}
    assert check["unhealthy_threshold"] == 1
    assert float(check["interval"].rstrip("s")) <= 5
    assert cluster["outlier_detection"]["split_external_local_origin_errors"] is True


@pytest.mark.parametrize(
    ("changes", "named"),
    [({"edge_max_body_bytes": 100}, "EDGE_MAX_BODY_BYTES"),
     ({"edge_max_concurrent_streams": 0}, "EDGE_MAX_CONCURRENT_STREAMS"),
     ({"edge_max_queue": 0}, "EDGE_MAX_QUEUE"),
     ({"edge_rate_limit_per_second": -1.0}, "EDGE_RATE_LIMIT_PER_SECOND"),
     ({"edge_rate_limit_per_second": float("nan")}, "EDGE_RATE_LIMIT_PER_SECOND"),
     ({"edge_rate_limit_per_second": 25.5}, "EDGE_RATE_LIMIT_PER_SECOND"),
     ({"edge_rate_limit_per_second": 5.0, "edge_rate_limit_burst": 4}, "EDGE_RATE_LIMIT_BURST"),
     ({"edge_rate_limit_per_second": 1.0, "edge_rate_limit_burst": 0}, "EDGE_RATE_LIMIT_BURST"),
     ({"edge_trusted_proxy_hops": -1}, "EDGE_TRUSTED_PROXY_HOPS"),
     ({"edge_trusted_proxy_hops": 11}, "EDGE_TRUSTED_PROXY_HOPS")],
)
def test_out_of_range_limits_stop_the_stack_naming_the_setting(changes, named):
    with pytest.raises(SettingsError, match=named):
        dataclasses.replace(StackConfig(), **changes).validate()


def test_limit_settings_reach_the_edge_config():
    config = dataclasses.replace(
        StackConfig(), edge_max_body_bytes=4096, edge_max_concurrent_streams=9,
        edge_max_queue=2, edge_rate_limit_per_second=0.5, edge_rate_limit_burst=3,
    )
    config.validate()
    assert config.edge_rate_limit() == EdgeRateLimit(per_second=0.5, burst=3)
    assert StackConfig().edge_rate_limit() is None  # 0 (the default) is off


def test_limit_settings_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("EDGE_MAX_CONCURRENT_STREAMS", "12")
    monkeypatch.setenv("EDGE_RATE_LIMIT_PER_SECOND", "2.5")
    monkeypatch.setenv("EDGE_RATE_LIMIT_BURST", "6")
    monkeypatch.setenv("EDGE_TRUSTED_PROXY_HOPS", "1")
    config = StackConfig.load()
    assert config.edge_max_concurrent_streams == 12
    assert config.edge_rate_limit() == EdgeRateLimit(per_second=2.5, burst=6)
    assert config.edge_trusted_proxy_hops == 1


@pytest.mark.parametrize("jwt", [False, True])
def test_envoy_validates_a_config_with_every_limit(tmp_path, jwt):
    credentials = edge_credentials.make(tmp_path)
    edge = EdgeConfig(
        descriptor=DESCRIPTOR.resolve(),
        max_body_bytes=4096,
        max_concurrent_streams=2,
        max_queue=1,
        rate_limit=EdgeRateLimit(per_second=0.5, burst=2),
        more_gateways=(("127.0.0.2", 50061),),
        jwt=EdgeJwt(jwks=credentials.jwks) if jwt else None,
        cors_origins=("https://app.example",),
        trusted_proxy_hops=1,
    )
    path = write(edge, tmp_path / "envoy.json")
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_request_passes_the_body_limit_second_in_the_chain():
    """Right after the error filter (which shapes the 413), before anything that could
    read a body: jwt_authn, the rate limit, the unknown-field filter, the transcoder."""
    config = render(EdgeConfig(DESCRIPTOR, max_body_bytes=5000, rate_limit=EdgeRateLimit(1, 1)))
    filters = _manager(config)["http_filters"]
    assert [f["name"] for f in filters[:2]] == [ERRORS_FILTER, limits.BODY_LIMIT_FILTER]
    assert filters[1]["typed_config"] == {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.body_size_limit.v3."
                 "BodySizeLimit",
        "max_request_bytes": 5000,
    }
    # No route turns it off, save nothing: the 100-continue route keeps it too.
    for route in _manager(config)["route_config"]["virtual_hosts"][0]["routes"]:
        assert limits.BODY_LIMIT_FILTER not in route.get("typed_per_filter_config", {})


def test_a_grpc_call_over_the_body_limit_is_resource_exhausted():
    texts = _mapper_texts(render(EdgeConfig(DESCRIPTOR, max_body_bytes=5000)))
    (grpc, _), (rest, _) = [(m, t) for m, t in texts if "EDGE_MAX_BODY_BYTES=5000" in t]
    assert grpc["filter"]["and_filter"]["filters"][1] == limits.grpc_filter()
    # Envoy would make a local 413 UNKNOWN for gRPC.
    assert grpc["headers_to_add"] == [{
        "header": {"key": "grpc-status", "value": "8"},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
    assert rest["body_format_override"]["json_format"]["error"]["status"] == "RESOURCE_EXHAUSTED"


@pytest.mark.parametrize("jwt", [False, True])
def test_100_continue_is_answered_after_the_body_limit_by_an_internal_listener(tmp_path, jwt):
    """The public connection manager proxies 100-continue (its filters run first); a
    request that expects it goes, past the body limit, authentication and the rate limit,
    to an internal listener whose connection manager is the same but answers 100 itself."""
    credentials = edge_credentials.make(tmp_path)
    config = render(EdgeConfig(DESCRIPTOR, max_body_bytes=5000, max_concurrent_streams=7,
                               rate_limit=EdgeRateLimit(1, 1), cors_origins=("https://a.b",),
                               jwt=EdgeJwt(jwks=credentials.jwks) if jwt else None))
    public = _manager(config)
    assert public["proxy_100_continue"] is True
    detour = public["route_config"]["virtual_hosts"][0]["routes"][0]
    expect, not_grpc = detour["match"]["headers"]
    assert detour["match"]["prefix"] == "/"
    assert expect == {"name": "expect",
                      "string_match": {"exact": "100-continue", "ignore_case": True}}
    assert not_grpc == errors.not_grpc_header()
    assert detour["route"] == {"cluster": expect_continue.CONTINUE_LISTENER, "timeout": "0s"}
    # Only the error filter, the body limit, authentication, the rate limit and the router
    # run on the way: all read headers only.
    names = [f["name"] for f in public["http_filters"]]
    off = detour["typed_per_filter_config"]
    assert set(off) == set(names) - {ERRORS_FILTER, limits.BODY_LIMIT_FILTER, JWT_FILTER,
                                     RATE_LIMIT_FILTER, ROUTER_FILTER}
    assert (JWT_FILTER in names) is jwt and RATE_LIMIT_FILTER in names
    assert all(c == {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                     "disabled": True} for c in off.values())
    (forwarded,) = detour["request_headers_to_add"]
    # The address the public connection manager settled on (the TCP peer, or the trusted
    # proxies' client), last, after whatever the client sent.
    assert forwarded["header"] == {
        "key": "x-forwarded-for", "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}
    assert forwarded["append_action"] == "APPEND_IF_EXISTS_OR_ADD"

    listeners = {listener["name"]: listener for listener in config["static_resources"]["listeners"]}
    internal = listeners[expect_continue.CONTINUE_LISTENER]
    assert internal["internal_listener"] == {} and "address" not in internal
    inner = internal["filter_chains"][0]["filters"][0]["typed_config"]
    assert inner["proxy_100_continue"] is False
    assert "access_log" not in inner  # the public listener logs each request once
    assert inner["stat_prefix"] == expect_continue.CONTINUE_LISTENER
    # Its peer is this process: the client is the last X-Forwarded-For entry, the detour's.
    assert public["use_remote_address"] is True
    assert inner["use_remote_address"] is False and "xff_num_trusted_hops" not in inner
    # Otherwise the edge's own: filters but those the detour ran (one set of token buckets,
    # the token checked once), local replies, routes but the detour.
    assert inner["http_filters"] == [f for f in public["http_filters"]
                                     if f["name"] not in (JWT_FILTER, RATE_LIMIT_FILTER)]
    assert inner["local_reply_config"] == public["local_reply_config"]
    inner_routes = inner["route_config"]["virtual_hosts"][0]["routes"]
    assert inner_routes == public["route_config"]["virtual_hosts"][0]["routes"][1:]
    assert inner["normalize_path"] is True
    (extension,) = config["bootstrap_extensions"]
    assert extension["name"] == "envoy.bootstrap.internal_listener"
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    to_inner = clusters[expect_continue.CONTINUE_LISTENER]
    (locality,) = to_inner["load_assignment"]["endpoints"]
    (endpoint,) = locality["lb_endpoints"]
    assert endpoint["endpoint"]["address"] == {
        "envoy_internal_address": {"server_listener_name": expect_continue.CONTINUE_LISTENER}}
    assert to_inner["circuit_breakers"]["thresholds"][0]["max_requests"] == 7
