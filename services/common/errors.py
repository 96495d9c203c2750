"""Domain errors, and the one place they become gRPC status codes.

Service cores raise these; they never touch a ServicerContext. The server
interceptor turns them (and errors from downstream gRPC calls) into status
codes, which Envoy in turn maps to HTTP statuses.
"""

from __future__ import annotations

import asyncio

import grpc


class ServiceError(Exception):
    """Base of every error a service reports to its caller on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    """The request itself is wrong; retrying it unchanged cannot help."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    """A named thing (voice, model, speaker) does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    """A named thing (e.g. an installed voice) exists already and was not to be replaced."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ServiceError):
    """The system is not in a state to serve this request (e.g. no model installed)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(ServiceError):
    """A dependency cannot be reached right now; the caller may retry."""

    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(ServiceError):
    """A limit or a full queue refused the request."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Overloaded(ResourceExhausted):
    """Too much work right now; ``retry_after`` whole seconds later it may be taken."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unimplemented(ServiceError):
    """Work that a later, named issue delivers."""

    code = grpc.StatusCode.UNIMPLEMENTED


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message a caller should see for ``exc``."""
    if isinstance(exc, ServiceError):
        return exc.code, exc.message
    if isinstance(exc, grpc.aio.AioRpcError):
        # A downstream service already chose the code; keep it and its message.
        return exc.code(), exc.details() or exc.code().name
    if isinstance(exc, NotImplementedError):
        # What generated servicer bases raise for a method nobody wrote.
        return grpc.StatusCode.UNIMPLEMENTED, "method not implemented"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded"
    return grpc.StatusCode.INTERNAL, "internal error"
