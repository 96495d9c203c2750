"""The RVC core: resolves the voice, checks the audio, converts it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from services.common.audio import PcmAudio
from services.common.errors import InvalidArgument, Unimplemented
from services.rvc.model_store import ModelStore, VoiceFiles, check_name
from services.rvc.params import ConversionParams
from services.rvc.settings import RvcSettings

_NOT_YET = "RVC inference is not implemented yet: synthesizers and the worker pool arrive with issue #4"


@dataclass(frozen=True)
class PoolState:
    workers_configured: int
    workers_alive: int
    workers_busy: int
    queue_depth: int
    device: str
    loaded_models: tuple[str, ...]


class Converter:
    def __init__(self, settings: RvcSettings, store: ModelStore) -> None:
        self._settings = settings
        self.store = store

    def voices(self) -> list[VoiceFiles]:
        return self.store.list()

    def loaded(self) -> tuple[str, ...]:
        return ()

    async def load(self, name: str) -> VoiceFiles:
        voice = self.store.resolve(check_name(name))
        raise Unimplemented(f"cannot load {voice.name!r}: {_NOT_YET}")

    async def convert(self, params: ConversionParams, audio: PcmAudio) -> PcmAudio:
        self.store.resolve(params.model)
        if audio.frames == 0:
            raise InvalidArgument("audio is empty")
        raise Unimplemented(_NOT_YET)

    async def convert_stream(
        self, params: ConversionParams, chunks: AsyncIterator[PcmAudio]
    ) -> AsyncIterator[PcmAudio]:
        self.store.resolve(params.model)
        raise Unimplemented(_NOT_YET)
        yield  # pragma: no cover - makes this an async generator

    def state(self) -> PoolState:
        return PoolState(
            workers_configured=self._settings.workers,
            workers_alive=0,
            workers_busy=0,
            queue_depth=0,
            device=self._settings.device,
            loaded_models=self.loaded(),
        )
