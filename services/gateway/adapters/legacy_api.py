"""The old server's HTTP API (its routes arrive as ``google.api.HttpBody`` through
Envoy): its forms in, the core, its files and X-* headers out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from google.api import httpbody_pb2

from services.common.audio import resample
from services.common.errors import Unimplemented
from services.gateway import audio_formats as formats
from services.gateway import legacy_http as legacy
from services.gateway import legacy_status, legacy_stream, stream_abort
from services.gateway.adapters.http_audio import encoded_stream, engine_headers
from services.gateway.adapters.replies import health_message
from services.gateway.results import Piece
from services.gateway.speech import SpeechService
from services.gateway.stages import StageResult


async def _audio_file(context, result: StageResult, fmt: str, sample_rate: int,
                      headers: tuple[tuple[str, str], ...] = ()):
    """One stage's audio as the old API answered it: a file and X-* headers."""
    formats.check_sample_rate(sample_rate)
    audio = resample(result.audio, sample_rate) if sample_rate else result.audio
    await context.send_initial_metadata((
        ("x-processing-time", f"{result.seconds:.3f}"),
        ("x-audio-duration", f"{audio.duration:.3f}"),
        ("x-sample-rate", str(formats.encoded_rate(fmt, audio.sample_rate))),
        *headers,
        *engine_headers(result),
    ))
    return httpbody_pb2.HttpBody(
        content_type=formats.content_type(fmt), data=formats.encode(audio, fmt)
    )


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
                await context.send_initial_metadata(engine_headers(piece.tts))
            yield piece


def _rvc_seconds(result: StageResult | None) -> str:
    return f"{result.seconds if result else 0.0:.3f}"


class LegacyRpcs:
    _speech: SpeechService

    def _job(self, form: legacy.Form):
        return legacy.job(form, self._speech.voices, self._speech.max_reference_seconds)

    async def LegacySynthesize(self, request, context):
        form = legacy.parse_form(request.content_type, request.data)
        fmt = legacy.response_format(form)
        result = await self._speech.synthesize(self._job(form), rpc="LegacySynthesize")
        await context.send_initial_metadata((
            ("x-tts-time", f"{result.tts.seconds:.3f}"),
            ("x-rvc-time", _rvc_seconds(result.rvc)),
            ("x-total-time", f"{result.total_seconds:.3f}"),
            ("x-audio-duration", f"{result.audio.duration:.3f}"),
            ("x-sentences", str(result.sentences)),
            ("x-rvc-applied", "true" if result.rvc else "false"),
            ("x-sample-rate", str(formats.encoded_rate(fmt, result.audio.sample_rate))),
            *engine_headers(result.tts),
        ))
        return httpbody_pb2.HttpBody(
            content_type=formats.content_type(fmt), data=formats.encode(result.audio, fmt)
        )

    @stream_abort.guard  # a failure after the first response resets a REST one
    async def LegacySynthesizeStream(self, request, context):
        form = legacy.parse_form(request.content_type, request.data)
        fmt = legacy.response_format(form)
        accept = dict(context.invocation_metadata()).get("accept", "")
        pieces = self._speech.stream(self._job(form), rpc="LegacySynthesizeStream")
        if legacy_stream.wants_one_file(accept, form.text("response_format")):
            # One open-ended file: the container's header, then audio as each sentence is ready.
            async for body in encoded_stream(pieces, fmt, context):
                yield body
            return
        async for data in legacy_stream.multipart_parts(_engine_announced(pieces, context), fmt):
            yield httpbody_pb2.HttpBody(content_type=legacy_stream.MULTIPART_TYPE, data=data)

    @stream_abort.guard  # a failure after the first response resets a REST one
    async def LegacySynthesizeSse(self, request, context):
        form = legacy.parse_form(request.content_type, request.data)
        fmt = legacy.response_format(form)
        pieces = self._speech.stream(self._job(form), rpc="LegacySynthesizeSse")
        async for data in legacy_stream.sse_events(_engine_announced(pieces, context), fmt):
            yield httpbody_pb2.HttpBody(content_type=legacy_stream.SSE_TYPE, data=data)

    async def LegacyTts(self, request, context):
        form = legacy.parse_form(request.content_type, request.data)
        fmt = legacy.response_format(form)
        job = self._job(form)
        result = await self._speech.say(job)
        return await _audio_file(context, result, fmt, job.sample_rate)

    async def LegacyRvc(self, request, context):
        form = legacy.parse_form(request.content_type, request.data)
        fmt = legacy.response_format(form)
        source = form.audio("audio", max_seconds=self._speech.max_audio_seconds,
                            limit="RVC_MAX_AUDIO_SECONDS")
        result = await self._speech.convert(legacy.rvc_params(form, self._speech.voices), source)
        return await _audio_file(context, result, fmt, form.number("sample_rate", int, 0),
                                 (("x-rvc-time", _rvc_seconds(result)),))

    async def GetLegacyHealth(self, request, context):
        health = await self._speech.health()
        return legacy_status.legacy_health(health, health_message(health))

    async def GetLegacyConfig(self, request, context):
        return legacy_status.legacy_config(self._speech.voices.usable_default())

    async def LegacyChangeConfig(self, request, context):
        raise Unimplemented(legacy_status.CONFIG_IS_READ_ONLY)
