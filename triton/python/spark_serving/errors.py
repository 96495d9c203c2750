"""Errors a model reports to its caller, with a status name the TTS service maps.

Triton's streaming API carries only an error's message, so the message
starts with the gRPC status name: ``"INVALID_ARGUMENT: text is empty"``.
"""

from __future__ import annotations

import triton_python_backend_utils as pb_utils

_TRITON_CODES = {
    "INVALID_ARGUMENT": "INVALID_ARG",
    "NOT_FOUND": "NOT_FOUND",
    "UNAVAILABLE": "UNAVAILABLE",
    "CANCELLED": "CANCELLED",
    "INTERNAL": "INTERNAL",
}


class ModelError(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def triton_error(exc: BaseException) -> pb_utils.TritonError:
    if isinstance(exc, ModelError):
        code = getattr(pb_utils.TritonError, _TRITON_CODES.get(exc.status, "INTERNAL"))
        return pb_utils.TritonError(str(exc), code)
    return pb_utils.TritonError(f"INTERNAL: {type(exc).__name__}: {exc}")
