"""A stream cut by a fault does not look complete (services.gateway.stream_abort).

Eight long streams run at once through the real stack, one of each kind of client:
HTTP/1.1 on every streamed REST route (the old server's multipart and its WAV
answer, its events, OpenAI's speech, the JSON stream), HTTP/2 on the multipart
route, and gRPC through the edge and direct to the gateway. Once every one of them
has its first part, the RVC service is killed (-9), so each stream fails part way
(forty sentences each: none can finish before the fault). Then:

* HTTP/1.1: the connection closes before the terminating chunk, so the response is
  incomplete (http.client raises IncompleteRead); the multipart body has no closing
  delimiter, the JSON array no ``]``, the event stream its ``error`` event and no
  ``end``;
* HTTP/2: the stream is reset (RST_STREAM), never ended;
* gRPC: UNAVAILABLE with a message, through the edge and direct;
* the gateway logs each cut REST stream and counts every call as UNAVAILABLE.

The supervisor restarts RVC; the test waits until the stack converts again, so
the tests after it find it serving.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import signal
import socket
import struct
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable

import grpc
import pytest
from voice.v1 import gateway_pb2, gateway_pb2_grpc

from tests.integration.http_client import call

# Forty sentences; OpenAI's input limit (4096 characters) holds them.
TEXT = " ".join(f"This is sentence number {n} of a long answer." for n in range(40))
FIRST_PART_BOUND = 180.0  # seconds until every client has its first part (a loaded machine)
END_BOUND = 120.0  # seconds from the fault until every client has seen its stream end
RECOVERY_BOUND = 240.0  # seconds until the restarted RVC converts again
READ_TIMEOUT = 300.0  # a socket read that waits longer means a stream left hanging
COUNT_BOUND = 30.0  # seconds for the gateway's metrics to count the calls that ended
REST_METHODS = {  # gateway method -> calls this test makes of it
    "LegacySynthesizeStream": 3, "LegacySynthesizeSse": 1, "CreateSpeech": 1,
    "SynthesizeStream": 3,
}


def _form() -> bytes:
    return urllib.parse.urlencode({"text": TEXT}).encode()


def _http1(stack, path: str, body: bytes, content_type: str, first: threading.Event,
           accept: str | None = None) -> dict:
    """POST with http.client; read the response as it comes until it ends or breaks."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.config.api_port,
                                            timeout=READ_TIMEOUT)
    headers = {"content-type": content_type, **({"accept": accept} if accept else {})}
    connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    received, ending = b"", "complete"
    try:
        while chunk := response.read1(65536):
            received += chunk
            first.set()
        # read1 returns b"" only after the terminating chunk: the response is whole.
    except http.client.IncompleteRead as exc:
        received += exc.partial
        ending = "IncompleteRead"
    finally:
        connection.close()
    return {"status": response.status, "type": response.getheader("content-type"),
            "body": received, "ending": ending}


def multipart_http1_raw(stack, first: threading.Event) -> dict:
    """The old server's client over a raw socket: the bytes exactly as they arrive."""
    body = _form()
    sock = socket.create_connection(("127.0.0.1", stack.config.api_port), timeout=READ_TIMEOUT)
    sock.sendall(b"POST /synthesize/stream HTTP/1.1\r\nHost: edge\r\n"
                 b"Content-Type: application/x-www-form-urlencoded\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    raw, ending = b"", "EOF"
    try:
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                ending = "reset"
                break
            if not chunk:
                break
            raw += chunk
            if b"\r\n\r\n" in raw and len(raw.split(b"\r\n\r\n", 1)[1]) > 0:
                first.set()
            if raw.endswith(b"\r\n0\r\n\r\n"):
                ending = "terminating chunk"  # a keep-alive response that ended whole
                break
    finally:
        sock.close()
    head, _, chunked = raw.partition(b"\r\n\r\n")
    return {"status_line": head.split(b"\r\n", 1)[0].decode(), "chunked": chunked,
            "ending": ending}


def wav_http1(stack, first):
    return _http1(stack, "/synthesize/stream", _form(), "application/x-www-form-urlencoded",
                  first, accept="audio/wav")


def sse_http1(stack, first):
    return _http1(stack, "/synthesize/sse", _form(), "application/x-www-form-urlencoded", first)


def openai_http1(stack, first):
    request = {"model": "tts-1", "input": TEXT, "voice": "demo", "response_format": "wav"}
    return _http1(stack, "/v1/audio/speech", json.dumps(request).encode(), "application/json",
                  first)


def json_stream_http1(stack, first):
    return _http1(stack, "/v1/synthesize:stream", json.dumps({"text": TEXT}).encode(),
                  "application/json", first)


def _hpack_literal(headers: list[tuple[str, str]]) -> bytes:
    """Header fields as HPACK literals without indexing (short names and values only)."""
    block = b""
    for name, value in headers:
        for text in (name.encode(), value.encode()):
            assert len(text) < 127
        block += b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()
    return block


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) \
        + payload


DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def multipart_http2(stack, first: threading.Event) -> dict:
    """POST /synthesize/stream over cleartext HTTP/2 (prior knowledge), frame by frame:
    how the stream ends (END_STREAM, or RST_STREAM and its error code)."""
    body = _form()
    sock = socket.create_connection(("127.0.0.1", stack.config.api_port), timeout=READ_TIMEOUT)
    headers = [(":method", "POST"), (":scheme", "http"), (":path", "/synthesize/stream"),
               (":authority", "edge"), ("content-type", "application/x-www-form-urlencoded")]
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(SETTINGS, 0, 0)
                 + _frame(HEADERS, END_HEADERS, 1, _hpack_literal(headers))
                 + _frame(DATA, END_STREAM, 1, body))
    buffer, data_bytes, ending = b"", 0, None

    def read(n: int) -> bytes:
        nonlocal buffer
        while len(buffer) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError
            buffer += chunk
        out, buffer = buffer[:n], buffer[n:]
        return out

    try:
        while ending is None:
            head = read(9)
            length, kind, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
            stream = int.from_bytes(head[5:], "big") & 0x7FFFFFFF
            payload = read(length)
            if kind == SETTINGS and not flags & ACK:
                sock.sendall(_frame(SETTINGS, ACK, 0))
            elif kind == PING and not flags & ACK:
                sock.sendall(_frame(PING, ACK, 0, payload))
            elif kind == GOAWAY:
                ending = "GOAWAY"
            elif stream == 1 and kind == DATA:
                if length:
                    data_bytes += length
                    first.set()
                    grant = struct.pack(">I", length)  # keep both flow-control windows open
                    sock.sendall(_frame(WINDOW_UPDATE, 0, 0, grant)
                                 + _frame(WINDOW_UPDATE, 0, 1, grant))
                if flags & END_STREAM:
                    ending = "END_STREAM"
            elif stream == 1 and kind == HEADERS and flags & END_STREAM:
                ending = "END_STREAM"
            elif stream == 1 and kind == RST_STREAM:
                ending = f"RST_STREAM {int.from_bytes(payload, 'big')}"
    except EOFError:
        ending = "connection closed"
    finally:
        sock.close()
    return {"data_bytes": data_bytes, "ending": ending}


def _grpc(target: str, first: threading.Event) -> dict:
    with grpc.insecure_channel(target) as channel:
        replies = gateway_pb2_grpc.GatewayStub(channel).SynthesizeStream(
            gateway_pb2.SynthesizeRequest(text=TEXT), timeout=READ_TIMEOUT)
        received = 0
        try:
            for _ in replies:
                received += 1
                first.set()
        except grpc.RpcError as exc:
            return {"received": received, "code": exc.code(), "details": exc.details()}
    return {"received": received, "code": grpc.StatusCode.OK, "details": ""}


def grpc_through_edge(stack, first):
    return _grpc(f"127.0.0.1:{stack.config.api_port}", first)


def grpc_direct(stack, first):
    return _grpc(f"127.0.0.1:{stack.config.gateway_port}", first)


CLIENTS: dict[str, Callable] = {
    "multipart HTTP/1.1": multipart_http1_raw,
    "WAV HTTP/1.1": wav_http1,
    "SSE HTTP/1.1": sse_http1,
    "OpenAI HTTP/1.1": openai_http1,
    "JSON stream HTTP/1.1": json_stream_http1,
    "multipart HTTP/2": multipart_http2,
    "gRPC via edge": grpc_through_edge,
    "gRPC direct": grpc_direct,
}


def summary(result: dict) -> str:
    """How a client's stream ended, in a line (pytest -s prints them)."""
    shown = {key: value for key, value in result.items() if key not in ("body", "chunked")}
    data = result.get("body", result.get("chunked"))
    if data is not None:
        shown["bytes"], shown["last"] = len(data), data[-24:]
    return ", ".join(f"{key} {value!r}" for key, value in shown.items())


def gateway_counts(stack) -> dict[tuple[str, str], float]:
    """grpc_server_handled_total of the gateway's streaming methods, by (method, code)."""
    url = f"http://127.0.0.1:{stack.config.gateway_metrics_port}/metrics"
    counts = {}
    for line in urllib.request.urlopen(url, timeout=10).read().decode().splitlines():
        if line.startswith("grpc_server_handled_total{") and 'grpc_service="voice.v1.Gateway"' in line:
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1:
                                                               line.index("}")].split(","))
            method, code = labels["grpc_method"].strip('"'), labels["grpc_code"].strip('"')
            if method in REST_METHODS:
                counts[(method, code)] = float(line.rsplit(" ", 1)[1])
    return counts


def converts(stack) -> bool:
    """Whether a short synthesis through the edge succeeds, converted by RVC."""
    reply = call("POST", f"{stack.api}/synthesize", {"text": "Hello there."})
    return reply.status == 200 and reply.headers.get("x-rvc-applied") == "true"


@pytest.fixture
def rvc_restored(stack):
    """The stack converts before the test, and again (RVC restarted) after it."""
    assert converts(stack), "the stack does not convert with RVC before the fault"
    yield
    deadline = time.monotonic() + RECOVERY_BOUND
    while not converts(stack):
        assert time.monotonic() < deadline, "RVC did not convert again after its restart"
        time.sleep(1)


def test_a_stream_cut_by_a_fault_is_an_error_for_every_kind_of_client(stack, rvc_restored):
    before = gateway_counts(stack)
    firsts = {name: threading.Event() for name in CLIENTS}
    with concurrent.futures.ThreadPoolExecutor(len(CLIENTS)) as pool:
        futures = {name: pool.submit(run, stack, firsts[name]) for name, run in CLIENTS.items()}
        deadline = time.monotonic() + FIRST_PART_BOUND
        for name, event in firsts.items():
            if not event.wait(max(0.0, deadline - time.monotonic())):
                done = futures[name].done()
                pytest.fail(f"{name} got no first part in {FIRST_PART_BOUND:.0f} s"
                            + (f": {futures[name].exception() or futures[name].result()}"
                               if done else ""))
        # Every stream has begun; none can have finished forty sentences yet.
        rvc = next(c for c in stack.supervisor.children if c.spec.name == "rvc")
        os.kill(rvc.process.pid, signal.SIGKILL)
        results = {name: future.result(timeout=END_BOUND) for name, future in futures.items()}
    print("\n" + "\n".join(f"{name}: {summary(result)}" for name, result in results.items()))

    # HTTP/1.1: 200, the first parts, then the connection closes without the terminating chunk.
    raw = results["multipart HTTP/1.1"]
    assert raw["status_line"] == "HTTP/1.1 200 OK"
    assert raw["ending"] in ("EOF", "reset"), raw["ending"]
    assert b"--boundary\r\nContent-Type: audio/wav\r\nX-Sentence-Index: 0\r\n" in raw["chunked"]
    assert not raw["chunked"].endswith(b"0\r\n\r\n")
    assert b"--boundary--" not in raw["chunked"]  # nor the closing delimiter
    for name in ("WAV HTTP/1.1", "SSE HTTP/1.1", "OpenAI HTTP/1.1", "JSON stream HTTP/1.1"):
        result = results[name]
        assert (result["status"], result["ending"]) == (200, "IncompleteRead"), (name, result)
    assert results["WAV HTTP/1.1"]["body"][:4] == b"RIFF"
    assert results["OpenAI HTTP/1.1"]["body"][:4] == b"RIFF"
    array = results["JSON stream HTTP/1.1"]["body"].decode()
    assert array.startswith("[{") and not array.rstrip().endswith("]")
    # The event stream says what failed, then ends without its end event.
    events = [json.loads(line[len("data: "):])
              for line in results["SSE HTTP/1.1"]["body"].decode().split("\r\n")
              if line.startswith("data: ")]
    assert [e["type"] for e in events][:2] == ["start", "chunk"]
    assert events[-1]["type"] == "error" and events[-1]["message"], events[-1]
    assert "end" not in [e["type"] for e in events]

    # HTTP/2: the stream is reset, after some data; never ended cleanly.
    h2 = results["multipart HTTP/2"]
    assert h2["data_bytes"] > 0
    assert h2["ending"].startswith("RST_STREAM") and h2["ending"] != "RST_STREAM 0", h2

    # gRPC, through the edge and direct: the real status and its message.
    for name in ("gRPC via edge", "gRPC direct"):
        result = results[name]
        assert result["received"] >= 1, (name, result)
        assert result["code"] is grpc.StatusCode.UNAVAILABLE and result["details"], (name, result)

    # The gateway counted each call as UNAVAILABLE, none as a success, and logged each cut.
    # It counts a call just after its status has gone: the clients may have seen it first.
    def deltas() -> dict[tuple[str, str], float]:
        after = gateway_counts(stack)
        return {key: after[key] - before.get(key, 0.0) for key in after
                if after[key] != before.get(key, 0.0)}

    expected = {(method, "UNAVAILABLE"): float(calls) for method, calls in REST_METHODS.items()}
    deadline = time.monotonic() + COUNT_BOUND
    while (counted := deltas()) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert counted == expected
    log = stack.log("gateway")
    for method in REST_METHODS:
        assert f'"msg": "{method} failed after' in log, f"no cut of {method} logged"
