"""voice.v1.Gateway: protos in, pipeline, protos out. Nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import grpc
from google.api import httpbody_pb2
from voice.v1 import audio_pb2, gateway_pb2, gateway_pb2_grpc, rvc_pb2, tts_pb2

from services.common.audio import resample
from services.common.audio_proto import audio_to_proto
from services.common.errors import Unimplemented
from services.common.metrics import ServerMetrics
from services.gateway import audio_formats as formats
from services.gateway import jobs, legacy_status, legacy_stream, openai_speech, stream_abort
from services.gateway import legacy_http as legacy
from services.gateway.pipeline import Pipeline
from services.gateway.results import Health, Piece
from services.gateway.stages import StageResult
from services.gateway.voices import VoiceBook

VERSION = "0.1.0"
SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name


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


_ENGINE_NAMES = {tts_pb2.ENGINE_SPARK: "spark", tts_pb2.ENGINE_PIPER: "piper"}


def _engine_headers(result: StageResult) -> tuple[tuple[str, str], ...]:
    """X-TTS-Engine, and X-TTS-Notes (what the engine ignored), for a TTS result."""
    if result.engine not in _ENGINE_NAMES:
        return ()
    headers = (("x-tts-engine", _ENGINE_NAMES[result.engine]),)
    if result.notes:
        headers += (("x-tts-notes", "; ".join(result.notes)),)
    return headers


async def _legacy_audio(context, result: StageResult, fmt: str, sample_rate: int,
                        headers: tuple[tuple[str, str], ...] = ()):
    """One stage's audio as the old API answered it: a file and X-* headers."""
    formats.check_sample_rate(sample_rate)
    audio = resample(result.audio, sample_rate) if sample_rate else result.audio
    await context.send_initial_metadata((
        ("x-processing-time", f"{result.seconds:.3f}"),
        ("x-audio-duration", f"{audio.duration:.3f}"),
        ("x-sample-rate", str(formats.encoded_rate(fmt, audio.sample_rate))),
        *headers,
        *_engine_headers(result),
    ))
    return httpbody_pb2.HttpBody(
        content_type=formats.content_type(fmt), data=formats.encode(audio, fmt)
    )


async def _encoded_stream(
    pieces: AsyncIterator[Piece], fmt: str, context
) -> AsyncIterator[httpbody_pb2.HttpBody]:
    """Pieces of speech as one file in ``fmt``, sent as soon as the encoder yields bytes.

    Headers go out with the first sentence, so a request that fails before
    any audio still gets its error status.
    """
    encoder = None
    try:
        async with contextlib.aclosing(pieces):
            async for piece in pieces:
                if encoder is None:
                    encoder = formats.StreamEncoder(fmt, piece.audio.sample_rate)
                    await context.send_initial_metadata(
                        (("x-sample-rate", str(encoder.sample_rate)), *_engine_headers(piece.tts))
                    )
                data = encoder.write(piece.audio)
                if data:
                    yield httpbody_pb2.HttpBody(content_type=encoder.content_type, data=data)
        if encoder is not None:
            tail, encoder = encoder.close(), None
            if tail:
                yield httpbody_pb2.HttpBody(content_type=formats.content_type(fmt), data=tail)
    finally:
        if encoder is not None:  # the caller left or the pipeline failed: free the codec
            encoder.close()


async def _engine_announced(pieces: AsyncIterator[Piece], context) -> AsyncIterator[Piece]:
    """``pieces``, with X-TTS-Engine (and X-TTS-Notes) sent as headers before the first.

    The multipart and SSE streams have one status line for all their sentences:
    the first sentence's engine speaks every one (one profile per request).
    """
    first = True
    async with contextlib.aclosing(pieces):
        async for piece in pieces:
            if first:
                first = False
                await context.send_initial_metadata(_engine_headers(piece.tts))
            yield piece


def _timing_trailers(context, timing: gateway_pb2.PipelineTiming) -> None:
    """Per-stage seconds as trailing metadata, beside what the interceptor put there."""
    pairs = (
        ("x-tts-seconds", timing.tts.compute_seconds),
        ("x-rvc-seconds", timing.rvc.compute_seconds),
        ("x-first-audio-seconds", timing.first_audio_seconds),
        ("x-total-seconds", timing.total_seconds),
    )
    existing = tuple(context.trailing_metadata() or ())
    context.set_trailing_metadata(existing + tuple((k, f"{v:.3f}") for k, v in pairs))


def _rvc_seconds(result: StageResult | None) -> str:
    return f"{result.seconds if result else 0.0:.3f}"


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    def __init__(
        self,
        pipeline: Pipeline,
        voices: VoiceBook,
        health_timeout: float,
        metrics: ServerMetrics | None = None,
        max_reference_seconds: float | None = None,
        max_audio_seconds: float | None = None,
    ) -> None:
        self._pipeline = pipeline
        # Upload limits (TTS_MAX_REFERENCE_SECONDS, RVC_MAX_AUDIO_SECONDS); None: none.
        self._max_reference_seconds = max_reference_seconds
        self._max_audio_seconds = max_audio_seconds
        self._voices = voices
        self._health_timeout = health_timeout
        self._metrics = metrics
        self._started = time.monotonic()

    async def Synthesize(self, request, context):
        result = await self._pipeline.synthesize(
            jobs.from_request(self._voices, request), rpc="Synthesize"
        )
        timing = gateway_pb2.PipelineTiming(
            tts=_stage_timing(result.tts),
            rvc=_stage_timing(result.rvc),
            first_audio_seconds=result.first_audio_seconds,
            total_seconds=result.total_seconds,
        )
        _timing_trailers(context, timing)
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
        pieces = self._pipeline.synthesize_stream(
            jobs.from_request(self._voices, request), rpc="SynthesizeStream"
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
                _timing_trailers(context, timing)
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

    async def LegacySynthesize(self, request, context):
        form = legacy.parse_form(request.content_type, request.data)
        fmt = legacy.response_format(form)
        result = await self._pipeline.synthesize(
            legacy.job(form, self._voices, self._max_reference_seconds), rpc="LegacySynthesize"
        )
        await context.send_initial_metadata((
            ("x-tts-time", f"{result.tts.seconds:.3f}"),
            ("x-rvc-time", _rvc_seconds(result.rvc)),
            ("x-total-time", f"{result.total_seconds:.3f}"),
            ("x-audio-duration", f"{result.audio.duration:.3f}"),
            ("x-sentences", str(result.sentences)),
            ("x-rvc-applied", "true" if result.rvc else "false"),
            ("x-sample-rate", str(formats.encoded_rate(fmt, result.audio.sample_rate))),
            *_engine_headers(result.tts),
        ))
        return httpbody_pb2.HttpBody(
            content_type=formats.content_type(fmt), data=formats.encode(result.audio, fmt)
        )

    @stream_abort.guard  # a failure after the first response resets a REST one
    async def LegacySynthesizeStream(self, request, context):
        form = legacy.parse_form(request.content_type, request.data)
        fmt = legacy.response_format(form)
        accept = dict(context.invocation_metadata()).get("accept", "")
        pieces = self._pipeline.synthesize_stream(
            legacy.job(form, self._voices, self._max_reference_seconds), rpc="LegacySynthesizeStream"
        )
        if legacy_stream.wants_one_file(accept, form.text("response_format")):
            # One open-ended file: the container's header, then audio as each sentence is ready.
            async for body in _encoded_stream(pieces, fmt, context):
                yield body
            return
        async for data in legacy_stream.multipart_parts(_engine_announced(pieces, context), fmt):
            yield httpbody_pb2.HttpBody(content_type=legacy_stream.MULTIPART_TYPE, data=data)

    @stream_abort.guard  # a failure after the first response resets a REST one
    async def LegacySynthesizeSse(self, request, context):
        form = legacy.parse_form(request.content_type, request.data)
        fmt = legacy.response_format(form)
        pieces = self._pipeline.synthesize_stream(
            legacy.job(form, self._voices, self._max_reference_seconds), rpc="LegacySynthesizeSse"
        )
        async for data in legacy_stream.sse_events(_engine_announced(pieces, context), fmt):
            yield httpbody_pb2.HttpBody(content_type=legacy_stream.SSE_TYPE, data=data)

    async def LegacyTts(self, request, context):
        form = legacy.parse_form(request.content_type, request.data)
        fmt = legacy.response_format(form)
        job = legacy.job(form, self._voices, self._max_reference_seconds)
        result = await self._pipeline.tts.synthesize(job.tts_request(job.text))
        return await _legacy_audio(context, result, fmt, job.sample_rate)

    async def LegacyRvc(self, request, context):
        form = legacy.parse_form(request.content_type, request.data)
        fmt = legacy.response_format(form)
        source = form.audio("audio", max_seconds=self._max_audio_seconds,
                            limit="RVC_MAX_AUDIO_SECONDS")
        result = await self._pipeline.rvc.convert(legacy.rvc_params(form, self._voices), source)
        return await _legacy_audio(context, result, fmt, form.number("sample_rate", int, 0),
                                   (("x-rvc-time", _rvc_seconds(result)),))

    async def GetLegacyHealth(self, request, context):
        health = await self._pipeline.health(self._health_timeout)
        return legacy_status.legacy_health(health, _health_to_proto(health))

    async def GetLegacyConfig(self, request, context):
        return legacy_status.legacy_config(legacy_status.default_profile(self._voices))

    async def LegacyChangeConfig(self, request, context):
        raise Unimplemented(legacy_status.CONFIG_IS_READ_ONLY)

    @stream_abort.guard  # a failure after the first response resets a REST one
    async def CreateSpeech(self, request, context):
        speech = openai_speech.parse_request(request.content_type, request.data)
        job = jobs.build_job(
            self._voices, speech.voice, speech.input,
            sampling=tts_pb2.SamplingParams(seed=speech.seed) if speech.seed is not None else None,
            sample_rate=speech.sample_rate, speed=speech.speed,
        )
        pieces = self._pipeline.synthesize_stream(job, rpc="CreateSpeech")
        if speech.stream_format == "audio":
            async for body in _encoded_stream(pieces, speech.response_format, context):
                yield body
            return
        async for body in _encoded_stream(pieces, speech.response_format, context):
            yield httpbody_pb2.HttpBody(
                content_type="text/event-stream", data=openai_speech.audio_delta(body.data)
            )
        yield httpbody_pb2.HttpBody(
            content_type="text/event-stream", data=openai_speech.audio_done(len(speech.input))
        )

    async def Tts(self, request, context):
        result = await self._pipeline.tts.synthesize(request)
        return gateway_pb2.TtsResponse(
            audio=audio_to_proto(result.audio),
            timing=_stage_timing(result),
            speaker_id=result.extra,
            engine=result.engine,
            notes=result.notes,
        )

    async def Rvc(self, request, context):
        return await self._pipeline.rvc.stub.Convert(request)

    async def ListVoices(self, request, context):
        return gateway_pb2.ListVoicesResponse(voices=self._voices.profiles())

    async def GetHealth(self, request, context):
        return _health_to_proto(await self._pipeline.health(self._health_timeout))

    async def GetStatus(self, request, context):
        # A stage that cannot report leaves its section empty; health says why.
        health, tts, rvc, rvc_model = await asyncio.gather(
            self._pipeline.health(self._health_timeout),
            self._pipeline.tts.stub.GetStatus(
                tts_pb2.GetTtsStatusRequest(), timeout=self._health_timeout
            ),
            self._pipeline.rvc.stub.GetStatus(
                rvc_pb2.GetRvcStatusRequest(), timeout=self._health_timeout
            ),
            legacy_status.default_rvc_model(self._voices, self._pipeline.rvc, self._health_timeout),
            return_exceptions=True,
        )
        if isinstance(health, BaseException):
            raise health
        tts = None if isinstance(tts, grpc.aio.AioRpcError) else tts
        rvc = None if isinstance(rvc, grpc.aio.AioRpcError) else rvc
        counts = self._metrics.handled_counts(SERVICE_NAME) if self._metrics else []
        uptime = time.monotonic() - self._started
        return gateway_pb2.GetStatusResponse(
            health=_health_to_proto(health),
            tts=tts,
            rvc=rvc,
            version=VERSION,
            uptime_seconds=uptime,
            requests=[
                gateway_pb2.RequestCount(method=method, code=code, count=count)
                for method, code, count in counts
            ],
            voices=self._voices.profiles(),
            **legacy_status.old_status_fields(
                health, tts, rvc, "" if isinstance(rvc_model, Exception) else rvc_model,
                counts, uptime,
            ),
        )
