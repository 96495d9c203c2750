"""Errors a model reports to its caller, with a status name the TTS service maps.

Triton's streaming API carries only an error's message, so the message
starts with the gRPC status name: ``"INVALID_ARGUMENT: text is empty"``.
"""

from __future__ import annotations

_TRITON_CODES = {
    "INVALID_ARGUMENT": "INVALID_ARG",
    "NOT_FOUND": "NOT_FOUND",
    # Triton has no such code; the message's prefix carries it to the TTS service.
    "FAILED_PRECONDITION": "INVALID_ARG",
    "UNAVAILABLE": "UNAVAILABLE",
    "CANCELLED": "CANCELLED",
    "INTERNAL": "INTERNAL",
}


class ModelError(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status

    @classmethod
    def passed_on(cls, model: str, message: str) -> "ModelError":
        """A called model's error, under its own status where its message starts with
        one (a vLLM outage stays UNAVAILABLE, a prompt too long INVALID_ARGUMENT), else
        INTERNAL."""
        status, sep, rest = message.partition(": ")
        if sep and status in _TRITON_CODES:
            return cls(status, f"{model}: {rest}")
        return cls("INTERNAL", f"{model}: {message}")


def triton_error(exc: BaseException):
    """``exc`` as the TritonError a response carries. (Triton's module is imported here,
    not above: ModelError serves code that also runs outside a Triton stub.)"""
    import triton_python_backend_utils as pb_utils

    if isinstance(exc, ModelError):
        code = getattr(pb_utils.TritonError, _TRITON_CODES.get(exc.status, "INTERNAL"))
        return pb_utils.TritonError(str(exc), code)
    return pb_utils.TritonError(f"INTERNAL: {type(exc).__name__}: {exc}")
