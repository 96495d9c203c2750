"""Per-request values carried across awaits and over gRPC hops.

The server interceptor sets them when a call arrives; logging reads the
request id, and the client interceptor forwards both to downstream calls.
"""

from __future__ import annotations

import contextvars
import re
import time
import uuid

REQUEST_ID_HEADER = "x-request-id"

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
# Absolute time.monotonic() by which the current request must be answered.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(candidate: str | None) -> str:
    """The caller's id when it is a sane token, else a fresh one."""
    if candidate and _VALID_ID.match(candidate):
        return candidate
    return new_request_id()


def current_request_id() -> str:
    return _request_id.get()


def set_request(request_id: str, time_remaining: float | None) -> None:
    _request_id.set(request_id)
    _deadline.set(None if time_remaining is None else time.monotonic() + time_remaining)


def time_remaining() -> float | None:
    """Seconds left before the current request's deadline, or None without one."""
    deadline = _deadline.get()
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())
