"""voice.v1.Gateway: protos in, pipeline, protos out. Nothing else."""

from __future__ import annotations

import asyncio
import time

import grpc
from voice.v1 import audio_pb2, gateway_pb2, gateway_pb2_grpc, rvc_pb2, tts_pb2

from services.common.audio_proto import audio_to_proto
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
