"""The gateway's clients of the TTS and RVC services.

They speak voice.v1 to those services and hand the pipeline decoded audio
and timings. Stage requests pass through as the client sent them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from voice.v1 import rvc_pb2, rvc_pb2_grpc, tts_pb2, tts_pb2_grpc

from services.common.audio import PcmAudio
from services.common.audio_proto import audio_from_proto, audio_to_proto
from services.common.channels import check_health, open_channel
from services.common.errors import FailedPrecondition
from services.common.settings import InternalTls


@dataclass(frozen=True)
class StageResult:
    audio: PcmAudio
    seconds: float
    first_audio_seconds: float
    extra: str = ""  # the speaker id a TTS run cached, if any
    engine: int = 0  # the TTS engine that spoke (a voice.v1.Engine value)
    notes: tuple[str, ...] = ()  # what the TTS engine ignored


@dataclass(frozen=True)
class Dependency:
    name: str
    address: str
    status: str
    detail: str = ""


class TtsStage:
    name = "tts"

    def __init__(self, target: str, tls: InternalTls = InternalTls()) -> None:
        self.target = target
        self._channel = open_channel(target, tls=tls)
        self.stub = tts_pb2_grpc.TextToSpeechStub(self._channel)

    async def synthesize(self, request: tts_pb2.SynthesizeSpeechRequest) -> StageResult:
        start = time.perf_counter()
        first = None
        pieces: list[PcmAudio] = []
        speaker_id = ""
        engine, notes = 0, ()
        async for reply in self.stub.Synthesize(request):
            if first is None:
                first = time.perf_counter() - start
                engine, notes = reply.engine, tuple(reply.notes)
            speaker_id = speaker_id or reply.speaker_id
            if reply.HasField("chunk"):
                pieces.append(audio_from_proto(reply.chunk.audio, "tts chunk"))
        if not pieces:
            raise FailedPrecondition("the TTS service returned no audio")
        audio = join(pieces)
        elapsed = time.perf_counter() - start
        return StageResult(audio, elapsed, first or elapsed, speaker_id, engine, notes)

    async def health(self, timeout: float) -> Dependency:
        status, detail = await check_health(self._channel, timeout=timeout)
        return Dependency(self.name, self.target, status, detail)

    async def status(self, timeout: float) -> tts_pb2.GetTtsStatusResponse:
        return await self.stub.GetStatus(tts_pb2.GetTtsStatusRequest(), timeout=timeout)

    async def close(self) -> None:
        await self._channel.close()


class RvcStage:
    name = "rvc"

    def __init__(self, target: str, tls: InternalTls = InternalTls()) -> None:
        self.target = target
        # RVC instances scale out (one per GPU) and roll one at a time: conversions
        # go only to those serving; health is asked over a channel that reaches all.
        self._channel = open_channel(target, skip_not_serving=True, tls=tls)
        self._probe_channel = open_channel(target, tls=tls)
        self.stub = rvc_pb2_grpc.VoiceConversionStub(self._channel)

    async def convert(self, params: rvc_pb2.ConversionParams, audio: PcmAudio) -> StageResult:
        start = time.perf_counter()
        reply = await self.stub.Convert(
            rvc_pb2.ConvertRequest(params=params, audio=audio_to_proto(audio))
        )
        elapsed = time.perf_counter() - start
        return StageResult(audio_from_proto(reply.audio, "rvc audio"), elapsed, elapsed)

    async def convert_message(self, request: rvc_pb2.ConvertRequest) -> rvc_pb2.ConvertResponse:
        """The RVC service's own request and reply, passed through whole."""
        return await self.stub.Convert(request)

    async def status(self, timeout: float) -> rvc_pb2.GetRvcStatusResponse:
        return await self.stub.GetStatus(rvc_pb2.GetRvcStatusRequest(), timeout=timeout)

    async def voices(self, timeout: float | None = None) -> rvc_pb2.ListModelsResponse:
        return await self.stub.ListModels(rvc_pb2.ListModelsRequest(), timeout=timeout)

    async def health(self, timeout: float) -> Dependency:
        status, detail = await check_health(self._probe_channel, timeout=timeout)
        return Dependency(self.name, self.target, status, detail)

    async def close(self) -> None:
        await self._channel.close()
        await self._probe_channel.close()


def join(pieces: list[PcmAudio]) -> PcmAudio:
    rates = {p.sample_rate for p in pieces}
    if len(rates) != 1:
        raise FailedPrecondition(f"audio chunks disagree on sample rate: {sorted(rates)}")
    return PcmAudio(np.concatenate([p.samples for p in pieces]), rates.pop())
