"""OpenAI's speech endpoint (``POST /v1/audio/speech``, as ``google.api.HttpBody``
through Envoy): its JSON in, the core, encoded audio or its SSE events out."""

from __future__ import annotations

from google.api import httpbody_pb2

from services.gateway import jobs, openai_speech, stream_abort
from services.gateway.adapters.http_audio import encoded_stream
from services.gateway.speech import SpeechService
from services.gateway.speech_params import Sampling


class OpenAiRpcs:
    _speech: SpeechService

    @stream_abort.guard  # a failure after the first response resets a REST one
    async def CreateSpeech(self, request, context):
        speech = openai_speech.parse_request(request.content_type, request.data)
        job = jobs.build_job(
            self._speech.voices, speech.voice, speech.input,
            sampling=Sampling(seed=speech.seed),
            sample_rate=speech.sample_rate, speed=speech.speed,
        )
        pieces = self._speech.stream(job, rpc="CreateSpeech")
        if speech.stream_format == "audio":
            async for body in encoded_stream(pieces, speech.response_format, context):
                yield body
            return
        async for body in encoded_stream(pieces, speech.response_format, context):
            yield httpbody_pb2.HttpBody(
                content_type="text/event-stream", data=openai_speech.audio_delta(body.data)
            )
        yield httpbody_pb2.HttpBody(
            content_type="text/event-stream", data=openai_speech.audio_done(len(speech.input))
        )
