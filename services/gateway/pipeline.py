"""TTS then RVC for one request, with timings and the reason RVC was skipped."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import AsyncIterator, Callable

import grpc

from services.common.audio import resample
from services.common.errors import InvalidArgument
from services.gateway.jobs import SpeechJob
from services.gateway.metrics import GatewayMetrics
from services.gateway.results import SKIP_MESSAGES, Health, Piece, Synthesis
from services.gateway.sentences import split_sentences
from services.gateway.speech_params import Conversion, Engine, Reference, Speaker, SpeakerTokens
from services.gateway.stages import RvcStage, StageResult, TtsStage, join
from services.gateway.tempo import change_tempo

log = logging.getLogger(__name__)
# Keeps a voice profile's clip's tokens with the profile (VoiceLibrary.remember_tokens).
RememberTokens = Callable[[Reference, SpeakerTokens], object]


def _total(results: list[StageResult]) -> StageResult:
    joined = join([r.audio for r in results])
    notes = tuple(dict.fromkeys(note for r in results for note in r.notes))  # once each, in order
    return StageResult(
        joined, sum(r.seconds for r in results), results[0].first_audio_seconds, results[0].extra,
        results[0].engine, notes, results[0].tokens,
    )


class Pipeline:
    def __init__(
        self, tts: TtsStage, rvc: RvcStage, sentence_chars: int = 200, lookahead: int = 2,
        metrics: GatewayMetrics | None = None, max_text_chars: int = 20_000,
    ) -> None:
        self.tts = tts
        self.rvc = rvc
        self.metrics = metrics or GatewayMetrics()
        # Longest piece of text sent to TTS at once; sentences beyond it are cut at clauses.
        self.sentence_chars = sentence_chars
        # Sentences synthesised ahead of the one being converted.
        self.lookahead = lookahead
        # A whole request's text (GATEWAY_MAX_TEXT_CHARS); its sentences run in turn,
        # so this bounds how long one request can hold the pipeline.
        self.max_text_chars = max_text_chars
        # Told a profile's clip's tokens when a TTS run encoded the clip (or found it
        # cached), so that the profile speaks from them from then on; None: nobody.
        self.remember_tokens: RememberTokens | None = None

    async def _skip_reason(self, params: Conversion, skip_rvc: bool) -> str:
        """A key of SKIP_MESSAGES, or '' to convert."""
        if skip_rvc:
            return "requested"
        if params.model:
            return ""
        voices = await self.rvc.voices()
        if not voices.models:
            return "no_voice_installed"
        if not voices.default_model:
            return "no_default_voice"
        return ""

    async def synthesize(self, job: SpeechJob, rpc: str = "") -> Synthesis:
        """The whole text, sentence by sentence as ``synthesize_stream`` runs it, joined.

        ``rpc``, the gateway method serving this request, labels its metrics.
        """
        start = time.perf_counter()
        pieces = [piece async for piece in self.synthesize_stream(job, rpc)]
        last = pieces[-1]
        return Synthesis(
            audio=join([p.audio for p in pieces]),
            tts=_total([p.tts for p in pieces]),
            rvc=_total([p.rvc for p in pieces if p.rvc is not None]) if last.rvc else None,
            rvc_skipped_reason=last.rvc_skipped_reason,
            first_audio_seconds=pieces[0].first_audio_seconds,
            total_seconds=time.perf_counter() - start,
            sentences=len(pieces),
        )

    async def synthesize_stream(self, job: SpeechJob, rpc: str = "") -> AsyncIterator[Piece]:
        """Sentence k+1 is synthesised while sentence k is converted; pieces leave in order."""
        start = time.perf_counter()
        recorder = self.metrics.request(rpc)
        if len(job.text) > self.max_text_chars:
            raise InvalidArgument(
                f"text has {len(job.text)} characters; the limit is {self.max_text_chars} "
                "(GATEWAY_MAX_TEXT_CHARS)"
            )
        sentences = split_sentences(job.text, self.sentence_chars)
        if not sentences:
            raise InvalidArgument("text is empty")
        params = job.conversion
        # Ask RVC what it has while TTS works, so a skip costs no extra round trip.
        reason_task = asyncio.ensure_future(self._skip_reason(params, job.skip_rvc))
        spoken: asyncio.Queue = asyncio.Queue(maxsize=self.lookahead)
        producer = asyncio.ensure_future(self._speak(job, sentences, spoken))
        try:
            skipped = await reason_task
            reason = SKIP_MESSAGES.get(skipped, "")
            for index in range(len(sentences)):
                result = await spoken.get()
                if isinstance(result, BaseException):
                    raise result
                converted = None if reason else await self.rvc.convert(params, result.audio)
                audio = converted.audio if converted else result.audio
                piece = Piece(
                    index=index,
                    count=len(sentences),
                    audio=resample(audio, job.sample_rate) if job.sample_rate else audio,
                    tts=result,
                    rvc=converted,
                    rvc_skipped_reason=reason,
                    first_audio_seconds=time.perf_counter() - start,
                    text=sentences[index],
                )
                recorder.piece(piece, skipped)
                yield piece
        finally:
            # A caller that leaves (or fails) stops the TTS work still under way.
            reason_task.cancel()
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)

    async def _speak(self, job: SpeechJob, sentences: list[str], out: asyncio.Queue) -> None:
        """Synthesise each sentence in turn into ``out``; the first error ends the run.

        A speed other than 1 stretches the TTS audio before conversion, so RVC
        resynthesises the stretched speech instead of the stretch's artefacts.
        """
        speaker = job.speaker
        sampling = job.sampling
        if sampling.seed is None and job.engine != Engine.PIPER:
            # One seed for every sentence keeps the sampling of a request consistent.
            # Any uint64 (services/common/seeds.py).
            sampling = dataclasses.replace(sampling, seed=random.getrandbits(64))

        async def say(sentence: str, speaker: Speaker) -> StageResult:
            return await self.tts.say(sentence, speaker, sampling, job.engine, job.piper)

        base = job.speaker  # a clip's tokens leave it when the TTS side refuses them
        try:
            for sentence in sentences:
                try:
                    result = await say(sentence, speaker)
                except grpc.aio.AioRpcError as exc:
                    code = exc.code()
                    if code == grpc.StatusCode.FAILED_PRECONDITION and \
                            speaker.tokens is not None and speaker.reference is not None:
                        # Tokens of another audio tokenizer (new weights): the clip.
                        log.warning("the TTS service refused a voice's kept tokens (%s); "
                                    "speaking from its clip", exc.details())
                        base = dataclasses.replace(base, tokens=None)
                    elif code != grpc.StatusCode.NOT_FOUND or speaker is base:
                        raise
                    # Else the TTS side forgot the speaker it encoded for us (Triton
                    # restarted): encode the reference again and go on.
                    speaker = base
                    result = await say(sentence, speaker)
                if result.tokens is not None and speaker.tokens is None:
                    await self._remember(speaker.reference, result.tokens)
                if result.extra and speaker.source == "reference" and speaker.tokens is None:
                    # The first sentence encoded the reference; the rest reuse it by id.
                    speaker = Speaker(speaker_id=result.extra)
                if job.speed != 1.0:
                    stretched = await asyncio.to_thread(change_tempo, result.audio, job.speed)
                    result = dataclasses.replace(result, audio=stretched)
                await out.put(result)
        except Exception as exc:  # handed to the consumer, which raises it in order
            await out.put(exc)

    async def _remember(self, reference: Reference | None, tokens: SpeakerTokens) -> None:
        """Hands a profile's clip's tokens to ``remember_tokens``; a failure is logged."""
        if reference is None or not reference.origin or self.remember_tokens is None:
            return
        try:
            await asyncio.to_thread(self.remember_tokens, reference, tokens)
        except Exception:  # the speech goes on; the clip is encoded again next time
            log.exception("could not keep the tokens of voice %r", reference.origin)

    async def health(self, timeout: float) -> Health:
        dependencies = list(
            await asyncio.gather(self.tts.health(timeout), self.rvc.health(timeout))
        )
        return Health(all(d.status == "SERVING" for d in dependencies), dependencies)
