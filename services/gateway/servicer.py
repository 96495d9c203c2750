"""voice.v1.Gateway: protos in, pipeline, protos out. Nothing else."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
from google.api import httpbody_pb2
from voice.v1 import audio_pb2, gateway_pb2, gateway_pb2_grpc, rvc_pb2, tts_pb2

from services.common.audio import PcmAudio
from services.common.audio_proto import audio_to_proto
from services.gateway import legacy_http as legacy
from services.gateway.pipeline import Health, Pipeline
from services.gateway.stages import StageResult

VERSION = "0.1.0"


def _stage_timing(result: StageResult | None) -> audio_pb2.StageTiming:
    if result is None:
        return audio_pb2.StageTiming()
    return audio_pb2.StageTiming(
        compute_seconds=result.seconds,
        first_audio_seconds=result.first_audio_seconds,
        audio_seconds=result.audio.duration,
    )


def _health_to_proto(health: Health) -> gateway_pb2.GetHealthResponse:
    return gateway_pb2.GetHealthResponse(
        status="SERVING" if health.serving else "DEGRADED",
        dependencies=[
            gateway_pb2.DependencyHealth(
                name=d.name, address=d.address, status=d.status, detail=d.detail
            )
            for d in health.dependencies
        ],
    )


def _audio_headers(seconds: float, audio: PcmAudio) -> tuple[tuple[str, str], ...]:
    return (
        ("x-processing-time", f"{seconds:.3f}"),
        ("x-audio-duration", f"{audio.duration:.3f}"),
        ("x-sample-rate", str(audio.sample_rate)),
    )


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    def __init__(self, pipeline: Pipeline, health_timeout: float) -> None:
        self._pipeline = pipeline
        self._health_timeout = health_timeout

    async def Synthesize(self, request, context):
        result = await self._pipeline.synthesize(
            tts_pb2.SynthesizeSpeechRequest(
                text=request.text, speaker=request.speaker, sampling=request.sampling
            ),
            request.conversion,
            request.skip_rvc,
        )
        return gateway_pb2.SynthesizeResponse(
            audio=audio_to_proto(result.audio),
            timing=gateway_pb2.PipelineTiming(
                tts=_stage_timing(result.tts),
                rvc=_stage_timing(result.rvc),
                first_audio_seconds=result.first_audio_seconds,
                total_seconds=result.total_seconds,
            ),
            rvc_applied=result.rvc is not None,
            rvc_skipped_reason=result.rvc_skipped_reason,
        )

    async def SynthesizeStream(self, request, context):
        start = time.perf_counter()
        first = 0.0
        tts_seconds = rvc_seconds = tts_audio = rvc_audio = 0.0
        pieces = self._pipeline.synthesize_stream(
            tts_pb2.SynthesizeSpeechRequest(
                text=request.text, speaker=request.speaker, sampling=request.sampling
            ),
            request.conversion,
            request.skip_rvc,
        )
        async for piece in pieces:
            first = first or piece.first_audio_seconds
            tts_seconds += piece.tts.seconds
            tts_audio += piece.tts.audio.duration
            if piece.rvc is not None:
                rvc_seconds += piece.rvc.seconds
                rvc_audio += piece.rvc.audio.duration
            last = piece.index == piece.count - 1
            yield gateway_pb2.SynthesizeStreamResponse(
                chunk=audio_pb2.AudioChunk(
                    audio=audio_to_proto(piece.audio), sequence=piece.index, final=last
                ),
                sentence_index=piece.index,
                rvc_applied=piece.rvc is not None,
                timing=gateway_pb2.PipelineTiming(
                    tts=audio_pb2.StageTiming(compute_seconds=tts_seconds, audio_seconds=tts_audio),
                    rvc=audio_pb2.StageTiming(compute_seconds=rvc_seconds, audio_seconds=rvc_audio),
                    first_audio_seconds=first,
                    total_seconds=time.perf_counter() - start,
                )
                if last
                else None,
            )

    async def LegacySynthesize(self, request, context):
        form = legacy.parse_form(request.content_type, request.data)
        result = await self._pipeline.synthesize(
            legacy.tts_request(form), legacy.conversion_params(form), form.flag("skip_rvc")
        )
        await context.send_initial_metadata((
            ("x-tts-time", f"{result.tts.seconds:.3f}"),
            ("x-rvc-time", f"{result.rvc.seconds if result.rvc else 0.0:.3f}"),
            ("x-rvc-applied", "true" if result.rvc else "false"),
        ))
        return httpbody_pb2.HttpBody(content_type="audio/wav", data=legacy.wav_bytes(result.audio))

    async def LegacySynthesizeStream(self, request, context):
        form = legacy.parse_form(request.content_type, request.data)
        accept = dict(context.invocation_metadata()).get("accept", "")
        boundary = f"voice-{uuid.uuid4().hex}" if "multipart/mixed" in accept else ""
        pieces = self._pipeline.synthesize_stream(
            legacy.tts_request(form), legacy.conversion_params(form), form.flag("skip_rvc")
        )
        async for piece in pieces:
            if boundary:
                data = legacy.multipart_part(boundary, piece.audio, {
                    "X-Sentence-Index": str(piece.index),
                    "X-TTS-Time": f"{piece.tts.seconds:.3f}",
                    "X-RVC-Time": f"{piece.rvc.seconds if piece.rvc else 0.0:.3f}",
                })
                if piece.index == piece.count - 1:
                    data += f"--{boundary}--\r\n".encode()
                content_type = f"multipart/mixed; boundary={boundary}"
            else:
                # One open-ended WAV: the header once, then PCM as each sentence is ready.
                data = legacy.pcm16(piece.audio)
                if piece.index == 0:
                    data = legacy.wav_header(piece.audio.sample_rate, None) + data
                content_type = "audio/wav"
            yield httpbody_pb2.HttpBody(content_type=content_type, data=data)

    async def LegacyTts(self, request, context):
        form = legacy.parse_form(request.content_type, request.data)
        result = await self._pipeline.tts.synthesize(legacy.tts_request(form))
        await context.send_initial_metadata(_audio_headers(result.seconds, result.audio))
        return httpbody_pb2.HttpBody(content_type="audio/wav", data=legacy.wav_bytes(result.audio))

    async def LegacyRvc(self, request, context):
        form = legacy.parse_form(request.content_type, request.data)
        source = form.audio("audio")
        result = await self._pipeline.rvc.convert(legacy.conversion_params(form), source)
        await context.send_initial_metadata(_audio_headers(result.seconds, result.audio))
        return httpbody_pb2.HttpBody(content_type="audio/wav", data=legacy.wav_bytes(result.audio))

    async def Tts(self, request, context):
        result = await self._pipeline.tts.synthesize(request)
        return gateway_pb2.TtsResponse(
            audio=audio_to_proto(result.audio),
            timing=_stage_timing(result),
            speaker_id=result.extra,
        )

    async def Rvc(self, request, context):
        return await self._pipeline.rvc.stub.Convert(request)

    async def ListVoices(self, request, context):
        models = await self._pipeline.rvc.voices()
        return gateway_pb2.ListVoicesResponse(
            voices=[
                gateway_pb2.Voice(
                    name=m.name, rvc_model=m.name, is_default=m.name == models.default_model
                )
                for m in models.models
            ]
        )

    async def GetHealth(self, request, context):
        return _health_to_proto(await self._pipeline.health(self._health_timeout))

    async def GetStatus(self, request, context):
        # A stage that cannot report leaves its section empty; health says why.
        health, tts, rvc = await asyncio.gather(
            self._pipeline.health(self._health_timeout),
            self._pipeline.tts.stub.GetStatus(
                tts_pb2.GetTtsStatusRequest(), timeout=self._health_timeout
            ),
            self._pipeline.rvc.stub.GetStatus(
                rvc_pb2.GetRvcStatusRequest(), timeout=self._health_timeout
            ),
            return_exceptions=True,
        )
        if isinstance(health, BaseException):
            raise health
        return gateway_pb2.GetStatusResponse(
            health=_health_to_proto(health),
            tts=None if isinstance(tts, grpc.aio.AioRpcError) else tts,
            rvc=None if isinstance(rvc, grpc.aio.AioRpcError) else rvc,
            version=VERSION,
        )
