"""The gateway's core: what it does for a caller, whatever protocol the caller spoke.

Speak a job (whole, or sentence by sentence), speak without conversion, convert a
clip, list the voices, report health and status. The protocol adapters
(services.gateway.adapters) turn their requests into jobs and stage requests, call
this, and turn what it returns into their replies; none of them reaches a stage or
the pipeline past it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from voice.v1 import rvc_pb2, tts_pb2

from services.common.audio import PcmAudio
from services.common.metrics import ServerMetrics
from services.gateway.jobs import SpeechJob
from services.gateway.pipeline import Pipeline
from services.gateway.results import Health, Piece, Synthesis
from services.gateway.speech_params import Conversion
from services.gateway.stages import StageResult
from services.gateway.voice_library import VoiceLibrary
from services.gateway.voices import VoiceBook, VoiceListing


@dataclass(frozen=True)
class Status:
    """The whole system as the gateway sees it; a stage that could not report is None.

    The stages' reports are their services' own status messages, relayed unread.
    """

    health: Health
    tts: tts_pb2.TtsStatus | None
    rvc: rvc_pb2.RvcStatus | None
    default_rvc_model: str  # the voice POST /rvc converts into unnamed ("" if unknown)
    requests: list[tuple[str, str, int]]  # (method, code, count) handled so far
    uptime_seconds: float
    voices: list[VoiceListing]


class SpeechService:
    def __init__(
        self,
        pipeline: Pipeline,
        voices: VoiceBook,
        health_timeout: float,
        metrics: ServerMetrics | None = None,
        max_reference_seconds: float | None = None,
        max_audio_seconds: float | None = None,
        service_name: str = "",
    ) -> None:
        self._pipeline = pipeline
        self.voices = voices
        self.library = VoiceLibrary(voices, max_reference_seconds)
        # A profile's clip, once encoded, speaks from its tokens from then on.
        pipeline.remember_tokens = self.library.remember_tokens
        self._health_timeout = health_timeout
        self._metrics = metrics
        self._service_name = service_name  # whose handled requests the status counts
        # Upload limits (TTS_MAX_REFERENCE_SECONDS, RVC_MAX_AUDIO_SECONDS); None: none.
        self.max_reference_seconds = max_reference_seconds
        self.max_audio_seconds = max_audio_seconds
        self._started = time.monotonic()

    async def synthesize(self, job: SpeechJob, rpc: str) -> Synthesis:
        """The job's whole text, spoken and converted (``rpc`` labels its metrics)."""
        return await self._pipeline.synthesize(job, rpc)

    def stream(self, job: SpeechJob, rpc: str) -> AsyncIterator[Piece]:
        """The job's text sentence by sentence, each piece as soon as it is ready."""
        return self._pipeline.synthesize_stream(job, rpc)

    async def say(self, job: SpeechJob) -> StageResult:
        """TTS only: the job's whole text in its speaker's voice, no conversion."""
        return await self._pipeline.tts.say(job.text, job.speaker, job.sampling, job.engine,
                                            job.piper)

    async def speak(self, request: tts_pb2.SynthesizeSpeechRequest) -> StageResult:
        """TTS only: the TTS service's own request, relayed unread; no conversion."""
        return await self._pipeline.tts.synthesize(request)

    async def convert(self, params: Conversion, audio: PcmAudio) -> StageResult:
        """RVC only: ``audio`` into the voice ``params`` name."""
        return await self._pipeline.rvc.convert(params, audio)

    async def convert_message(self, request: rvc_pb2.ConvertRequest) -> rvc_pb2.ConvertResponse:
        """RVC only: the RVC service's own request and reply, relayed unread."""
        return await self._pipeline.rvc.convert_message(request)

    async def rvc_voices(self) -> rvc_pb2.ListModelsResponse:
        """The RVC service's voices, its own list relayed unread."""
        return await self._pipeline.rvc.voices(self._health_timeout)

    async def install_rvc_voice(self, name: str, checkpoint: bytes, index: bytes,
                                replace: bool = False) -> rvc_pb2.VoiceModel:
        """A WebUI voice (.pth, and its .index or b"") given to the RVC service to check
        and keep; the voices folder is shared by every RVC instance."""
        return await self._pipeline.rvc.install(name, checkpoint, index, replace)

    async def delete_rvc_voice(self, name: str) -> None:
        await self._pipeline.rvc.delete(name)

    def profiles(self) -> list[VoiceListing]:
        return self.voices.profiles()

    async def health(self) -> Health:
        return await self._pipeline.health(self._health_timeout)

    async def status(self) -> Status:
        timeout = self._health_timeout
        health, tts, rvc, rvc_model = await asyncio.gather(
            self.health(),
            self._pipeline.tts.status(timeout),
            self._pipeline.rvc.status(timeout),
            self._default_rvc_model(timeout),
            return_exceptions=True,
        )
        if isinstance(health, BaseException):
            raise health
        counts = self._metrics.handled_counts(self._service_name) if self._metrics else []
        return Status(
            health=health,
            tts=None if isinstance(tts, Exception) else tts,
            rvc=None if isinstance(rvc, Exception) else rvc,
            default_rvc_model="" if isinstance(rvc_model, Exception) else rvc_model,
            requests=counts,
            uptime_seconds=time.monotonic() - self._started,
            voices=self.profiles(),
        )

    async def _default_rvc_model(self, timeout: float) -> str:
        """The voice a conversion naming none goes to: the default profile's, else RVC's."""
        profile = self.voices.usable_default()
        if profile is not None and profile.conversion.model:
            return profile.conversion.model
        return (await self._pipeline.rvc.voices(timeout)).default_model
