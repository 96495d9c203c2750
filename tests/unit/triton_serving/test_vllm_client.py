"""triton_serving.vllm_client against a stand-in vLLM server on loopback: a stream that
waits on the server ends when it is called off, and a cancel check that never returns
holds up no other stream (the watcher calls nothing while it holds its lock)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from spark_tts import prompts
from spark_tts.sampling import SamplingConfig
from spark_tts.tiny_models import build_tokenizer
from triton_serving.vllm_client import MODEL_NAME, VllmLlm

PROMPT = prompts.cloning_prompt("Hello there.", list(range(32)))


class StandIn(ThreadingHTTPServer):
    """/v1/models names spark-llm; /v1/completions streams ``tokens`` then [DONE], or,
    for a prompt of ``hold_length`` ids, sends its headers and waits for the client to
    hang up (``hung_up`` is set then)."""

    daemon_threads = True

    def __init__(self, tokens: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.tokens = tokens
        self.hold_length = -1
        self.hung_up = threading.Event()
        self.holding = threading.Event()


class Handler(BaseHTTPRequestHandler):
    server: StandIn
    protocol_version = "HTTP/1.0"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({"data": [{"id": MODEL_NAME, "max_model_len": 4096}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        if len(request["prompt"]) == self.server.hold_length:
            self.wfile.flush()
            self.server.holding.set()
            if self.rfile.read(1) == b"":  # the client closed its end
                self.server.hung_up.set()
            return
        event = {"choices": [{"token_ids": self.server.tokens}]}
        self.wfile.write(f"data: {json.dumps(event)}\n\ndata: [DONE]\n\n".encode())


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer().save_pretrained(str(folder))
    return folder


@pytest.fixture
def served(llm_dir):
    tokenizer = build_tokenizer()
    semantic = tokenizer.convert_tokens_to_ids([prompts.semantic_token(i) for i in (5, 6, 7)])
    server = StandIn(semantic + [tokenizer.convert_tokens_to_ids("<|im_end|>")])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = VllmLlm(f"http://127.0.0.1:{server.server_address[1]}", llm_dir, cpu=True)
    server.hold_length = len(client.tokenizer(PROMPT).input_ids)
    try:
        yield server, client
    finally:
        server.shutdown()
        server.server_close()


def in_thread(target) -> tuple[threading.Thread, list]:
    outcome: list = []

    def run():
        try:
            outcome.append(target())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_stream_waiting_on_the_server_ends_once_called_off_and_the_server_sees_it(served):
    server, client = served
    off = threading.Event()
    thread, outcome = in_thread(
        lambda: list(client.generate(PROMPT, SamplingConfig(max_tokens=50), called_off=off.is_set))
    )
    assert server.holding.wait(30)
    off.set()
    thread.join(30)
    assert not thread.is_alive(), "the read waiting on the server did not end"
    assert outcome == [[]]
    assert server.hung_up.wait(30), "the server never saw the connection close (no abort)"


def test_a_cancel_check_that_never_returns_holds_up_no_other_stream(served):
    """A check stuck forever (a call into something that hangs) once held the watcher's
    lock, and with it every later stream's start: now the others run to the end."""
    server, client = served
    stuck = threading.Event()
    release = threading.Event()

    def hangs() -> bool:
        stuck.set()
        release.wait()
        return True  # then called off: the held stream ends

    held, _ = in_thread(lambda: list(client.generate(PROMPT, SamplingConfig(max_tokens=50),
                                                     called_off=hangs)))
    try:
        assert stuck.wait(30), "the watcher never asked the stuck stream's check"
        other = prompts.cloning_prompt("Another sentence entirely.", list(range(32)))
        streams = [in_thread(lambda: list(client.generate(
            other, SamplingConfig(max_tokens=50), called_off=lambda: False))) for _ in range(4)]
        for thread, outcome in streams:
            thread.join(30)
            assert not thread.is_alive(), "a stream was held up by another's stuck check"
            assert [t.index for t in outcome[0]] == [5, 6, 7]
    finally:
        release.set()
        held.join(30)
    assert not held.is_alive()


def test_the_callers_cancel_check_is_only_asked_on_the_callers_thread(served):
    """``cancelled`` (a Triton request's is_cancelled) belongs to the serving thread; the
    watcher polls only ``called_off``."""
    server, client = served
    asked: list[threading.Thread] = []
    polls = threading.Semaphore(0)
    off = threading.Event()

    def cancelled() -> bool:
        asked.append(threading.current_thread())
        return False

    def called_off() -> bool:
        polls.release()
        return off.is_set()

    thread, outcome = in_thread(lambda: list(client.generate(
        PROMPT, SamplingConfig(max_tokens=50), cancelled, called_off)))
    assert server.holding.wait(30)
    for _ in range(3):  # the watcher has polled while the stream waited
        assert polls.acquire(timeout=30)
    off.set()
    thread.join(30)
    assert outcome == [[]]
    assert asked and set(asked) == {thread}, "asked off the caller's thread"
