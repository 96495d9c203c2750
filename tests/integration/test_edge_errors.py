"""Every REST error from the edge is {"error": {"code", "message", "status"}}.

The real Envoy, with the configuration the stack renders, in front of a fake
gateway: a grpc.aio server on its own event loop in a thread, failing with the
gRPC code each request names.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import queue
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.api import httpbody_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2
from voice.v1 import gateway_pb2, gateway_pb2_grpc

from edge.config import EdgeConfig
from edge.errors import ERRORS_FILTER, OLD_SERVER_PATHS
from edge.render import render
from localstack.config import free_ports
from tests.integration.http_client import Reply, call
from tests.integration.stacks import envoy_spec, supervised

REPO = Path(__file__).resolve().parents[2]
# Quotes, a backslash, a newline, a tab, a control character, HTML's specials
# (protobuf's JSON escapes them), accents, CJK and a character beyond the BMP.
MESSAGE = 'He said "no" \\ twice\nthen\tleft\x01: <é>, 日本, 🎤'
BODY_LIMIT = 64 * 1024
CHUNKS = 4
JSON = {"content-type": "application/json"}
# The HTTP status the transcoder gives each gRPC code, and the edge keeps.
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INTERNAL": 500,
    "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
TEXT = {"content-type": "text/plain"}


def _as_json(text: str) -> bytes:
    return json.dumps({"text": text}).encode()


# The RPCs a REST client reaches: JSON or google.api.HttpBody, unary or server streaming;
# each request's body names the code to fail with.
ROUTES = {
    "Synthesize": ("/v1/synthesize", _as_json, JSON),
    "SynthesizeStream": ("/v1/synthesize:stream", _as_json, JSON),
    "LegacySynthesize": ("/synthesize", str.encode, TEXT),
    "LegacySynthesizeStream": ("/synthesize/stream", str.encode, TEXT),
}


def chunk(index: int) -> bytes:
    return f"<chunk {index}>".encode()


class FakeGateway(gateway_pb2_grpc.GatewayServicer):
    """Fails with the gRPC code the request names. "HOLD" waits out its deadline,
    "DETAILS" fails with rich status details, "STREAM" (LegacySynthesizeStream)
    sends CHUNKS chunks, each after the test has taken the one before."""

    def __init__(self) -> None:
        self.release: queue.Queue[None] = queue.Queue()
        self.deadlines: queue.Queue[float | None] = queue.Queue()

    async def _fail(self, name: str, context: grpc.aio.ServicerContext) -> None:
        if name == "HOLD":
            self.deadlines.put(context.time_remaining())
            await asyncio.Event().wait()  # cancelled when the deadline passes
        if name == "DETAILS":
            status = status_pb2.Status(code=grpc.StatusCode.FAILED_PRECONDITION.value[0])
            status.message = MESSAGE
            detail = any_pb2.Any()
            detail.Pack(gateway_pb2.SynthesizeRequest(text='}]"{ [ \\'))
            status.details.append(detail)
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                MESSAGE,
                trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
            )
        await context.abort(grpc.StatusCode[name], MESSAGE)

    async def Synthesize(self, request, context):
        await self._fail(request.text, context)

    async def SynthesizeStream(self, request, context):
        await self._fail(request.text, context)
        yield gateway_pb2.SynthesizeStreamResponse()  # never reached: it fails first

    async def LegacySynthesize(self, request, context):
        await self._fail(request.data.decode(), context)

    async def LegacySynthesizeStream(self, request, context):
        if request.data != b"STREAM":
            await self._fail(request.data.decode(), context)
        for index in range(CHUNKS):
            if index:
                await asyncio.to_thread(self.release.get, timeout=10)
            yield httpbody_pb2.HttpBody(content_type="audio/wav", data=chunk(index))


class BackgroundServer:
    """A grpc.aio server on an event loop of its own, in a thread, on a free port."""

    def __init__(self, servicer: gateway_pb2_grpc.GatewayServicer) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server, self.port = self._run(self._start(servicer))

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=15)

    @staticmethod
    async def _start(servicer):
        server = grpc.aio.server()
        gateway_pb2_grpc.add_GatewayServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    def stop(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._server.stop(grace=None))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=15)
        self._loop.close()


@dataclass
class Edge:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def edge(
    tmp: Path, gateway_port: int, adjust: Callable[[dict], object] | None = None
) -> Iterator[Edge]:
    """The real Envoy in front of ``gateway_port``, with the rendered configuration
    (changed by ``adjust`` where a test says); stopped on the way out."""
    listen_port, admin_port = free_ports(2)
    rendered = render(
        EdgeConfig(
            descriptor=REPO / "gen" / "voice_v1.pb",
            gateway_port=gateway_port,
            listen_host="127.0.0.1",
            listen_port=listen_port,
            admin_port=admin_port,
            max_body_bytes=BODY_LIMIT,
        )
    )
    if adjust is not None:
        adjust(_manager(rendered))
    config = tmp / "envoy.json"
    config.write_text(json.dumps(rendered, indent=2))
    with supervised(specs=[envoy_spec(config, admin_port)], logs=tmp, timeout=20) as running:
        yield Edge(listen_port, running.logs / "envoy.log")


def _manager(config: dict) -> dict:
    listener = config["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


@pytest.fixture(scope="module")
def fake():
    servicer = FakeGateway()
    server = BackgroundServer(servicer)
    try:
        yield servicer, server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api(fake, tmp_path_factory) -> Iterator[Edge]:
    with edge(tmp_path_factory.mktemp("edge"), fake[1].port) as running:
        yield running


def malformed_request(port: int) -> Reply:
    """What the edge answers a request its HTTP codec rejects (a header with no colon)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: edge\r\nno colon here\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        return Reply(response.status, dict(response.getheaders()), response.read())


def post(url: str, body: bytes, headers: dict[str, str]) -> Reply:
    """``body`` as it is, labelled by ``headers`` alone."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Reply(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers.items()), error.read())


def assert_error(reply: Reply, status: int, name: str, message: str | None = None,
                 path: str = "") -> str:
    """The reply is the error shape, exactly (with FastAPI's detail on the old server's
    ``path``s); returns its message."""
    headers = {key.lower(): value for key, value in reply.headers.items()}
    assert reply.status == status, reply.body
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(reply.body)
    body = json.loads(reply.body)  # bytes: invalid UTF-8 would fail here
    expected = {"error": {"code": status, "message": body["error"]["message"], "status": name}}
    if path.split("?")[0] in OLD_SERVER_PATHS:
        expected["detail"] = body["error"]["message"]
    assert body == expected
    if message is not None:
        assert body["error"]["message"] == message
    return body["error"]["message"]


@pytest.mark.parametrize("rpc", list(ROUTES))
@pytest.mark.parametrize("code", list(HTTP_STATUS))
def test_a_grpc_status_is_the_error_shape_with_the_transcoders_http_status(api, rpc, code):
    path, body, headers = ROUTES[rpc]
    reply = post(api.url + path, body(code), headers)
    assert_error(reply, HTTP_STATUS[code], code, MESSAGE, path)


def test_rich_status_details_are_left_out(api):
    reply = call("POST", f"{api.url}/v1/synthesize", {"text": "DETAILS"})
    assert_error(reply, 400, "FAILED_PRECONDITION", MESSAGE)


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"{not json", "Expected : between key:value pair."),
        (b'{"text": 5}', "invalid value 5 for type TYPE_STRING"),
        (b"[1]", "Root element must be a message"),
        # The transcoder quotes the bytes it choked on; the edge replaces them.
        (b'{"text": "\xff"}', "non UTF-8 code points.\n\ufffd"),
    ],
)
def test_a_body_the_transcoder_rejects_is_400(api, body, fragment):
    message = assert_error(
        call("POST", f"{api.url}/v1/synthesize", raw=body), 400, "INVALID_ARGUMENT"
    )
    assert fragment in message


@pytest.mark.parametrize(
    "path, body, headers",
    [
        ("/v1/synthesize", json.dumps({"text": "a" * BODY_LIMIT}).encode(), JSON),
        ("/synthesize", b"a" * (BODY_LIMIT + 1), TEXT),
    ],
)
def test_a_body_over_the_limit_is_413(api, path, body, headers):
    message = assert_error(
        post(api.url + path, body, headers), 413, "RESOURCE_EXHAUSTED", path=path
    )
    assert "exceeds the configured limit" in message


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/nope"),
        ("GET", "/v1/synthesize"),  # POST only
        ("GET", "/synthesize?x=1"),  # the old server's, POST only: with detail
        ("POST", "/voice.v1.TextToSpeech/Synthesize"),  # internal services stay inside
    ],
)
def test_no_route_is_404(api, method, path):
    reply = call(method, api.url + path, {} if method == "POST" else None)
    assert_error(reply, 404, "NOT_FOUND", "no such route", path)


def test_a_request_the_http_codec_rejects_is_400(api):
    assert_error(malformed_request(api.port), 400, "INVALID_ARGUMENT", "Bad Request")


def test_grpc_timeout_is_the_deadline_of_the_call_and_504_when_it_passes(api, fake):
    """REST clients bound a call with gRPC's own header; the gateway sees the deadline."""
    servicer, _ = fake
    reply = call(
        "POST", f"{api.url}/v1/synthesize", {"text": "HOLD"}, headers={"grpc-timeout": "300m"}
    )
    remaining = servicer.deadlines.get(timeout=5)
    assert remaining is not None and 0 < remaining <= 0.3
    assert_error(reply, 504, "DEADLINE_EXCEEDED", "Deadline Exceeded")


def test_a_successful_stream_is_not_buffered(api, fake):
    """The server sends each chunk only after the test got the one before: a filter
    that buffered the response would hold the first one back until the read timed out
    (sooner than the server gives up waiting)."""
    servicer, _ = fake
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=5)
    try:
        connection.request("POST", "/synthesize/stream", body=b"STREAM", headers=TEXT)
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("content-type") == "audio/wav"
        received = b""
        for index in range(CHUNKS):
            expected = b"".join(chunk(i) for i in range(index + 1))
            while len(received) < len(expected):
                try:
                    data = response.read1(65536)
                except TimeoutError:
                    pytest.fail(f"chunk {index} held back; got {received!r}")
                assert data, received
                received += data
            assert received == expected
            if index + 1 < CHUNKS:
                servicer.release.put(None)
        assert response.read() == b""
    finally:
        connection.close()


def test_grpc_clients_get_their_statuses_untouched(api):
    with grpc.insecure_channel(f"127.0.0.1:{api.port}") as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        with pytest.raises(grpc.RpcError) as failed:
            stub.Synthesize(gateway_pb2.SynthesizeRequest(text="NOT_FOUND"), timeout=10)
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND
        assert failed.value.details() == MESSAGE
        with pytest.raises(grpc.RpcError) as unknown:
            channel.unary_unary("/voice.v1.TextToSpeech/Synthesize")(b"", timeout=10)
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert unknown.value.details() == "no such route"


def test_gateway_down_is_503(tmp_path):
    server = BackgroundServer(FakeGateway())
    try:
        with edge(tmp_path, server.port) as down:
            server.stop()
            for path, body, headers in ROUTES.values():
                reply = post(down.url + path, body("INTERNAL"), headers)
                message = assert_error(reply, 503, "UNAVAILABLE", path=path)
                assert message.startswith("upstream connect error"), message
            with grpc.insecure_channel(f"127.0.0.1:{down.port}") as channel:
                with pytest.raises(grpc.RpcError) as failed:
                    gateway_pb2_grpc.GatewayStub(channel).Synthesize(
                        gateway_pb2.SynthesizeRequest(text="INTERNAL"), timeout=10
                    )
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
            assert failed.value.details().startswith("upstream connect error")
    finally:
        server.stop()


def test_envoys_own_timeout_of_a_transcoded_call_is_504(fake, tmp_path):
    """The edge sets no route timeout (calls run to their own deadline); where one is
    set, the reply it makes when the gateway takes longer is in the error shape too."""
    servicer, server = fake

    def route_timeout(manager):
        for route in manager["route_config"]["virtual_hosts"][0]["routes"]:
            if "route" in route:
                route["route"]["timeout"] = "0.2s"

    with edge(tmp_path, server.port, route_timeout) as timed:
        reply = call("POST", f"{timed.url}/v1/synthesize", {"text": "HOLD"})
    assert servicer.deadlines.get(timeout=5) is None  # no grpc-timeout: no deadline
    assert_error(reply, 504, "DEADLINE_EXCEEDED", "upstream request timeout")


def test_local_replies_are_in_the_error_shape_without_the_script(fake, tmp_path):
    """local_reply_config shapes Envoy's own replies to REST requests by itself (the
    script passes them on as they are), and leaves gRPC requests' replies alone."""

    def without_script(manager):
        manager["http_filters"] = [f for f in manager["http_filters"] if f["name"] != ERRORS_FILTER]

    with edge(tmp_path, fake[1].port, without_script) as bare:
        assert_error(call("GET", f"{bare.url}/nope"), 404, "NOT_FOUND", "no such route")
        assert_error(malformed_request(bare.port), 400, "INVALID_ARGUMENT", "Bad Request")
        with grpc.insecure_channel(f"127.0.0.1:{bare.port}") as channel:
            with pytest.raises(grpc.RpcError) as unknown:
                channel.unary_unary("/voice.v1.TextToSpeech/Synthesize")(b"", timeout=10)
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert unknown.value.details() == "no such route"
