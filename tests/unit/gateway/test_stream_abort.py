"""A stream that fails after its first response: the status for gRPC callers, a reset
for REST ones (services.gateway.stream_abort). The guard alone with a stand-in
context, then the gateway servicer over real gRPC (the stack of test_gateway_servicer,
whose scripted TTS service fails the sentence "explode")."""

import asyncio
import inspect
import json
import urllib.request

import grpc
import pytest
from google.api import httpbody_pb2

from services.common.errors import Unavailable
from services.gateway import stream_abort
from tests.unit.gateway import test_gateway_servicer
from tests.unit.gateway.test_gateway_servicer import request, write_profile

stack = test_gateway_servicer.stack  # the fixture, shared
REST = (("x-envoy-original-path", "/synthesize/stream"), ("x-envoy-original-method", "POST"))
FAILS_SECOND = "Fine. explode"  # the scripted TTS service fails the second sentence


class Context:
    """What the guard uses of a grpc.aio ServicerContext; abort raises as grpc's does."""

    def __init__(self, metadata=()):
        self.metadata = tuple(metadata)
        self.trailing = (("x-request-id", "req-1"),)
        self.aborted = None

    def invocation_metadata(self):
        return self.metadata

    def trailing_metadata(self):
        return self.trailing

    async def abort(self, code, details="", trailing_metadata=()):
        self.aborted = (code, details, tuple(trailing_metadata))
        raise grpc.aio.AbortError("aborted")


class Responses:
    """An async generator of ``count`` responses, then ``error`` (if any); says if closed."""

    def __init__(self, count, error=None):
        self.count, self.error, self.closed = count, error, False

    async def __call__(self):
        try:
            for n in range(self.count):
                yield n
            if self.error is not None:
                raise self.error
        finally:
            self.closed = True


async def drain(responses, context):
    got = []
    async for response in stream_abort.guarded(responses, context, "Method"):
        got.append(response)
    return got


@pytest.mark.parametrize("metadata", [(), (("x-envoy-original-path", "/v1/x"),),
                                      (("x-envoy-original-method", "POST"),)])
def test_a_call_is_transcoded_when_a_transcoder_header_is_there(metadata):
    assert stream_abort.transcoded(Context(metadata)) is bool(metadata)
    assert not stream_abort.transcoded(Context((("user-agent", "grpc-python"),)))


async def test_a_rest_stream_that_fails_after_a_response_is_aborted_with_the_reset_trailer():
    context = Context(REST)
    responses = Responses(2, Unavailable("rvc is down"))
    got = []
    with pytest.raises(grpc.aio.AbortError):
        async for response in stream_abort.guarded(responses(), context, "Method"):
            got.append(response)
    assert got == [0, 1]
    # The real status, the interceptor's trailers kept, and the trailer that makes Envoy reset.
    assert context.aborted == (grpc.StatusCode.UNAVAILABLE, "rvc is down",
                               (("x-request-id", "req-1"), ("connection", "close")))
    assert responses.closed


async def test_an_unexpected_failure_is_internal_without_its_details():
    context = Context(REST)
    with pytest.raises(grpc.aio.AbortError):
        await drain(Responses(1, RuntimeError("secret internals"))(), context)
    assert context.aborted[:2] == (grpc.StatusCode.INTERNAL, "internal error")


async def test_a_grpc_stream_that_fails_passes_its_error_on_unchanged():
    context, error = Context((("user-agent", "grpc-go"),)), Unavailable("rvc is down")
    with pytest.raises(Unavailable) as caught:
        await drain(Responses(2, error)(), context)
    assert caught.value is error and context.aborted is None


async def test_a_failure_before_the_first_response_is_the_ordinary_error_reply():
    context, error = Context(REST), Unavailable("rvc is down")
    with pytest.raises(Unavailable) as caught:
        await drain(Responses(0, error)(), context)
    assert caught.value is error and context.aborted is None


async def test_a_stream_already_aborted_is_left_alone():
    context = Context(REST)
    with pytest.raises(grpc.aio.AbortError):
        await drain(Responses(1, grpc.aio.AbortError("by the handler"))(), context)
    assert context.aborted is None


async def test_a_complete_stream_passes_through_and_a_caller_that_leaves_closes_it():
    assert await drain(Responses(3)(), Context(REST)) == [0, 1, 2]
    responses = Responses(5)
    guarded = stream_abort.guarded(responses(), Context(REST), "Method")
    assert await guarded.__anext__() == 0
    await guarded.aclose()
    assert responses.closed


def test_guard_keeps_a_servicer_method_an_async_generator_of_its_name():
    class Servicer:
        @stream_abort.guard
        async def Stream(self, request, context):
            yield request

    assert inspect.isasyncgenfunction(Servicer.Stream)
    assert Servicer.Stream.__name__ == "Stream"


async def handled(stack, method: str, code: str, expected: float) -> float:
    """The gateway's count of ``method`` calls that ended with ``code``, once it is
    ``expected`` (or after 10 s): the interceptor counts a call just after its status
    has gone, so the caller may see the status first."""
    port = stack["gateway_host"].metrics_port
    series = (f'grpc_server_handled_total{{grpc_code="{code}",grpc_method="{method}",'
              f'grpc_service="voice.v1.Gateway"}} ')
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode())
        line = next((line for line in body.splitlines() if line.startswith(series)), None)
        count = float(line.split()[-1]) if line else 0.0
        if count == expected or asyncio.get_running_loop().time() > deadline:
            return count
        await asyncio.sleep(0.05)  # the gateway's event loop runs its interceptor meanwhile


async def test_a_grpc_caller_gets_the_status_after_the_first_sentence_counted_as_an_error(stack):
    call = stack["stub"].SynthesizeStream(request(FAILS_SECOND, skip_rvc=True))
    replies = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for reply in call:
            replies.append(reply)
    assert [r.sentence_index for r in replies] == [0]
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert caught.value.details() == "internal error"
    assert "connection" not in dict(caught.value.trailing_metadata())
    assert await handled(stack, "SynthesizeStream", "INTERNAL", 1) == 1
    assert await handled(stack, "SynthesizeStream", "OK", 0) == 0


async def test_a_transcoded_call_ends_with_its_status_and_the_reset_trailer(stack):
    call = stack["stub"].SynthesizeStream(request(FAILS_SECOND, skip_rvc=True), metadata=REST)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call:
            pass
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    trailers = dict(caught.value.trailing_metadata())
    assert trailers["connection"] == "close" and trailers["x-request-id"]
    assert await handled(stack, "SynthesizeStream", "INTERNAL", 1) == 1


async def test_sse_sends_an_error_event_then_fails_without_an_end_event(stack):
    write_profile(stack, "bob", control={"gender": "male"})
    body = httpbody_pb2.HttpBody(content_type="application/json", data=json.dumps(
        {"text": FAILS_SECOND, "voice": "bob", "skip_rvc": True}).encode())
    replies = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for reply in stack["stub"].LegacySynthesizeSse(body, metadata=REST):
            replies.append(reply)
    events = [json.loads(r.data.decode().split("data: ", 1)[1]) for r in replies]
    assert [e["type"] for e in events] == ["start", "chunk", "error"]
    assert events[-1]["message"] == "internal error"
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert dict(caught.value.trailing_metadata())["connection"] == "close"
    assert await handled(stack, "LegacySynthesizeSse", "INTERNAL", 1) == 1
    assert await handled(stack, "LegacySynthesizeSse", "OK", 0) == 0
