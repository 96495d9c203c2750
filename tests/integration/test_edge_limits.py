"""Real Envoys with tiny limits in front of the stack's gateway: a client over
its rate, or a call over the edge's concurrency, gets 429 with Retry-After
(REST) or RESOURCE_EXHAUSTED (gRPC), naming the limit; health is never rate
limited; a body over the limit is 413 on every route, from its declared length
before it is sent (no 100 Continue either) or as soon as a streamed one passes
it, while a body within it gets its 100 Continue at once; paths that resolve to
an internal service are 404; a gateway that is gone costs no call."""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import jwt as pyjwt
import pytest
from google.api import annotations_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from voice.v1 import gateway_pb2, gateway_pb2_grpc, tts_pb2

from edge.config import EdgeConfig
from edge.errors import OLD_SERVER_PATHS
from edge.limits import EdgeRateLimit
from edge.render import write
from edge.security import EdgeJwt
from localstack.components import service_spec
from localstack.config import free_ports
from localstack.prepare.models import DEMO_VOICES
from localstack.supervise.spec import ProcessSpec
from tests import edge_credentials
from tests.integration.stacks import REPO, envoy_spec, supervised

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


def _edge(stack, folder: Path, gateway_port: int = 0, **limits) -> tuple[Edge, ProcessSpec]:
    """An edge of ``limits`` in ``folder`` before the stack's gateway (or ``gateway_port``),
    and the Envoy that serves it."""
    port, admin = free_ports(2)
    config = EdgeConfig(
        descriptor=stack.config.descriptor.resolve(),
        gateway_port=gateway_port or stack.config.gateway_port,
        listen_host="127.0.0.1",
        listen_port=port,
        admin_port=admin,
        **limits,
    )
    return Edge(port, admin, folder), envoy_spec(write(config, folder / "envoy.json"), admin)


@contextlib.contextmanager
def _serving(stack, folder: Path, **limits) -> Iterator[Edge]:
    """An edge of ``limits`` in ``folder``, stopped on leaving."""
    edge, envoy = _edge(stack, folder, **limits)
    with supervised(specs=[envoy], logs=folder, timeout=30):
        yield edge


@pytest.fixture(scope="module")
def rated(stack, tmp_path_factory):
    """One call a second per client, burst 1; small bodies (each way: no synthesis
    fits); a second gateway endpoint nobody serves."""
    (closed,) = free_ports(1)
    with _serving(stack, tmp_path_factory.mktemp("rated_edge"),
                  rate_limit=EdgeRateLimit(per_second=1, burst=1), max_body_bytes=BODY_LIMIT,
                  more_gateways=(("127.0.0.1", closed),)) as edge:
        yield edge


@pytest.fixture(scope="module")
def narrow(stack, tmp_path_factory):
    """One call in flight at a time, no rate limit."""
    with _serving(stack, tmp_path_factory.mktemp("narrow_edge"),
                  max_concurrent_streams=1, max_queue=1) as edge:
        yield edge


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
        # A query string (a prober's cache-buster) makes it no other path.
        for path in ("/v1/health?t=1", "/health?t=1"):
            reply = rated.call("GET", path, source="127.0.0.5")
            assert reply.status == 200, (path, reply.body[:300])
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

    def token(subject: str) -> dict:
        algorithm, key = credentials.signing_keys["rsa"]
        now = int(time.time())
        claims = {"iss": edge_credentials.ISSUER, "aud": edge_credentials.AUDIENCE,
                  "sub": subject, "iat": now, "exp": now + 300}
        signed = pyjwt.encode(claims, key, algorithm=algorithm, headers={"kid": "rsa"})
        return {"authorization": f"Bearer {signed}"}

    with _serving(
        stack, tmp_path, rate_limit=EdgeRateLimit(per_second=1, burst=1),
        jwt=EdgeJwt(jwks=credentials.jwks, issuer=edge_credentials.ISSUER,
                    audiences=(edge_credentials.AUDIENCE,)),
    ) as edge:
        def send():
            reply = edge.call("GET", "/v1/voices", headers=token("alice"))
            return None if reply.status == 200 else reply

        refused = _until_refused(send)
        assert refused.status == 429, refused.body[:300]
        assert "EDGE_RATE_LIMIT_PER_SECOND=1" in refused.error()["message"]
        # Same address, another subject: its own bucket.
        reply = edge.call("GET", "/v1/voices", headers=token("bob"))
        assert reply.status == 200, reply.body[:300]


# One call every ten seconds per client: a bucket, once spent, stays empty for the test.
SLOW = EdgeRateLimit(per_second=0.1, burst=1)
# A cheap call the gateway answers itself (404: no such voice), so served is not 429.
CHEAP = json.dumps({"text": "Hi.", "voice": "no-such-voice"}).encode()
EXPECT = {"expect": "100-continue"}


@pytest.fixture(scope="module")
def slow(stack, tmp_path_factory):
    """A client address gets one call, then waits ten seconds; no proxy in front."""
    with _serving(stack, tmp_path_factory.mktemp("slow_edge"), rate_limit=SLOW) as edge:
        yield edge


@pytest.fixture(scope="module")
def proxied(stack, tmp_path_factory):
    """As ``slow``, behind one trusted proxy that appends the client to X-Forwarded-For."""
    with _serving(stack, tmp_path_factory.mktemp("proxied_edge"),
                  rate_limit=SLOW, trusted_proxy_hops=1) as edge:
        yield edge


def _statuses(edge: Edge, source: str, calls: list[tuple[str, dict]]) -> list[int]:
    """POSTs the cheap call from ``source`` once per (X-Forwarded-For, extra headers)."""
    statuses = []
    for forwarded, headers in calls:
        sent = {"x-forwarded-for": forwarded, **headers} if forwarded else headers
        reply = edge.call("POST", "/v1/synthesize", body=CHEAP, source=source, headers=sent)
        assert reply.status in (404, 429), reply.body[:300]
        if reply.status == 429:
            assert "EDGE_RATE_LIMIT_PER_SECOND=0.1" in reply.error()["message"]
        statuses.append(reply.status)
    return statuses


def test_a_client_sent_x_forwarded_for_picks_no_bucket(slow):
    """The client is the TCP peer: X-Forwarded-For values of its choosing (they used to be
    one bucket each, so a client varying it was never limited) all share its bucket."""
    assert _statuses(slow, "127.0.0.11", [
        ("203.0.113.1", {}),
        ("203.0.113.2", {}),
        ("198.51.100.7, 203.0.113.3", {}),
        ("127.0.0.12", {}),  # even another loopback client's address
    ]) == [404, 429, 429, 429]
    # The address it named has a bucket of its own, untouched.
    assert _statuses(slow, "127.0.0.12", [("", {})]) == [404]


def test_a_request_expecting_100_continue_shares_the_clients_bucket(slow):
    """The 100-continue detour (edge.expect_continue.continue_route) counts a call in the same
    bucket as any other: whatever X-Forwarded-For the client sends, and with or without
    Expect (the internal listener once kept buckets of its own: twice the burst)."""
    assert _statuses(slow, "127.0.0.13", [
        ("203.0.113.1", EXPECT),
        ("203.0.113.2", EXPECT),
        ("203.0.113.3", {}),
    ]) == [404, 429, 429]
    assert _statuses(slow, "127.0.0.14", [
        ("203.0.113.4", {}),
        ("203.0.113.5", EXPECT),
        ("127.0.0.15", EXPECT),
    ]) == [404, 429, 429]


def test_a_request_over_its_rate_expecting_100_continue_gets_429_and_no_100(slow):
    """Refused from its headers, before the client sends its body: no 100 first."""
    assert _statuses(slow, "127.0.0.16", [("", {})]) == [404]
    with raw(slow, source="127.0.0.16") as client:
        client.send_head("POST", "/v1/synthesize", {
            "Content-Type": "application/json", "Content-Length": str(len(CHEAP)),
            "Expect": "100-continue", "X-Forwarded-For": "203.0.113.9"})
        reply = client.reply()  # no byte of the body has gone out
    assert reply.status == 429 and reply.interim == [], (reply.status, reply.interim)
    assert "EDGE_RATE_LIMIT_PER_SECOND=0.1" in reply.error()["message"]


def test_behind_a_trusted_proxy_the_client_is_the_address_it_appended(proxied):
    """EDGE_TRUSTED_PROXY_HOPS=1: the last X-Forwarded-For entry is the proxy's word for
    the client; whatever the client put before it is not read, with Expect or without."""
    proxy = "127.0.0.17"
    assert _statuses(proxied, proxy, [
        ("203.0.113.1, 198.51.100.1", {}),
        ("203.0.113.2, 198.51.100.1", EXPECT),
        ("198.51.100.1", {}),
    ]) == [404, 429, 429]
    # Another client behind the same proxy has a bucket of its own, detour or not.
    assert _statuses(proxied, proxy, [("198.51.100.1, 198.51.100.2", EXPECT)]) == [404]
    assert _statuses(proxied, proxy, [("198.51.100.3", {})]) == [404]


def test_with_jwt_a_request_expecting_100_continue_is_checked_before_its_100(stack, tmp_path):
    """Authentication and the rate limit run before the detour to the internal listener:
    no token, 401, and a subject over its rate, 429, both without a 100 first; a subject
    within it gets its 100 and is counted in the same bucket as its other calls."""
    credentials = edge_credentials.make(tmp_path)
    algorithm, key = credentials.signing_keys["rsa"]
    now = int(time.time())
    token = pyjwt.encode({"iss": edge_credentials.ISSUER, "aud": edge_credentials.AUDIENCE,
                          "sub": "carol", "iat": now, "exp": now + 300}, key,
                         algorithm=algorithm, headers={"kid": "rsa"})

    def expecting(edge: Edge, headers: dict) -> RawReply:
        with raw(edge) as client:
            client.send_head("POST", "/v1/synthesize", {
                "Content-Type": "application/json", "Content-Length": str(len(CHEAP)),
                "Expect": "100-continue", **headers})
            if headers:
                assert client.interim() == 100
                client.send(CHEAP)
            return client.reply()

    with _serving(
        stack, tmp_path, rate_limit=SLOW,
        jwt=EdgeJwt(jwks=credentials.jwks, issuer=edge_credentials.ISSUER,
                    audiences=(edge_credentials.AUDIENCE,)),
    ) as edge:
        unauthenticated = expecting(edge, {})
        served = expecting(edge, {"Authorization": f"Bearer {token}"})
        again = edge.call("POST", "/v1/synthesize", body=CHEAP,
                          headers={"authorization": f"Bearer {token}"})
        with raw(edge) as client:
            client.send_head("POST", "/v1/synthesize", {
                "Content-Type": "application/json", "Content-Length": str(len(CHEAP)),
                "Expect": "100-continue", "Authorization": f"Bearer {token}"})
            over = client.reply()
    assert unauthenticated.status == 401 and unauthenticated.interim == []
    assert unauthenticated.error()["status"] == "UNAUTHENTICATED"
    assert served.status == 404 and "no-such-voice" in served.error()["message"]
    assert again.status == 429, again.body[:300]  # the detoured call took the token
    assert over.status == 429 and over.interim == [], (over.status, over.interim)


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
    edge, envoy = _edge(stack, folder, gateway_port=gateway)
    with supervised(specs=[spec, envoy], logs=folder / "logs", timeout=120):
        yield edge, gateway


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


# --- The body limit on every route, 100-continue, and paths -------------------------------
# Raw HTTP/1.1 on a socket: a client that sends headers and then waits, as curl does with
# Expect, and bodies that never end.

GATEWAY = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"]
OLD_PATHS = set(OLD_SERVER_PATHS)
OVER = BODY_LIMIT + 1
# Waits for a reply the edge owes at once; a test fails long before a client gives up.
PROMPT = 10.0


def rest_routes() -> list[tuple[str, str]]:
    """(method, path) of every REST binding of voice.v1.Gateway, from the protos."""
    routes = []
    for method in GATEWAY.methods:
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        for binding in (rule, *rule.additional_bindings):
            verb = binding.WhichOneof("pattern")
            routes.append((verb.upper(), getattr(binding, verb)))
    return sorted(set(routes))


# Every REST route, every gRPC method of the public API, health, reflection and a path no
# route has: all refuse a body over the limit.
ROUTES = [
    *(pytest.param(m, p, "application/json", id=f"{m} {p}") for m, p in rest_routes()),
    *(pytest.param("POST", f"/voice.v1.Gateway/{m.name}", "application/grpc",
                   id=f"grpc {m.name}") for m in GATEWAY.methods),
    pytest.param("POST", "/grpc.health.v1.Health/Check", "application/grpc", id="grpc health"),
    pytest.param("POST", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                 "application/grpc", id="grpc reflection"),
    pytest.param("POST", "/nope", "application/json", id="POST /nope"),
]


@dataclass
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes
    interim: list[int]  # 1xx statuses before it, in order

    def error(self) -> dict:
        assert self.headers.get("content-type") == "application/json", (self.status, self.body)
        return json.loads(self.body)["error"]


class Raw:
    """One HTTP/1.1 connection to the edge, driven by hand."""

    def __init__(self, port: int, timeout: float = PROMPT, source: str = "127.0.0.1"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0))
        self.pending = b""

    def close(self) -> None:
        self.sock.close()

    def send_head(self, method: str, path: str, headers: dict[str, str]) -> None:
        lines = [f"{method} {path} HTTP/1.1", "Host: edge", *(f"{k}: {v}" for k, v in
                                                             headers.items())]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_chunk(self, data: bytes) -> None:
        self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))

    def answered(self) -> bool:
        """Whether the edge has begun to reply (without waiting)."""
        return bool(self.pending) or bool(select.select([self.sock], [], [], 0)[0])

    def _head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.pending:
            data = self.sock.recv(65536)  # socket.timeout past the bound: the test fails
            assert data, f"connection closed before a reply: {self.pending!r}"
            self.pending += data
        head, self.pending = self.pending.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), headers

    def interim(self) -> int:
        """The next response head's status (a 1xx, if the edge sends one first)."""
        status, _ = self._head()
        return status

    def reply(self) -> RawReply:
        """The next final response, with the 1xx heads before it."""
        interim = []
        while True:
            status, headers = self._head()
            if status >= 200:
                break
            interim.append(status)
        length = int(headers.get("content-length", "0"))
        while len(self.pending) < length:
            data = self.sock.recv(65536)
            assert data, "connection closed in the middle of a reply"
            self.pending += data
        body, self.pending = self.pending[:length], self.pending[length:]
        return RawReply(status, headers, body, interim)


@contextlib.contextmanager
def raw(edge: Edge, timeout: float = PROMPT, source: str = "127.0.0.1"):
    connection = Raw(edge.port, timeout, source)
    try:
        yield connection
    finally:
        connection.close()


def assert_over_the_limit(reply: RawReply, path: str, content_type: str) -> None:
    """413 in the error shape naming the setting (REST), RESOURCE_EXHAUSTED (gRPC)."""
    named = f"EDGE_MAX_BODY_BYTES={BODY_LIMIT}"
    if content_type == "application/grpc":
        assert reply.status == 200, (reply.status, reply.headers, reply.body)
        assert reply.headers.get("grpc-status") == "8", reply.headers
        assert named in reply.headers.get("grpc-message", ""), reply.headers
        return
    assert reply.status == 413, (reply.status, reply.body)
    error = reply.error()
    assert error["code"] == 413 and error["status"] == "RESOURCE_EXHAUSTED", error
    assert named in error["message"], error
    if path in OLD_PATHS:  # the old server's routes carry FastAPI's detail too
        assert json.loads(reply.body)["detail"] == error["message"]


@pytest.fixture(scope="module")
def bounded(stack, tmp_path_factory):
    """An edge with a small body limit and no rate limit, in front of the stack's gateway."""
    with _serving(stack, tmp_path_factory.mktemp("bounded_edge"), max_body_bytes=BODY_LIMIT) as edge:
        yield edge


@pytest.mark.parametrize("method, path, content_type", ROUTES)
def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(
        bounded, method, path, content_type):
    for length in (OVER, 2**31):
        with raw(bounded) as client:
            client.send_head(method, path, {"Content-Type": content_type,
                                            "Content-Length": str(length)})
            reply = client.reply()  # not a byte of the body has gone out
        assert_over_the_limit(reply, path, content_type)
        assert reply.interim == []


@pytest.mark.parametrize("method, path, content_type", ROUTES)
def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(bounded, method, path, content_type):
    with raw(bounded) as client:
        client.send_head(method, path, {"Content-Type": content_type,
                                        "Transfer-Encoding": "chunked"})
        with contextlib.suppress(ConnectionError):  # the edge may close once it has answered
            for _ in range(3):
                client.send_chunk(b" " * (BODY_LIMIT // 2))
        # The body has not ended (no last chunk): the edge answers anyway.
        reply = client.reply()
    if reply.status == 404:  # a path no route has is refused from its headers
        assert method == "POST" and path == "/nope", reply.body
        return
    assert_over_the_limit(reply, path, content_type)


@pytest.mark.parametrize("method, path, content_type", ROUTES)
def test_expect_100_continue_over_the_limit_gets_413_and_no_100(bounded, method, path,
                                                                content_type):
    with raw(bounded) as client:
        client.send_head(method, path, {"Content-Type": content_type,
                                        "Content-Length": str(2**31),
                                        "Expect": "100-continue"})
        reply = client.reply()
    assert reply.interim == [], "the edge said 100 Continue to a body it then refused"
    assert_over_the_limit(reply, path, content_type)


@pytest.mark.parametrize(
    "path, content_type, body, status, fragment",
    [
        ("/v1/synthesize", "application/json",
         json.dumps({"text": "Hi.", "voice": "no-such-voice"}).encode(), 404, "no-such-voice"),
        # The old server's route: its error carries FastAPI's detail, once.
        ("/synthesize", "application/json", b"[]", 400, "must be an object"),
    ],
)
def test_expect_100_continue_within_the_limit_gets_100_at_once_and_then_its_answer(
        bounded, path, content_type, body, status, fragment):
    """curl sends Expect for bodies over 1 MiB and waits a second for the 100: the edge
    must answer it at once (the socket's bound is far below a client's patience, and the
    wait is measured), and the call then goes through the whole edge to the gateway."""
    with raw(bounded) as client:
        client.send_head("POST", path, {"Content-Type": content_type,
                                        "Content-Length": str(len(body)),
                                        "Expect": "100-continue"})
        started = time.monotonic()
        assert client.interim() == 100
        waited = time.monotonic() - started
        client.send(body)
        reply = client.reply()
    assert waited < 1.0, f"100 Continue took {waited:.2f} s"
    assert reply.status == status, reply.body
    error = reply.error()
    assert fragment in error["message"], error
    assert "EDGE_" not in error["message"]  # the gateway's answer, not a limit's
    if path in OLD_PATHS:
        assert reply.body.count(b'"detail"') == 1, reply.body


@pytest.fixture(scope="module")
def roomy(stack, tmp_path_factory):
    """An edge whose limit is above what Envoy reads at once (1 MiB), as the default is."""
    with _serving(stack, tmp_path_factory.mktemp("roomy_edge"), max_body_bytes=ROOMY_LIMIT) as edge:
        yield edge


ROOMY_LIMIT = 2 * 1024 * 1024


@pytest.mark.parametrize(
    "path, content_type",
    [
        # Paths the transcoder maps to a JSON method that the unknown-field filter's routes
        # did not match: the transcoder parses JSON as it arrives and only ever held what
        # it had not parsed yet, so a body of any size streamed through to the gateway.
        ("/v1/synthesize/", "application/json"),
        ("/v1/tts/", "application/json"),
        ("/v1/synthesize", "application/grpc-web"),  # REST to the transcoder
    ],
)
def test_a_streamed_json_body_over_the_limit_is_413_on_every_path_the_transcoder_maps(
        roomy, path, content_type):
    with raw(roomy) as client:
        client.send_head("POST", path, {"Content-Type": content_type,
                                        "Transfer-Encoding": "chunked"})
        client.send_chunk(b'{"voice": "no-such-voice", "text": "')
        # Until the edge answers: the rest would go nowhere (and once it has answered it
        # closes the connection, which may reset a send; its reply is read all the same).
        with contextlib.suppress(ConnectionError):
            for _ in range(3 * ROOMY_LIMIT // 65536):
                if client.answered():
                    break
                client.send_chunk(b"a" * 65536)
            else:
                client.send_chunk(b'"}')
                client.send(b"0\r\n\r\n")
        reply = client.reply()
    assert reply.status == 413, (reply.status, reply.body[:300])
    error = reply.error()
    assert error["status"] == "RESOURCE_EXHAUSTED", error
    assert f"EDGE_MAX_BODY_BYTES={ROOMY_LIMIT}" in error["message"], error


@pytest.mark.parametrize(
    "path, content_type",
    [
        ("/v1/synthesize/", "application/json"),
        ("/v1/tts/", "application/json"),
        ("/v1/synthesize", "application/grpc-web"),
        ("/v1/synthesize:stream", "application/grpc-web"),
    ],
)
def test_unknown_fields_are_refused_on_every_path_the_transcoder_maps(bounded, path,
                                                                      content_type):
    body = json.dumps({"text": "Hi.", "skip_rcv": True}).encode()
    with raw(bounded) as client:
        client.send_head("POST", path, {"Content-Type": content_type,
                                        "Content-Length": str(len(body))})
        client.send(body)
        reply = client.reply()
    assert reply.status == 400, reply.body
    assert "unknown field 'skip_rcv'" in reply.error()["message"]


def test_a_grpc_message_over_the_limit_is_resource_exhausted_naming_it(bounded):
    with bounded.channel() as channel:
        with pytest.raises(grpc.RpcError) as failed:
            gateway_pb2_grpc.GatewayStub(channel).Synthesize(
                gateway_pb2.SynthesizeRequest(text="a" * OVER, voice="no-such-voice"), timeout=10)
    assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, failed.value.details()
    assert f"EDGE_MAX_BODY_BYTES={BODY_LIMIT}" in failed.value.details()


# Paths that name an internal service once resolved; the edge must resolve them first.
TRICKS = [
    "/voice.v1.Gateway/../voice.v1.VoiceConversion/ListModels",
    "/voice.v1.Gateway/%2e%2e/voice.v1.VoiceConversion/ListModels",
    "/voice.v1.Gateway/%2E%2E/voice.v1.TextToSpeech/Synthesize",
    "/voice.v1.Gateway/..%2Fvoice.v1.VoiceConversion%2FListModels",
    "/voice.v1.Gateway/..%2fvoice.v1.VoiceConversion%2fLoadModel",
    "/voice.v1.Gateway/..%5Cvoice.v1.VoiceConversion%5CListModels",
    "/voice.v1.Gateway/./../voice.v1.TextToSpeech/Synthesize",
    "/grpc.health.v1.Health/../../voice.v1.VoiceConversion/ListModels",
]


@pytest.mark.parametrize("path", TRICKS)
@pytest.mark.parametrize("content_type", [None, "application/json"])
def test_path_tricks_to_an_internal_service_are_404(bounded, path, content_type):
    with raw(bounded) as client:
        client.send_head("POST", path, {"Content-Length": "2",
                                        **({"Content-Type": content_type} if content_type
                                           else {})})
        client.send(b"{}")
        reply = client.reply()
    assert reply.status == 404, (reply.status, reply.headers, reply.body)
    assert reply.error() == {"code": 404, "message": "no such route", "status": "NOT_FOUND"}


@pytest.mark.parametrize("path", TRICKS[:2] + TRICKS[3:4])
def test_grpc_path_tricks_to_an_internal_service_are_unimplemented_at_the_edge(bounded, path):
    with bounded.channel() as channel:
        with pytest.raises(grpc.RpcError) as failed:
            channel.unary_unary(path)(b"", timeout=10)
    assert failed.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert failed.value.details() == "no such route"  # the edge's, not a service's
