"""gRPC interceptors: the server side stamps, times and maps errors for every
call; the client side carries the request id and the deadline downstream."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from services.common.admission import RETRY_AFTER_HEADER, Admission, is_limited
from services.common.errors import InvalidArgument, Overloaded, to_status
from services.common.metrics import ServerMetrics, split_method
from services.common.request_context import (
    REQUEST_ID_HEADER,
    accept_request_id,
    current_request_id,
    set_request,
    time_remaining,
)

log = logging.getLogger(__name__)

_QUIET_SERVICES = {
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}


class Policy:
    """What the server holds every call to: its deadline bounds and the instance's admission."""

    def __init__(
        self,
        metrics: ServerMetrics,
        admission: Admission | None = None,
        default_deadline: float | None = None,
        max_deadline: float | None = None,
    ) -> None:
        self.metrics = metrics
        self.admission = admission
        self.default_deadline = default_deadline
        self.max_deadline = max_deadline

    def deadline(self, requested: float | None) -> float | None:
        """Seconds the call may run: the caller's deadline, else the default, at most the maximum."""
        seconds = self.default_deadline if requested is None else requested
        if seconds is not None and self.max_deadline is not None:
            seconds = min(seconds, self.max_deadline)
        return seconds


class _CallScope:
    """Everything the interceptor does around one RPC, whatever its shape."""

    def __init__(self, policy: Policy, full_method: str, context: Any) -> None:
        self.policy = policy
        self.metrics = policy.metrics
        self.service, self.method = split_method(full_method)
        self.context = context
        self.code = grpc.StatusCode.OK
        self.start = time.perf_counter()

    def slot(self) -> contextlib.AbstractAsyncContextManager:
        """The instance's admission for a working call; nothing for the cheap ones."""
        admission = self.policy.admission
        if admission is None or not is_limited(self.service, self.method):
            return contextlib.nullcontext()
        return admission.slot(time_remaining())

    def enter(self) -> None:
        metadata = dict(self.context.invocation_metadata() or ())
        request_id = accept_request_id(metadata.get(REQUEST_ID_HEADER))
        set_request(request_id, self.policy.deadline(self.context.time_remaining()))
        trailing = tuple(self.context.trailing_metadata() or ())
        self.context.set_trailing_metadata(trailing + ((REQUEST_ID_HEADER, request_id),))
        self.metrics.in_flight.labels(self.service, self.method).inc()

    async def fail(self, exc: BaseException) -> None:
        """Record why the call ended and turn ``exc`` into its status; always raises."""
        if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            # The caller went away (or cancelled): nothing to answer.
            self.code = grpc.StatusCode.CANCELLED
            raise exc
        if isinstance(exc, grpc.aio.AbortError):
            self.code = self.context.code() or grpc.StatusCode.UNKNOWN
            raise exc
        self.code, message = to_status(exc)
        retry_after = _retry_after(exc)
        if retry_after is not None:
            trailing = tuple(self.context.trailing_metadata() or ())
            self.context.set_trailing_metadata(trailing + ((RETRY_AFTER_HEADER, retry_after),))
        if self.code is grpc.StatusCode.INTERNAL:
            log.error("unhandled error in %s/%s", self.service, self.method, exc_info=exc)
        else:
            log.info(
                "%s/%s failed", self.service, self.method,
                extra={"grpc_code": self.code.name, "detail": message},
            )
        await self.context.abort(self.code, message)

    def exit(self) -> None:
        code = self.context.code() if self.code is grpc.StatusCode.OK else self.code
        name = (code or grpc.StatusCode.OK).name
        elapsed = time.perf_counter() - self.start
        self.metrics.in_flight.labels(self.service, self.method).dec()
        self.metrics.handled.labels(self.service, self.method, name).inc()
        self.metrics.latency.labels(self.service, self.method, name).observe(elapsed)
        # Probes and reflection would drown the log at INFO.
        level = logging.DEBUG if self.service in _QUIET_SERVICES else logging.INFO
        log.log(
            level,
            "handled %s/%s", self.service, self.method,
            extra={"grpc_code": name, "duration_ms": round(elapsed * 1000, 2)},
        )


def _retry_after(exc: BaseException) -> str | None:
    """Seconds a refused caller should wait: ours, or what a downstream service said."""
    if isinstance(exc, Overloaded):
        return str(exc.retry_after)
    if isinstance(exc, grpc.aio.AioRpcError) and exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
        for key, value in exc.trailing_metadata() or ():
            if key == RETRY_AFTER_HEADER:
                return str(value)
    return None


class _Undecodable:
    """A request message that did not parse; the call fails with INVALID_ARGUMENT when it is read.

    grpc.aio itself would answer UNKNOWN, outside the interceptor's reach.
    """

    def __init__(self, error: DecodeError) -> None:
        self.error = error


def _tolerant(deserializer: Callable | None) -> Callable | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:
            return _Undecodable(exc)

    return deserialize


def _parsed(request: Any) -> Any:
    if isinstance(request, _Undecodable):
        raise InvalidArgument(
            f"the request cannot be parsed ({request.error}); string fields must be valid UTF-8"
        )
    return request


async def _parsed_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _parsed(request)


def _requests(request: Any, streaming: bool) -> Any:
    """The request (or stream of them) as the servicer reads it; undecodable ones raise."""
    return _parsed_stream(request) if streaming else _parsed(request)


def _wrap_unary_response(
    policy: Policy, full_method: str, behavior: Callable, streaming: bool
) -> Callable:
    async def handle(request: Any, context: Any) -> Any:
        scope = _CallScope(policy, full_method, context)
        scope.enter()
        try:
            async with scope.slot():
                return await behavior(_requests(request, streaming), context)
        except BaseException as exc:  # noqa: BLE001 - mapped to a status, then re-raised
            await scope.fail(exc)
        finally:
            scope.exit()

    return handle


def _wrap_stream_response(
    policy: Policy, full_method: str, behavior: Callable, streaming: bool
) -> Callable:
    async def handle(request: Any, context: Any) -> AsyncIterator[Any]:
        scope = _CallScope(policy, full_method, context)
        scope.enter()
        try:
            async with scope.slot():
                result = behavior(_requests(request, streaming), context)
                if inspect.isasyncgen(result):
                    async for response in result:
                        yield response
                else:
                    await result
        except BaseException as exc:  # noqa: BLE001 - mapped to a status, then re-raised
            await scope.fail(exc)
        finally:
            scope.exit()

    return handle


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Request id, deadline, admission, metrics and error mapping for every RPC."""

    def __init__(self, policy: Policy | ServerMetrics) -> None:
        self._policy = policy if isinstance(policy, Policy) else Policy(policy)

    async def intercept_service(
        self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        codec = {
            "request_deserializer": _tolerant(handler.request_deserializer),
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            behavior = _wrap_unary_response(self._policy, method, handler.unary_unary, False)
            return grpc.unary_unary_rpc_method_handler(behavior, **codec)
        if handler.stream_unary:
            behavior = _wrap_unary_response(self._policy, method, handler.stream_unary, True)
            return grpc.stream_unary_rpc_method_handler(behavior, **codec)
        if handler.unary_stream:
            behavior = _wrap_stream_response(self._policy, method, handler.unary_stream, False)
            return grpc.unary_stream_rpc_method_handler(behavior, **codec)
        behavior = _wrap_stream_response(self._policy, method, handler.stream_stream, True)
        return grpc.stream_stream_rpc_method_handler(behavior, **codec)


def _forwarded(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    """``details`` plus the current request id and no more time than the request has left."""
    metadata = grpc.aio.Metadata(*tuple(details.metadata or ()))
    request_id = current_request_id()
    if request_id and REQUEST_ID_HEADER not in metadata:
        metadata.add(REQUEST_ID_HEADER, request_id)
    timeout = details.timeout
    remaining = time_remaining()
    if remaining is not None:
        timeout = remaining if timeout is None else min(timeout, remaining)
    return grpc.aio.ClientCallDetails(
        details.method, timeout, metadata, details.credentials, details.wait_for_ready
    )


# grpc.aio files an interceptor under the first call shape it implements, so
# each shape needs a class of its own.
class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(_forwarded(client_call_details), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(_forwarded(client_call_details), request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(_forwarded(client_call_details), request_iterator)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(_forwarded(client_call_details), request_iterator)


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """Interceptors that carry the request id and deadline on every outgoing call."""
    return [_UnaryUnary(), _UnaryStream(), _StreamUnary(), _StreamStream()]
