"""TTS then RVC for one request, with timings and the reason RVC was skipped."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from voice.v1 import rvc_pb2, tts_pb2

from services.common.audio import PcmAudio
from services.common.errors import Unimplemented
from services.gateway.stages import Dependency, RvcStage, StageResult, TtsStage


@dataclass(frozen=True)
class Synthesis:
    audio: PcmAudio
    tts: StageResult
    rvc: StageResult | None
    rvc_skipped_reason: str
    first_audio_seconds: float
    total_seconds: float


@dataclass(frozen=True)
class Health:
    serving: bool
    dependencies: list[Dependency]


class Pipeline:
    def __init__(self, tts: TtsStage, rvc: RvcStage) -> None:
        self.tts = tts
        self.rvc = rvc

    async def _skip_reason(self, params: rvc_pb2.ConversionParams, skip_rvc: bool) -> str:
        if skip_rvc:
            return "skip_rvc was requested"
        if params.model:
            return ""
        voices = await self.rvc.voices()
        if not voices.models:
            return "no RVC voice is installed"
        if not voices.default_model:
            return "no RVC voice was named and none is the default (set RVC_MODEL)"
        return ""

    async def synthesize(
        self,
        tts_request: tts_pb2.SynthesizeSpeechRequest,
        params: rvc_pb2.ConversionParams,
        skip_rvc: bool,
    ) -> Synthesis:
        start = time.perf_counter()
        # Ask RVC what it has while TTS works, so a skip costs no extra round trip.
        reason_task = asyncio.ensure_future(self._skip_reason(params, skip_rvc))
        try:
            spoken = await self.tts.synthesize(tts_request)
            reason = await reason_task
        finally:
            reason_task.cancel()
        converted = None if reason else await self.rvc.convert(params, spoken.audio)
        total = time.perf_counter() - start
        first = spoken.seconds + (converted.first_audio_seconds if converted else 0.0)
        return Synthesis(
            audio=converted.audio if converted else spoken.audio,
            tts=spoken,
            rvc=converted,
            rvc_skipped_reason=reason,
            first_audio_seconds=first,
            total_seconds=total,
        )

    async def synthesize_stream(self, *args, **kwargs):
        raise Unimplemented(
            "streaming synthesis (sentence pipelining) is not implemented yet: it arrives "
            "with issue #5"
        )
        yield  # pragma: no cover - makes this an async generator

    async def health(self, timeout: float) -> Health:
        dependencies = list(
            await asyncio.gather(self.tts.health(timeout), self.rvc.health(timeout))
        )
        return Health(all(d.status == "SERVING" for d in dependencies), dependencies)
