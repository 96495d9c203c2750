"""What the TTS service asks of Triton, over Triton's gRPC API."""

from __future__ import annotations

from dataclasses import dataclass

import tritonclient.grpc.aio as triton_grpc
from tritonclient.utils import InferenceServerException


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


class Triton:
    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self.url = url
        self._timeout = timeout
        self._client = triton_grpc.InferenceServerClient(url)

    async def ready(self) -> bool:
        try:
            return bool(await self._client.is_server_ready(client_timeout=self._timeout))
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

    async def close(self) -> None:
        await self._client.close()
