"""What the TTS service asks of Triton, over Triton's gRPC API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import numpy as np
import tritonclient.grpc.aio as triton_grpc
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from services.common.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ServiceError,
    Unavailable,
)
from services.common.internal_tls import channel_credentials
from services.common.settings import InternalTls

# Models prefix their error messages with a status name (Triton's streaming
# API carries no code); anything else means Triton itself is in trouble.
_STATUS_PREFIXES = {
    "INVALID_ARGUMENT": InvalidArgument,
    "FAILED_PRECONDITION": FailedPrecondition,
    "NOT_FOUND": NotFound,
    "UNAVAILABLE": Unavailable,
}


log = logging.getLogger(__name__)

# How long a finished stream may take to close before it is cancelled.
_CLOSE_TIMEOUT = 5.0

# The client's own channel options (message limits, keepalive as tritonclient sets
# them), and a short reconnect back-off: gRPC's default grows to minutes while Triton
# is down, so a Triton back after a crash (it takes tens of seconds to load its models)
# went unnoticed for up to half a minute more.
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", triton_grpc.MAX_GRPC_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", triton_grpc.MAX_GRPC_MESSAGE_SIZE),
    ("grpc.keepalive_time_ms", 2**31 - 1),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 2),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
)


async def _drain(responses, timeout: float) -> None:
    async def rest() -> None:
        async for _ in responses:
            pass

    try:
        await asyncio.wait_for(rest(), timeout)
    except (asyncio.TimeoutError, InferenceServerException, grpc.aio.AioRpcError):
        responses.cancel()


@dataclass(frozen=True)
class ModelState:
    name: str
    version: str
    ready: bool


@dataclass(frozen=True)
class TritonState:
    address: str
    ready: bool
    models: tuple[ModelState, ...] = ()
    error: str = ""


def model_error(message: str) -> ServiceError:
    """The domain error for a Triton error message; internals stay in our log."""
    status, _, detail = message.partition(": ")
    error = _STATUS_PREFIXES.get(status)
    if error is not None:
        return error(detail)
    if status == "INTERNAL":
        log.error("a TTS model failed in Triton: %s", detail)
        return ServiceError("speech synthesis failed inside the model server")
    if "Deadline" in message or "timeout" in message.lower():
        return DeadlineExceeded(f"Triton: {message}")
    return Unavailable(f"Triton: {message}")


def infer_input(name: str, value: np.ndarray) -> InferInput:
    tensor = InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
    tensor.set_data_from_numpy(value)
    return tensor


class Triton:
    def __init__(self, url: str, timeout: float = 2.0, tls: InternalTls = InternalTls()) -> None:
        self.url = url
        self._timeout = timeout
        # With internal mTLS on, Triton runs with --grpc-use-ssl-mutual (tritonclient's
        # aio client builds a secure channel from credentials alone).
        creds = channel_credentials(tls) if tls.enabled else None
        self._client = triton_grpc.InferenceServerClient(
            url, creds=creds, channel_args=list(CHANNEL_OPTIONS))

    async def ready(self, model: str | None = None) -> bool:
        try:
            if not await self._client.is_server_ready(client_timeout=self._timeout):
                return False
            if model is None:
                return True
            return bool(await self._client.is_model_ready(model, client_timeout=self._timeout))
        except InferenceServerException:
            return False

    async def state(self) -> TritonState:
        try:
            ready = bool(await self._client.is_server_ready(client_timeout=self._timeout))
            index = await self._client.get_model_repository_index(
                as_json=True, client_timeout=self._timeout
            )
        except InferenceServerException as exc:
            return TritonState(self.url, False, error=exc.message())
        models = tuple(
            ModelState(m["name"], m.get("version", ""), m.get("state") == "READY")
            for m in index.get("models", [])
        )
        return TritonState(self.url, ready, models)

    async def stream(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        outputs: list[str],
        timeout: float | None = None,
    ) -> AsyncIterator[dict[str, np.ndarray]]:
        """Responses of one request to a decoupled model, until one has final=true.

        Leaving the loop early (or being cancelled) cancels the Triton request.
        """
        done = asyncio.Event()

        async def requests():
            yield {
                "model_name": model,
                "inputs": [infer_input(name, value) for name, value in inputs.items()],
                "outputs": [InferRequestedOutput(name) for name in outputs],
            }
            await done.wait()  # half-closing early could end the stream

        responses = self._client.stream_infer(requests(), stream_timeout=timeout)
        finished = False
        try:
            async for result, error in responses:
                if error is not None:
                    raise model_error(error.message())
                reply = {name: result.as_numpy(name) for name in outputs}
                finished = bool(reply["final"].reshape(-1)[0])
                yield reply
                if finished:
                    break
            if not finished:
                raise Unavailable("Triton ended the stream before the final response")
        except InferenceServerException as exc:
            raise model_error(exc.message()) from None
        finally:
            done.set()
            if finished:
                # Half-close and let Triton end the stream on its own terms.
                await _drain(responses, _CLOSE_TIMEOUT)
            else:
                responses.cancel()  # the caller left early or failed: stop the work

    async def close(self) -> None:
        await self._client.close()
