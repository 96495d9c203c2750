"""voice.v1.Gateway's own RPCs: protos in, the core, protos out."""

from __future__ import annotations

import time

from voice.v1 import audio_pb2, gateway_pb2

from services.common.audio_proto import audio_to_proto
from services.gateway import legacy_status, stream_abort
from services.gateway.adapters.replies import (
    health_message,
    stage_timing,
    timing_trailers,
    voice_message,
)
from services.gateway.jobs import SpeechJob, build_job
from services.gateway.params_proto import (
    conversion_from_proto,
    piper_from_proto,
    sampling_from_proto,
    speaker_from_proto,
)
from services.gateway.speech import SpeechService

VERSION = "0.1.0"
SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name


def job_from(speech: SpeechService, request: gateway_pb2.SynthesizeRequest) -> SpeechJob:
    return build_job(
        speech.voices,
        request.voice,
        request.text,
        speaker_from_proto(request.speaker),
        sampling_from_proto(request.sampling),
        conversion_from_proto(request.conversion),
        request.skip_rvc,
        request.sample_rate,
        engine=request.engine,
        piper=piper_from_proto(request.piper),
    )


class GatewayRpcs:
    _speech: SpeechService

    async def Synthesize(self, request, context):
        result = await self._speech.synthesize(
            job_from(self._speech, request), rpc="Synthesize"
        )
        timing = gateway_pb2.PipelineTiming(
            tts=stage_timing(result.tts),
            rvc=stage_timing(result.rvc),
            first_audio_seconds=result.first_audio_seconds,
            total_seconds=result.total_seconds,
        )
        timing_trailers(context, timing)
        return gateway_pb2.SynthesizeResponse(
            audio=audio_to_proto(result.audio),
            timing=timing,
            rvc_applied=result.rvc is not None,
            rvc_skipped_reason=result.rvc_skipped_reason,
            engine=result.tts.engine,
            notes=result.tts.notes,
        )

    @stream_abort.guard  # a failure after the first response resets a REST one
    async def SynthesizeStream(self, request, context):
        start = time.perf_counter()
        first = 0.0
        tts_seconds = rvc_seconds = tts_audio = rvc_audio = 0.0
        pieces = self._speech.stream(
            job_from(self._speech, request), rpc="SynthesizeStream"
        )
        async for piece in pieces:
            first = first or piece.first_audio_seconds
            tts_seconds += piece.tts.seconds
            tts_audio += piece.tts.audio.duration
            if piece.rvc is not None:
                rvc_seconds += piece.rvc.seconds
                rvc_audio += piece.rvc.audio.duration
            last = piece.index == piece.count - 1
            timing = None
            if last:
                timing = gateway_pb2.PipelineTiming(
                    tts=audio_pb2.StageTiming(compute_seconds=tts_seconds, audio_seconds=tts_audio),
                    rvc=audio_pb2.StageTiming(compute_seconds=rvc_seconds, audio_seconds=rvc_audio),
                    first_audio_seconds=first,
                    total_seconds=time.perf_counter() - start,
                )
                timing_trailers(context, timing)
            reply = gateway_pb2.SynthesizeStreamResponse(
                chunk=audio_pb2.AudioChunk(
                    audio=audio_to_proto(piece.audio), sequence=piece.index, final=last
                ),
                sentence_index=piece.index,
                rvc_applied=piece.rvc is not None,
                timing=timing,
            )
            if piece.index == 0:
                reply.engine = piece.tts.engine
                reply.notes.extend(piece.tts.notes)
            yield reply

    async def Tts(self, request, context):
        result = await self._speech.speak(request)
        return gateway_pb2.TtsResponse(
            audio=audio_to_proto(result.audio),
            timing=stage_timing(result),
            speaker_id=result.extra,
            engine=result.engine,
            notes=result.notes,
        )

    async def Rvc(self, request, context):
        return await self._speech.convert_message(request)

    async def ListVoices(self, request, context):
        return gateway_pb2.ListVoicesResponse(
            voices=[voice_message(v) for v in self._speech.profiles()]
        )

    async def GetHealth(self, request, context):
        return health_message(await self._speech.health())

    async def GetStatus(self, request, context):
        # A stage that cannot report leaves its section empty; health says why.
        status = await self._speech.status()
        return gateway_pb2.GetStatusResponse(
            health=health_message(status.health),
            tts=status.tts,
            rvc=status.rvc,
            version=VERSION,
            uptime_seconds=status.uptime_seconds,
            requests=[
                gateway_pb2.RequestCount(method=method, code=code, count=count)
                for method, code, count in status.requests
            ],
            voices=[voice_message(v) for v in status.voices],
            **legacy_status.old_status_fields(
                status.health, status.tts, status.rvc, status.default_rvc_model,
                status.requests, status.uptime_seconds,
            ),
        )
