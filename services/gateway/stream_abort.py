"""A streamed answer that fails after it began must not look complete to an HTTP client.

A gRPC caller of a server-streaming method always learns how the call ended: the
status comes in the trailers. An HTTP client of a transcoded route does not.
Envoy's grpc_json_transcoder sends the response headers (200) with the first
message, and when the gateway's trailers later carry an error it ends the
response as if it were complete: HTTP/1.1 gets its terminating chunk, HTTP/2 a
clean end of stream, and trailers are dropped (the JSON array of
``/v1/synthesize:stream`` is even closed with its ``]``). A client saw a truncated
WAV as a whole one.

So when a call that came through the transcoder fails after its first message,
the gateway makes Envoy *reset* the response instead: HTTP/1.1 clients see the
connection close before the terminating chunk (curl exits 18, Python's
http.client raises IncompleteRead, httpx RemoteProtocolError), HTTP/2 clients a
RST_STREAM. It still ends the gRPC call with the real status and message, which
the gateway's log and metrics count as that error; a call that failed before
any message keeps its ordinary error reply (the transcoder turns it into an HTTP
status with a JSON body), and native gRPC callers, through the edge or direct,
get the status in the trailers as always.

How: the status goes out with one more trailer, ``connection``. A connection-
specific header makes an HTTP/2 message malformed (RFC 9113 section 8.2.2), so
Envoy resets that stream, upstream and downstream. The gateway cluster sets
``override_stream_error_on_invalid_http_message`` (edge.clusters), which
confines the reset to that one stream; without it Envoy would close the whole
connection to the gateway and every call multiplexed on it.

Why this, and not something else (each tried against the stack's Envoy and
grpcio):

* The gateway cannot send RST_STREAM itself: grpcio's aio server has no call to
  reset a stream. A handler that raises CancelledError sends nothing at all, and
  the call hangs until the client leaves; an error raised or ``context.abort()``
  both send trailers, which the transcoder ends cleanly.
* Envoy has no option for it: the transcoder passes a streamed response's
  trailers on once its headers are out; a Lua filter can read the trailers but
  cannot reset a stream (a script error only logs); the transcoder does reset a
  stream whose message is not a valid google.api.HttpBody, but a typed grpcio
  servicer cannot send one, and JSON streams have no such hook.

A call counts as transcoded when the transcoder's headers are there:
``x-envoy-original-path`` / ``x-envoy-original-method`` (a gRPC client that sends
them itself only cuts its own stream).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import NoReturn, TypeVar

import grpc

from services.common.errors import to_status

logger = logging.getLogger(__name__)

T = TypeVar("T")

# What Envoy's transcoder adds to every request it turns into a gRPC call.
TRANSCODER_HEADERS = ("x-envoy-original-path", "x-envoy-original-method")
# A connection-specific header: the trailers that carry it make the response malformed.
ABORT_TRAILER = ("connection", "close")


def transcoded(context) -> bool:
    """Whether this call came through Envoy's transcoder (REST), not from a gRPC client."""
    return any(key in TRANSCODER_HEADERS for key, _ in context.invocation_metadata() or ())


async def cut(context, exc: BaseException, method: str, sent: int) -> NoReturn:
    """End a transcoded call that failed after ``sent`` messages: its status, and a reset.

    The status (code and message as the interceptor would choose them) is
    logged here and recorded by the interceptor's metrics; Envoy resets the
    client's response when it reads the trailers.
    """
    code, message = to_status(exc)
    logger.warning(
        "%s failed after %d message(s) had been sent; resetting the HTTP response",
        method, sent, exc_info=exc if code is grpc.StatusCode.INTERNAL else None,
        extra={"grpc_code": code.name, "detail": message},
    )
    trailing = tuple(context.trailing_metadata() or ())
    await context.abort(code, message, trailing + (ABORT_TRAILER,))
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


async def guarded(responses: AsyncIterator[T], context, method: str) -> AsyncIterator[T]:
    """``responses`` as they come; a failure after the first one resets a REST response.

    A failure before any response, and any failure of a native gRPC call, goes
    on to the interceptor unchanged: the caller gets it as its status.
    """
    sent = 0
    try:
        async for response in responses:
            sent += 1
            yield response
    except grpc.aio.AbortError:
        raise  # the status is already on its way
    except Exception as exc:
        if sent == 0 or not transcoded(context):
            raise
        await cut(context, exc, method, sent)
    finally:
        aclose = getattr(responses, "aclose", None)
        if aclose is not None:
            await aclose()


def guard(handler: Callable[..., AsyncIterator[T]]) -> Callable[..., AsyncIterator[T]]:
    """A server-streaming servicer method, its responses passed through ``guarded``."""

    @functools.wraps(handler)
    async def method(self, request, context) -> AsyncIterator[T]:
        async for response in guarded(handler(self, request, context), context, handler.__name__):
            yield response

    return method
