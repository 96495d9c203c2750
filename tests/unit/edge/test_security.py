"""The edge's TLS, JWT authentication and CORS: rendered only when configured,
validated at start, accepted by Envoy; and no credential in the access log."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path

import pytest

from edge.config import EdgeConfig
from edge.limits import BODY_LIMIT_FILTER
from edge.listeners import ACCESS_LOG_FIELDS
from edge.render import render, write
from edge.security import EdgeJwt, EdgeTls, check_jwks
from localstack.components import envoy_binary
from localstack.config import StackConfig
from services.common.settings import SettingsError, from_env
from tests import edge_credentials

DESCRIPTOR = Path("gen/voice_v1.pb")
JWT = "envoy.filters.http.jwt_authn"
CORS = "envoy.filters.http.cors"


def _chain(config: dict) -> dict:
    (chain,) = config["static_resources"]["listeners"][0]["filter_chains"]
    return chain


def _manager(config: dict) -> dict:
    return _chain(config)["filters"][0]["typed_config"]


def _filters(config: dict) -> list[str]:
    return [f["name"] for f in _manager(config)["http_filters"]]


def _secure(tmp: Path, **changes) -> EdgeConfig:
    return EdgeConfig(
        descriptor=DESCRIPTOR,
        tls=EdgeTls(cert=tmp / "tls.crt", key=tmp / "tls.key"),
        jwt=EdgeJwt(jwks=tmp / "jwks.json", issuer="https://issuer/", audiences=("a", "b")),
        cors_origins=("https://app.example",),
        **changes,
    )


def test_by_default_there_is_no_tls_auth_or_cors():
    config = render(EdgeConfig(descriptor=DESCRIPTOR))
    assert "transport_socket" not in _chain(config)
    assert JWT not in _filters(config) and CORS not in _filters(config)
    assert "typed_per_filter_config" not in _manager(config)["route_config"]["virtual_hosts"][0]


def test_tls_terminates_with_the_files_and_offers_h2_and_http1(tmp_path):
    chain = _chain(render(_secure(tmp_path)))
    socket = chain["transport_socket"]
    assert socket["name"] == "envoy.transport_sockets.tls"
    context = socket["typed_config"]["common_tls_context"]
    assert socket["typed_config"]["@type"].endswith("tls.v3.DownstreamTlsContext")
    assert context["alpn_protocols"] == ["h2", "http/1.1"]
    assert context["tls_certificates"] == [{
        "certificate_chain": {"filename": str(tmp_path / "tls.crt")},
        "private_key": {"filename": str(tmp_path / "tls.key")},
    }]
    assert context["tls_params"]["tls_minimum_protocol_version"] == "TLSv1_2"


def test_jwt_filter_checks_bearer_tokens_against_the_jwks_file(tmp_path):
    config = render(_secure(tmp_path))
    (jwt,) = [f["typed_config"] for f in _manager(config)["http_filters"] if f["name"] == JWT]
    (provider,) = jwt["providers"].values()
    assert provider["local_jwks"] == {"filename": str(tmp_path / "jwks.json")}
    assert provider["issuer"] == "https://issuer/"
    assert provider["audiences"] == ["a", "b"]
    # Only the header: a token in the query string would be written to access logs.
    assert provider["from_headers"] == [{"name": "authorization", "value_prefix": "Bearer "}]
    assert "from_params" not in provider
    assert provider["forward"] is False  # the gateway never sees the token
    # No key material in the config itself.
    assert "inline_string" not in json.dumps(jwt) and "remote_jwks" not in provider


def test_only_health_is_open_and_every_other_path_requires_a_token(tmp_path):
    config = render(_secure(tmp_path))
    (jwt,) = [f["typed_config"] for f in _manager(config)["http_filters"] if f["name"] == JWT]
    rules = jwt["rules"]
    open_matches = [r["match"] for r in rules if "requires" not in r]
    assert open_matches == [
        # With a trailing slash too (the transcoder maps it); Envoy matches a path
        # without its query string, so /v1/health?t=1 is open as well.
        {"path": "/health"},
        {"path": "/health/"},
        {"path": "/v1/health"},
        {"path": "/v1/health/"},
        {"path": "/voice.v1.Gateway/GetHealth"},
        {"path": "/voice.v1.Gateway/GetLegacyHealth"},
        {"prefix": "/grpc.health.v1.Health/"},
    ]
    # The catch-all comes last (the first matching rule decides) and requires the provider.
    assert rules[-1] == {"match": {"prefix": "/"}, "requires": {"provider_name": "edge"}}
    assert rules.index(rules[-1]) == len(open_matches)


def test_every_token_failure_is_a_401_in_the_error_shape(tmp_path):
    """jwt_authn answers a token for another audience with 403; the first local-reply
    mappers make any reply to a failed token 401 (UNAUTHENTICATED for gRPC too)."""
    config = render(_secure(tmp_path))
    (jwt,) = [f["typed_config"] for f in _manager(config)["http_filters"] if f["name"] == JWT]
    (provider,) = jwt["providers"].values()
    key = provider["failed_status_in_metadata"]
    rest, grpc, *others = _manager(config)["local_reply_config"]["mappers"]
    failed = grpc["filter"]["metadata_filter"]["matcher"]
    assert failed == {"filter": JWT, "path": [{"key": key}], "value": {"present_match": True}}
    assert grpc["status_code"] == rest["status_code"] == 401
    assert "body_format_override" not in grpc  # its text becomes grpc-message
    assert rest["filter"]["and_filter"]["filters"][0] == grpc["filter"]
    assert rest["body_format_override"]["json_format"]["error"]["status"] == "UNAUTHENTICATED"
    plain = render(EdgeConfig(descriptor=DESCRIPTOR))
    assert _manager(plain)["local_reply_config"]["mappers"] == others


def test_filter_order_auth_then_transcoding_then_cors(tmp_path):
    """Auth refuses a request before the transcoder reads its body (and sees REST paths);
    CORS acts on the route a rewritten path finds; the error filter stays first so it
    sees every response last."""
    assert _filters(render(_secure(tmp_path))) == [
        "voice.edge_errors", BODY_LIMIT_FILTER, JWT, "voice.edge_timeout", "voice.edge_fields",
        "envoy.filters.http.grpc_json_transcoder", CORS, "voice.edge_grpc_only",
        "envoy.filters.http.router",
    ]
    no_cors = render(dataclasses.replace(_secure(tmp_path), cors_origins=()))
    assert CORS not in _filters(no_cors)
    host = _manager(no_cors)["route_config"]["virtual_hosts"][0]
    assert "typed_per_filter_config" not in host
    assert len(host["routes"]) == len(_manager(render(EdgeConfig(DESCRIPTOR)))["route_config"][
        "virtual_hosts"][0]["routes"])
    (jwt,) = [f["typed_config"] for f in _manager(no_cors)["http_filters"] if f["name"] == JWT]
    assert jwt["bypass_cors_preflight"] is False  # without CORS, preflights need a token too


def test_cors_allows_exactly_the_configured_origins(tmp_path):
    config = render(_secure(tmp_path, max_body_bytes=10))
    host = _manager(config)["route_config"]["virtual_hosts"][0]
    policy = host["typed_per_filter_config"][CORS]
    assert policy["@type"].endswith("cors.v3.CorsPolicy")
    assert policy["allow_origin_string_match"] == [{"exact": "https://app.example"}]
    assert "authorization" in policy["allow_headers"]
    assert "allow_credentials" not in policy  # bearer tokens, no cookies
    # The filter answers every preflight, so none reaches the gateway...
    assert policy["forward_not_matching_preflights"] is False
    # ...and every preflight has a route for it to act on, ahead of the 404.
    preflight, not_found = host["routes"][-2:]
    assert not_found["direct_response"]["status"] == 404
    assert preflight["match"]["headers"] == [
        {"name": ":method", "string_match": {"exact": "OPTIONS"}},
        {"name": "access-control-request-method", "present_match": True},
    ]
    (jwt,) = [f["typed_config"] for f in _manager(config)["http_filters"] if f["name"] == JWT]
    assert jwt["bypass_cors_preflight"] is True


def test_access_log_never_holds_credentials():
    operators = re.findall(r"%([A-Z_]+)(?:\(([^)]*)\))?%", "".join(ACCESS_LOG_FIELDS.values()))
    header_operators = ("REQ", "REQ_WITHOUT_QUERY", "RESP", "TRAILER")
    headers = {arg.upper() for name, arg in operators if name in header_operators}
    assert headers == {"X-REQUEST-ID", "X-ENVOY-ORIGINAL-PATH?:PATH"}
    # The path is logged without its query string, where a client may put a key.
    assert ("REQ_WITHOUT_QUERY", "X-ENVOY-ORIGINAL-PATH?:PATH") in operators
    # Nothing from the verified token (claims land in dynamic metadata) or the TLS peer.
    assert not any(name.startswith(("DYNAMIC_METADATA", "DOWNSTREAM_PEER", "FILTER_STATE"))
                   for name, _ in operators)
    for secret in ("AUTHORIZATION", "COOKIE", "API-KEY", "TOKEN"):
        assert secret not in json.dumps(ACCESS_LOG_FIELDS).upper()


def test_envoy_accepts_the_secure_configuration(tmp_path):
    credentials = edge_credentials.make(tmp_path)
    edge = dataclasses.replace(
        _secure(tmp_path), descriptor=DESCRIPTOR.resolve(),
        tls=EdgeTls(cert=credentials.cert, key=credentials.key),
    )
    path = write(edge, tmp_path / "envoy.json")
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- settings: the local stack's EDGE_* variables ----------------------------------


def _stack(env: dict[str, str]) -> StackConfig:
    return from_env(StackConfig, "STACK", env)


def test_settings_build_the_edge_security(tmp_path):
    credentials = edge_credentials.make(tmp_path)
    config = _stack({
        "EDGE_TLS_CERT": str(credentials.cert), "EDGE_TLS_KEY": str(credentials.key),
        "EDGE_JWKS_FILE": str(credentials.jwks), "EDGE_JWT_ISSUER": "https://issuer/",
        "EDGE_JWT_AUDIENCE": "voice, other", "EDGE_CORS_ORIGINS": "https://a.example,http://b:3000",
    })
    assert config.edge_tls() == EdgeTls(cert=credentials.cert, key=credentials.key)
    assert config.edge_jwt() == EdgeJwt(
        jwks=credentials.jwks, issuer="https://issuer/", audiences=("voice", "other"))
    assert config.edge_cors_origins == ("https://a.example", "http://b:3000")


def test_settings_default_to_everything_off():
    config = _stack({})
    assert config.edge_tls() is None and config.edge_jwt() is None
    assert config.edge_cors_origins == ()


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"EDGE_TLS_CERT": "{cert}"}, "set both, or neither"),
        ({"EDGE_TLS_KEY": "{key}"}, "set both, or neither"),
        ({"EDGE_TLS_CERT": "{dir}/missing.crt", "EDGE_TLS_KEY": "{key}"}, "no such file"),
        ({"EDGE_TLS_CERT": "{jwks}", "EDGE_TLS_KEY": "{key}"}, "not a PEM certificate"),
        ({"EDGE_JWKS_FILE": "{dir}/missing.json"}, "EDGE_JWKS_FILE"),
        ({"EDGE_JWKS_FILE": "{cert}"}, "not a JWKS"),
        ({"EDGE_JWT_AUDIENCE": "voice"}, "need EDGE_JWKS_FILE"),
        ({"EDGE_CORS_ORIGINS": "*"}, "not an origin"),
        ({"EDGE_CORS_ORIGINS": "https://a.example/"}, "not an origin"),
    ],
)
def test_bad_edge_settings_stop_the_start(tmp_path, env, fragment):
    credentials = edge_credentials.make(tmp_path)
    names = {"cert": credentials.cert, "key": credentials.key, "jwks": credentials.jwks,
             "dir": tmp_path}
    with pytest.raises(SettingsError, match=fragment):
        _stack({var: value.format(**names) for var, value in env.items()})


def test_a_jwks_must_hold_only_public_asymmetric_keys(tmp_path):
    credentials = edge_credentials.make(tmp_path)
    public = json.loads(credentials.jwks.read_text())
    check_jwks(json.dumps(public))
    rsa = public["keys"][0]
    for bad, fragment in (
        ({"keys": [{**rsa, "d": "secret"}]}, "private key material"),
        ({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, "only RSA or EC"),
        ({"keys": []}, "no keys"),
        ({"nope": 1}, "not a JWKS"),
    ):
        with pytest.raises(ValueError, match=fragment):
            check_jwks(json.dumps(bad))
