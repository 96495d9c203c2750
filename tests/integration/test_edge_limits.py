"""Real Envoys with tiny limits in front of the stack's gateway: a client over
its rate, or a call over the edge's concurrency, gets 429 with Retry-After
(REST) or RESOURCE_EXHAUSTED (gRPC), naming the limit; health is never rate
limited; a body over the limit is 413; a gateway that is gone costs no call."""

from __future__ import annotations

import http.client
import json
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
import jwt as pyjwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from voice.v1 import gateway_pb2, gateway_pb2_grpc, tts_pb2

from services.gateway.edge_limits import EdgeRateLimit
from services.gateway.edge_security import EdgeJwt
from services.gateway.envoy import EdgeConfig, write
from services.stack.components import envoy_binary, service_spec
from services.stack.config import free_ports
from services.stack.models import DEMO_VOICES
from services.stack.supervisor import Supervisor
from tests import edge_credentials
from tests.integration.stacks import REPO
from tests.processes import stop

pytestmark = pytest.mark.integration

BODY_LIMIT = 4096
# Ten sentences: the stream runs well past its first one.
LONG_TEXT = " ".join(f"Sentence number {n} is here." for n in range(1, 11))


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict:
        assert self.headers.get("content-type") == "application/json", self.body[:300]
        return json.loads(self.body)["error"]


@dataclass
class Edge:
    port: int
    admin: int
    folder: Path

    def call(self, method: str, path: str, body: bytes | None = None,
             source: str = "127.0.0.1", headers: dict | None = None) -> Reply:
        """One request on a connection of its own from ``source`` (a loopback address:
        the rate limit keeps a bucket per client address)."""
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=30, source_address=(source, 0))
        try:
            sent = dict(headers or {})
            if body is not None:
                sent.setdefault("content-type", "application/json")
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                         response.read())
        finally:
            connection.close()

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(f"127.0.0.1:{self.port}")

    def stats(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/stats", timeout=5) as reply:
            return reply.read().decode()


def _start(stack, folder: Path, gateway_port: int = 0, **limits) -> tuple[Edge, subprocess.Popen]:
    port, admin = free_ports(2)
    config = EdgeConfig(
        descriptor=stack.config.descriptor.resolve(),
        gateway_port=gateway_port or stack.config.gateway_port,
        listen_host="127.0.0.1",
        listen_port=port,
        admin_port=admin,
        **limits,
    )
    with open(folder / "access.log", "wb") as stdout, open(folder / "envoy.log", "wb") as stderr:
        process = subprocess.Popen(
            [envoy_binary(), "-c", str(write(config, folder / "envoy.json")),
             "--disable-hot-restart", "--log-level", "warning", "--concurrency", "1"],
            stdout=stdout, stderr=stderr,
        )
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None and time.monotonic() < deadline, \
            (folder / "envoy.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1) as ready:
                if ready.status == 200:
                    return Edge(port, admin, folder), process
        except OSError:
            pass
        time.sleep(0.05)


@pytest.fixture(scope="module")
def rated(stack, tmp_path_factory):
    """One call a second per client, burst 1; small bodies (each way: no synthesis
    fits); a second gateway endpoint nobody serves."""
    folder = tmp_path_factory.mktemp("rated_edge")
    (closed,) = free_ports(1)
    edge, process = _start(stack, folder, rate_limit=EdgeRateLimit(per_second=1, burst=1),
                           max_body_bytes=BODY_LIMIT, more_gateways=(("127.0.0.1", closed),))
    try:
        yield edge
    finally:
        stop(process)


@pytest.fixture(scope="module")
def narrow(stack, tmp_path_factory):
    """One call in flight at a time, no rate limit."""
    folder = tmp_path_factory.mktemp("narrow_edge")
    edge, process = _start(stack, folder, max_concurrent_streams=1, max_queue=1)
    try:
        yield edge
    finally:
        stop(process)


def _until_refused(send, tries: int = 3):
    """Sends up to ``tries`` calls back to back, returning the first refused one: with
    one token a second, a refill can fall between two calls but not between three."""
    for _ in range(tries):
        reply = send()
        if reply is not None:
            return reply
    pytest.fail(f"{tries} calls in a row were all served")


def _rest_refused(edge: Edge, source: str) -> Reply:
    def send():
        reply = edge.call("GET", "/v1/voices", source=source)
        if reply.status == 200:
            return None
        return reply
    return _until_refused(send)


def test_rest_over_its_rate_gets_429_with_retry_after_and_then_is_served(rated):
    refused = _rest_refused(rated, "127.0.0.2")
    assert refused.status == 429, refused.body[:300]
    error = refused.error()
    assert error["code"] == 429 and error["status"] == "RESOURCE_EXHAUSTED", error
    assert "EDGE_RATE_LIMIT_PER_SECOND=1" in error["message"], error
    assert "EDGE_RATE_LIMIT_BURST=1" in error["message"], error
    wait = int(refused.headers["retry-after"])
    assert wait == 1
    time.sleep(wait)  # the bucket refills within Retry-After
    reply = rated.call("GET", "/v1/voices", source="127.0.0.2")
    assert reply.status == 200, reply.body[:300]
    assert [v["name"] for v in json.loads(reply.body)["voices"]] == sorted(DEMO_VOICES)


def test_each_client_address_has_a_bucket_of_its_own(rated):
    assert _rest_refused(rated, "127.0.0.3").status == 429
    # Another client is served at once, though the first one's bucket is empty.
    reply = rated.call("GET", "/v1/voices", source="127.0.0.4")
    assert reply.status == 200, reply.body[:300]


def test_health_is_never_rate_limited(rated):
    assert _rest_refused(rated, "127.0.0.5").status == 429
    for _ in range(5):
        reply = rated.call("GET", "/v1/health", source="127.0.0.5")
        assert reply.status == 200, reply.body[:300]
        assert json.loads(reply.body)["status"] == "SERVING"
        old = rated.call("GET", "/health", source="127.0.0.5")  # the old server's
        assert old.status == 200, old.body[:300]
        assert json.loads(old.body)["serving_status"] == "SERVING"
    with rated.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        gateway = gateway_pb2_grpc.GatewayStub(channel)
        for _ in range(5):
            check = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert check.status == health_pb2.HealthCheckResponse.SERVING
            assert gateway.GetHealth(gateway_pb2.GetHealthRequest(), timeout=10).status == "SERVING"


def test_grpc_over_its_rate_is_resource_exhausted_naming_the_limit(rated):
    with rated.channel() as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)

        def send():
            try:
                stub.ListVoices(gateway_pb2.ListVoicesRequest(), timeout=10)
            except grpc.RpcError as error:
                return error
            return None

        refused = _until_refused(send)
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused
    assert "EDGE_RATE_LIMIT_PER_SECOND=1" in refused.details()
    metadata = dict(refused.initial_metadata() or ()) | dict(refused.trailing_metadata() or ())
    assert metadata.get("retry-after") == "1"


def test_a_gateway_that_is_gone_fails_no_call(rated):
    """The second endpoint has nothing listening: health checks take it out of the
    rotation, and a call that tried it would be retried on the live one."""
    for _ in range(6):
        reply = rated.call("GET", "/health", source="127.0.0.6")
        assert reply.status == 200, reply.body[:300]
    stats = rated.stats()
    assert "cluster.gateway.membership_total: 2" in stats
    assert "cluster.gateway.membership_healthy: 1" in stats


def test_with_jwt_each_token_subject_has_a_bucket_of_its_own(stack, tmp_path):
    credentials = edge_credentials.make(tmp_path)
    edge, process = _start(
        stack, tmp_path, rate_limit=EdgeRateLimit(per_second=1, burst=1),
        jwt=EdgeJwt(jwks=credentials.jwks, issuer=edge_credentials.ISSUER,
                    audiences=(edge_credentials.AUDIENCE,)),
    )

    def token(subject: str) -> dict:
        algorithm, key = credentials.signing_keys["rsa"]
        now = int(time.time())
        claims = {"iss": edge_credentials.ISSUER, "aud": edge_credentials.AUDIENCE,
                  "sub": subject, "iat": now, "exp": now + 300}
        signed = pyjwt.encode(claims, key, algorithm=algorithm, headers={"kid": "rsa"})
        return {"authorization": f"Bearer {signed}"}

    try:
        def send():
            reply = edge.call("GET", "/v1/voices", headers=token("alice"))
            return None if reply.status == 200 else reply

        refused = _until_refused(send)
        assert refused.status == 429, refused.body[:300]
        assert "EDGE_RATE_LIMIT_PER_SECOND=1" in refused.error()["message"]
        # Same address, another subject: its own bucket.
        reply = edge.call("GET", "/v1/voices", headers=token("bob"))
        assert reply.status == 200, reply.body[:300]
    finally:
        stop(process)


def test_a_call_over_the_concurrency_limit_is_refused_while_one_is_in_flight(narrow):
    body = json.dumps({"text": LONG_TEXT, "voice": "demo-spark", "skip_rvc": True}).encode()
    held = http.client.HTTPConnection("127.0.0.1", narrow.port, timeout=120)
    try:
        held.request("POST", "/v1/synthesize:stream", body=body,
                     headers={"content-type": "application/json"})
        stream = held.getresponse()
        assert stream.status == 200
        assert stream.read1(1)  # its first sentence is here: the call is in flight

        refused = narrow.call("GET", "/v1/voices")
        assert refused.status == 429, refused.body[:300]
        assert refused.headers["retry-after"] == "1"
        error = refused.error()
        assert error["status"] == "RESOURCE_EXHAUSTED", error
        assert "EDGE_MAX_CONCURRENT_STREAMS=1" in error["message"], error
        with narrow.channel() as channel:
            with pytest.raises(grpc.RpcError) as failed:
                gateway_pb2_grpc.GatewayStub(channel).ListVoices(
                    gateway_pb2.ListVoicesRequest(), timeout=10)
        assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "EDGE_MAX_CONCURRENT_STREAMS=1" in failed.value.details()
    finally:
        held.close()  # cancels the synthesis
    # Once the stream is gone the edge serves again.
    deadline = time.monotonic() + 15
    while (reply := narrow.call("GET", "/v1/voices")).status != 200:
        assert reply.status == 429 and time.monotonic() < deadline, reply.body[:300]
        time.sleep(0.1)


def test_a_body_over_the_limit_is_413_naming_it(rated):
    body = json.dumps({"text": "a" * (BODY_LIMIT + 100)}).encode()
    reply = rated.call("POST", "/v1/synthesize", body=body, source="127.0.0.7")
    assert reply.status == 413, reply.body[:300]
    error = reply.error()
    assert error["code"] == 413 and error["status"] == "RESOURCE_EXHAUSTED", error
    assert f"EDGE_MAX_BODY_BYTES={BODY_LIMIT}" in error["message"], error
    # A body within it passes the edge to the gateway, which answers for itself.
    small = rated.call("POST", "/v1/synthesize", source="127.0.0.8",
                       body=json.dumps({"text": "Hi.", "voice": "no-such-voice"}).encode())
    assert small.status not in (413, 429), small.body[:300]
    assert "EDGE_" not in small.body.decode(errors="replace")


@pytest.fixture(scope="module")
def full_gateway(stack, tmp_path_factory):
    """A gateway of its own that takes one working call at a time and queues none,
    behind an Envoy with no limits of its own: the refusals come from the service."""
    folder = tmp_path_factory.mktemp("full_gateway")
    gateway, metrics = free_ports(2)
    gateway_env = next(c.spec.env for c in stack.supervisor.children if c.spec.name == "gateway")
    spec = service_spec(REPO, "gateway", "GATEWAY", gateway, metrics, {
        "TTS_TARGET": f"127.0.0.1:{stack.config.tts_port}",
        "RVC_TARGET": f"127.0.0.1:{stack.config.rvc_port}",
        "GATEWAY_VOICES_DIR": gateway_env["GATEWAY_VOICES_DIR"],
        "GATEWAY_MAX_CONCURRENT_STREAMS": "1",
        "GATEWAY_MAX_QUEUED_STREAMS": "0",
        "GATEWAY_RETRY_AFTER_SECONDS": "3",
    })
    supervisor = Supervisor([spec], folder / "logs")
    supervisor.start(timeout=120)
    try:
        edge, process = _start(stack, folder, gateway_port=gateway)
        try:
            yield edge, gateway
        finally:
            stop(process)
    finally:
        supervisor.stop(timeout=30)


def test_a_full_service_refuses_with_429_and_retry_after_through_the_edge(full_gateway):
    edge, gateway = full_gateway
    body = json.dumps({"text": LONG_TEXT, "voice": "demo-spark", "skip_rvc": True}).encode()
    held = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=120)
    try:
        held.request("POST", "/v1/synthesize:stream", body=body,
                     headers={"content-type": "application/json"})
        stream = held.getresponse()
        assert stream.status == 200
        assert stream.read1(1)  # in flight: the gateway's one slot is taken

        refused = edge.call("POST", "/v1/synthesize", body=json.dumps(
            {"text": "Hi.", "voice": "demo-spark", "skip_rvc": True}).encode())
        assert refused.status == 429, refused.body[:300]
        assert refused.headers.get("retry-after") == "3", refused.headers
        error = refused.error()
        assert error["status"] == "RESOURCE_EXHAUSTED", error
        assert "GATEWAY_MAX_CONCURRENT_STREAMS=1" in error["message"], error
        assert "GATEWAY_MAX_QUEUED_STREAMS=0" in error["message"], error
        # Straight to the service over gRPC: the same refusal, retry-after in the trailers.
        with grpc.insecure_channel(f"127.0.0.1:{gateway}") as channel:
            with pytest.raises(grpc.RpcError) as failed:
                gateway_pb2_grpc.GatewayStub(channel).Tts(
                    tts_pb2.SynthesizeSpeechRequest(text="Hi."), timeout=10)
        assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert ("retry-after", "3") in tuple(failed.value.trailing_metadata())
        # Listing and health are never held back.
        assert edge.call("GET", "/v1/voices").status == 200
        assert edge.call("GET", "/health").status == 200
    finally:
        held.close()  # cancels the synthesis, freeing the slot
    deadline = time.monotonic() + 30
    while (reply := edge.call("POST", "/v1/synthesize", body=json.dumps(
            {"text": "Hi.", "voice": "demo-spark", "skip_rvc": True}).encode())).status != 200:
        assert reply.status == 429 and time.monotonic() < deadline, reply.body[:300]
        time.sleep(0.2)
