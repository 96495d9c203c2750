"""A real Envoy with TLS and JWT authentication in front of the stack's gateway:
REST and gRPC need a valid bearer token over TLS; health stays open."""

from __future__ import annotations

import http.client
import ssl
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from voice.v1 import gateway_pb2, gateway_pb2_grpc

from edge.config import EdgeConfig
from edge.render import write
from edge.security import EdgeJwt, EdgeTls
from localstack.config import free_ports
from localstack.prepare.models import DEMO_VOICES
from tests import edge_credentials
from tests.edge_credentials import AUDIENCE, ISSUER, EdgeCredentials
from tests.integration.http_client import Reply, call
from tests.integration.stacks import envoy_spec, supervised

ORIGIN = "https://app.example"
WRITE_SCOPE = "voices:write"


@dataclass
class SecureEdge:
    port: int
    credentials: EdgeCredentials
    access_log: Path

    @property
    def api(self) -> str:
        return f"https://localhost:{self.port}"

    def get(self, path: str, token: str | None = None, headers: dict | None = None) -> Reply:
        headers = dict(headers or {})
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        context = ssl.create_default_context(cafile=str(self.credentials.cert))
        return call("GET", self.api + path, headers=headers, context=context)

    def send(self, method: str, path: str, body: object, token: str) -> Reply:
        context = ssl.create_default_context(cafile=str(self.credentials.cert))
        return call(method, self.api + path, body=body, context=context,
                    headers={"authorization": f"Bearer {token}",
                             "content-type": "application/json"})

    def channel(self) -> grpc.Channel:
        trusted = grpc.ssl_channel_credentials(root_certificates=self.credentials.cert.read_bytes())
        return grpc.secure_channel(f"localhost:{self.port}", trusted)


@pytest.fixture(scope="module")
def secure_edge(stack, tmp_path_factory):
    folder = tmp_path_factory.mktemp("secure_edge")
    credentials = edge_credentials.make(folder)
    port, admin = free_ports(2)
    config = EdgeConfig(
        descriptor=stack.config.descriptor.resolve(),
        gateway_port=stack.config.gateway_port,
        listen_host="127.0.0.1",
        listen_port=port,
        admin_port=admin,
        tls=EdgeTls(cert=credentials.cert, key=credentials.key),
        jwt=EdgeJwt(jwks=credentials.jwks, issuer=ISSUER, audiences=(AUDIENCE,),
                    write_scope=WRITE_SCOPE),
        cors_origins=(ORIGIN,),
    )
    envoy = envoy_spec(write(config, folder / "envoy.json"), admin)
    with supervised(specs=[envoy], logs=folder, timeout=30) as running:
        # Its access log is its stdout, in its log beside its (few: level warning) own lines.
        yield SecureEdge(port=port, credentials=credentials, access_log=running.logs / "envoy.log")


def _is_unauthenticated(reply: Reply) -> None:
    assert reply.status == 401, reply.body[:300]
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    assert error["code"] == 401 and error["status"] == "UNAUTHENTICATED", error
    assert error["message"], error


def test_rest_without_a_token_is_401_in_the_error_shape(secure_edge):
    _is_unauthenticated(secure_edge.get("/v1/voices"))
    _is_unauthenticated(secure_edge.get("/v1/voices", headers={"authorization": "Basic eDp5"}))


@pytest.mark.parametrize("kid", ["rsa", "ec"])
def test_rest_with_a_valid_token_over_tls_is_served(secure_edge, kid):
    reply = secure_edge.get("/v1/voices", secure_edge.credentials.token(kid))
    assert reply.status == 200, reply.body[:300]
    assert [v["name"] for v in reply.json()["voices"]] == sorted(DEMO_VOICES)


@pytest.mark.parametrize(
    "claims",
    [
        {"expires_in": -120},  # beyond the allowed clock skew
        {"audience": "another-service"},
        {"issuer": "https://someone.else/"},
    ],
    ids=["expired", "wrong-audience", "wrong-issuer"],
)
def test_invalid_tokens_are_401(secure_edge, claims):
    _is_unauthenticated(secure_edge.get("/v1/voices", secure_edge.credentials.token(**claims)))


def test_a_token_signed_by_a_key_outside_the_jwks_is_401(secure_edge, tmp_path):
    stranger = edge_credentials.make(tmp_path)  # same kids, other keys
    _is_unauthenticated(secure_edge.get("/v1/voices", stranger.token()))


def test_health_is_open_without_a_token(secure_edge):
    reply = secure_edge.get("/v1/health")
    assert reply.status == 200, reply.body[:300]
    assert reply.json()["status"] == "SERVING"
    old = secure_edge.get("/health")  # the old server's
    assert old.status == 200, old.body[:300]
    assert old.json()["status"] == "ready"


@pytest.mark.parametrize("path", ["/v1/health?t=1", "/health?t=1&x=%zz", "/v1/health/?t=1"])
def test_health_with_a_query_string_is_open_without_a_token(secure_edge, path):
    """jwt_authn's open rules match the path without its query string, as the transcoder
    ignores a parameter that is no field: a prober's cache-buster needs no token."""
    reply = secure_edge.get(path)
    assert reply.status == 200, reply.body[:300]
    _is_unauthenticated(secure_edge.get("/v1/voices?t=1"))


def test_plain_http_is_not_served_on_the_tls_port(secure_edge):
    with pytest.raises((OSError, http.client.HTTPException)):
        urllib.request.urlopen(f"http://127.0.0.1:{secure_edge.port}/health", timeout=5)


def test_grpc_over_tls_needs_the_bearer_token(secure_edge):
    with secure_edge.channel() as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListVoices(gateway_pb2.ListVoicesRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        token = secure_edge.credentials.token()
        reply = stub.ListVoices(gateway_pb2.ListVoicesRequest(), timeout=10,
                                metadata=(("authorization", f"Bearer {token}"),))
        assert [v.name for v in reply.voices] == sorted(DEMO_VOICES)
        # Health stays open for probes.
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_cors_allows_the_configured_origin_and_its_preflight_needs_no_token(secure_edge):
    preflight = {"origin": ORIGIN, "access-control-request-method": "GET",
                 "access-control-request-headers": "authorization"}
    context = ssl.create_default_context(cafile=str(secure_edge.credentials.cert))
    reply = call("OPTIONS", secure_edge.api + "/v1/voices", headers=preflight, context=context)
    assert reply.status == 200, reply.body[:300]
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    other = call("OPTIONS", secure_edge.api + "/v1/voices", context=context,
                 headers={**preflight, "origin": "https://evil.example"})
    assert "access-control-allow-origin" not in {k.lower() for k in other.headers}
    # The request itself carries a token, and its answer names the origin.
    reply = secure_edge.get("/v1/voices", secure_edge.credentials.token(), {"origin": ORIGIN})
    assert reply.status == 200, reply.body[:300]
    assert reply.headers["access-control-allow-origin"] == ORIGIN


def test_tokens_never_reach_the_access_log(secure_edge):
    token = secure_edge.credentials.token()
    marker = f"auth-{uuid.uuid4().hex[:12]}"
    assert secure_edge.get("/v1/voices", token, {"x-request-id": marker}).status == 200
    # A token in the query string is neither accepted nor logged.
    query = secure_edge.get(f"/v1/voices?access_token={token}", headers={"x-request-id": marker + "q"})
    _is_unauthenticated(query)
    deadline = time.monotonic() + 15  # Envoy flushes the access log on a timer
    while f'"{marker}q"' not in secure_edge.access_log.read_text():
        assert time.monotonic() < deadline, "the requests never reached the access log"
        time.sleep(0.1)
    log = secure_edge.access_log.read_text()
    assert f'"{marker}"' in log
    signature = token.rsplit(".", 1)[1]
    assert token not in log and signature not in log
    assert '"path":"/v1/voices"' in log


def test_voice_library_writes_need_the_write_scope(secure_edge):
    plain = secure_edge.credentials.token()
    for method, path, body in (("POST", "/v1/voices", {"name": "../x"}),
                               ("PUT", "/v1/voices/ada", {"description": "x"}),
                               ("DELETE", "/v1/voices/ada", None),
                               ("DELETE", "/v1/rvc-voices/alice", None)):
        refused = secure_edge.send(method, path, body, plain)
        assert refused.status == 403, refused.body[:300]
        error = refused.json()["error"]
        assert error["status"] == "PERMISSION_DENIED"
        assert error["message"] == f"voice library writes need a token with the scope '{WRITE_SCOPE}'"
    # With the scope the write reaches the gateway, which judges it (a path-like name).
    writer = secure_edge.credentials.token(scope=f"openid {WRITE_SCOPE}")
    judged = secure_edge.send("POST", "/v1/voices", {"name": "../x"}, writer)
    assert judged.status == 400, judged.body[:300]
    assert "voice name '../x' is malformed" in judged.json()["error"]["message"]
    # Reads need no more than a valid token.
    assert secure_edge.get("/v1/rvc-voices", plain).status == 200


def test_grpc_voice_library_writes_need_the_write_scope(secure_edge):
    with secure_edge.channel() as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        ghost = gateway_pb2.DeleteVoiceRequest(name="ghost")
        for token, code in ((secure_edge.credentials.token(), grpc.StatusCode.PERMISSION_DENIED),
                            (secure_edge.credentials.token(scp=[WRITE_SCOPE]),
                             grpc.StatusCode.NOT_FOUND)):
            with pytest.raises(grpc.RpcError) as caught:
                stub.DeleteVoice(ghost, timeout=10,
                                 metadata=(("authorization", f"Bearer {token}"),))
            assert caught.value.code() == code, caught.value.details()
