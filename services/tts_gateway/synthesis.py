"""The TTS core: checks a request, then has Triton synthesise it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from services.common.audio import PcmAudio
from services.common.errors import Unavailable, Unimplemented
from services.tts_gateway.request import SpeechRequest
from services.tts_gateway.settings import TtsSettings
from services.tts_gateway.triton import Triton


@dataclass(frozen=True)
class SpeechChunk:
    audio: PcmAudio
    final: bool


class TtsEngine:
    def __init__(self, settings: TtsSettings, triton: Triton) -> None:
        self._settings = settings
        self.triton = triton
        self.in_flight = 0

    async def synthesize(self, request: SpeechRequest) -> AsyncIterator[SpeechChunk]:
        request.check(self._settings.max_text_chars, self._settings.max_reference_seconds)
        self.in_flight += 1
        try:
            async for chunk in self._run(request):
                yield chunk
        finally:
            self.in_flight -= 1

    async def _run(self, request: SpeechRequest) -> AsyncIterator[SpeechChunk]:
        if not await self.triton.ready():
            raise Unavailable(f"Triton at {self.triton.url} is not ready")
        raise Unimplemented(
            "Spark TTS synthesis is not implemented yet: the Spark TTS Triton model "
            "arrives with issue #3"
        )
        yield  # pragma: no cover - makes this an async generator for the servicer
