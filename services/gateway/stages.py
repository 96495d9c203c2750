"""The gateway's clients of the TTS and RVC services.

They speak voice.v1 to those services: the pipeline's parameters
(services.gateway.speech_params) become those services' requests, and their
replies decoded audio and timings. The gateway's Tts and Rvc RPCs pass the
stage's own request through as the client sent it.
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
from services.gateway.params_proto import (
    conversion_to_proto,
    piper_to_proto,
    sampling_to_proto,
    speaker_to_proto,
    tokens_from_proto,
)
from services.gateway.speech_params import (
    Conversion,
    PiperChoice,
    Sampling,
    Speaker,
    SpeakerTokens,
)

INSTALL_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class StageResult:
    audio: PcmAudio
    seconds: float
    first_audio_seconds: float
    extra: str = ""  # the speaker id a TTS run cached, if any
    engine: int = 0  # the TTS engine that spoke (a voice.v1.Engine value)
    notes: tuple[str, ...] = ()  # what the TTS engine ignored
    tokens: SpeakerTokens | None = None  # the clip's tokens, when a TTS run encoded one


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

    async def say(self, text: str, speaker: Speaker, sampling: Sampling, engine: int,
                  piper: PiperChoice) -> StageResult:
        """``text`` spoken by ``speaker`` (a sentence, or a whole text)."""
        return await self.synthesize(tts_pb2.SynthesizeSpeechRequest(
            text=text, speaker=speaker_to_proto(speaker), sampling=sampling_to_proto(sampling),
            engine=engine, piper=piper_to_proto(piper),
        ))

    async def synthesize(self, request: tts_pb2.SynthesizeSpeechRequest) -> StageResult:
        """The TTS service's own request, as a client of the gateway sent it."""
        start = time.perf_counter()
        first = None
        pieces: list[PcmAudio] = []
        speaker_id = ""
        engine, notes = 0, ()
        tokens = None
        async for reply in self.stub.Synthesize(request):
            if first is None:
                first = time.perf_counter() - start
                engine, notes = reply.engine, tuple(reply.notes)
            speaker_id = speaker_id or reply.speaker_id
            if tokens is None and reply.HasField("speaker_tokens"):
                tokens = tokens_from_proto(reply.speaker_tokens)
            if reply.HasField("chunk"):
                pieces.append(audio_from_proto(reply.chunk.audio, "tts chunk"))
        if not pieces:
            raise FailedPrecondition("the TTS service returned no audio")
        audio = join(pieces)
        elapsed = time.perf_counter() - start
        return StageResult(audio, elapsed, first or elapsed, speaker_id, engine, notes, tokens)

    async def health(self, timeout: float) -> Dependency:
        status, detail = await check_health(self._channel, timeout=timeout)
        return Dependency(self.name, self.target, status, detail)

    async def status(self, timeout: float) -> tts_pb2.TtsStatus:
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

    async def convert(self, params: Conversion, audio: PcmAudio) -> StageResult:
        start = time.perf_counter()
        reply = await self.stub.Convert(
            rvc_pb2.ConvertRequest(params=conversion_to_proto(params), audio=audio_to_proto(audio))
        )
        elapsed = time.perf_counter() - start
        return StageResult(audio_from_proto(reply.audio, "rvc audio"), elapsed, elapsed)

    async def convert_message(self, request: rvc_pb2.ConvertRequest) -> rvc_pb2.ConvertResponse:
        """The RVC service's own request and reply, passed through whole."""
        return await self.stub.Convert(request)

    async def status(self, timeout: float) -> rvc_pb2.RvcStatus:
        return await self.stub.GetStatus(rvc_pb2.GetRvcStatusRequest(), timeout=timeout)

    async def install(self, name: str, checkpoint: bytes, index: bytes,
                      replace: bool) -> rvc_pb2.VoiceModel:
        """Installs a WebUI voice, its files sent in pieces; the RVC service checks them."""

        def parts():
            header = rvc_pb2.InstallModelHeader(name=name, replace=replace)
            yield rvc_pb2.InstallModelRequest(header=header)
            for data, kind in ((checkpoint, "checkpoint"), (index, "index")):
                for start in range(0, len(data), INSTALL_CHUNK_BYTES):
                    yield rvc_pb2.InstallModelRequest(
                        **{kind: data[start:start + INSTALL_CHUNK_BYTES]})

        return await self.stub.InstallModel(parts())

    async def delete(self, name: str) -> None:
        await self.stub.DeleteModel(rvc_pb2.DeleteModelRequest(name=name))

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
