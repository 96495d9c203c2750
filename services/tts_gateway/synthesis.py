"""The TTS core: checks a request, then has its engine on Triton (Spark TTS or
Piper) synthesise it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from services.common.audio import PcmAudio, resample, to_mono
from services.common.errors import ServiceError, Unavailable
from services.common.request_context import time_remaining
from services.common.seeds import as_int64
from services.tts_gateway.metrics import TtsMetrics
from services.tts_gateway.request import (
    CachedSpeaker,
    ControlledSpeaker,
    Engine,
    ReferenceSpeaker,
    SpeechRequest,
    TokenSpeaker,
)
from services.tts_gateway.settings import TtsSettings
from services.tts_gateway.triton import Triton

SPARK_MODEL = "spark_tts"
PIPER_MODEL = "piper"
MODELS = {Engine.SPARK: SPARK_MODEL, Engine.PIPER: PIPER_MODEL}
# How often a request waiting for Triton to come back asks whether it is ready.
_READY_POLL_SECONDS = 0.5
SPARK_RATE = 16_000
log = logging.getLogger(__name__)
OUTPUTS = {
    Engine.SPARK: ["waveform", "sample_rate", "speaker_id", "semantic_tokens", "final",
                   "speaker_global_ids", "speaker_semantic_ids", "speaker_codec"],
    Engine.PIPER: ["waveform", "sample_rate", "voice", "final"],
}
# How long a status call waits for Piper's voice list.
_VOICES_TIMEOUT = 5.0


@dataclass(frozen=True)
class SpeechChunk:
    audio: PcmAudio
    final: bool
    speaker_id: str = ""
    semantic_tokens: int = 0
    engine: Engine = Engine.SPARK
    notes: tuple[str, ...] = ()
    tokens: TokenSpeaker | None = None  # the clip's tokens, on a first chunk


@dataclass(frozen=True)
class EngineState:
    engine: Engine
    ready: bool
    voices: tuple[str, ...] = ()
    default_voice: str = ""


def _text(value: str) -> np.ndarray:
    return np.array([value.encode("utf-8")], dtype=np.object_)


def token_cap(text: str, settings: TtsSettings) -> int:
    """Semantic-token cap for a request that sets none."""
    wanted = settings.min_tokens + int(len(text) * settings.tokens_per_char)
    return min(settings.max_tokens, wanted)


def _string(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def reply_tokens(reply: dict[str, np.ndarray], request: SpeechRequest) -> TokenSpeaker | None:
    """The clip's tokens a spark_tts response carries (its first, for a clip or a
    cached speaker), with the request's transcript; None when it carries none."""
    global_ids = reply.get("speaker_global_ids")
    if global_ids is None or not global_ids.size:
        return None
    semantic_ids = reply.get("speaker_semantic_ids")
    codec = reply.get("speaker_codec")
    speaker = request.speaker
    return TokenSpeaker(
        tuple(int(i) for i in global_ids.reshape(-1)),
        () if semantic_ids is None else tuple(int(i) for i in semantic_ids.reshape(-1)),
        speaker.transcript.strip() if isinstance(speaker, ReferenceSpeaker) else "",
        "" if codec is None or not codec.size else _string(codec.reshape(-1)[0]),
    )


def piper_inputs(request: SpeechRequest) -> dict[str, np.ndarray]:
    """The piper model's input tensors for a checked request."""
    inputs = {"text": _text(request.text)}
    choice = request.piper
    if choice.voice:
        inputs["voice"] = _text(choice.voice)
    if choice.speaker is not None:
        inputs["speaker"] = np.array([choice.speaker], dtype=np.int32)
    if choice.length_scale is not None:
        inputs["length_scale"] = np.array([choice.length_scale], dtype=np.float32)
    return inputs


def triton_inputs(
    request: SpeechRequest, streaming: bool, default_max_tokens: int = 3000
) -> dict[str, np.ndarray]:
    """The spark_tts model's input tensors for a checked request."""
    inputs = {"text": _text(request.text), "streaming": np.array([streaming])}
    speaker = request.speaker
    if isinstance(speaker, ReferenceSpeaker):
        reference = resample(to_mono(speaker.audio), SPARK_RATE)
        inputs["reference_wav"] = reference.samples.astype(np.float32)
        if speaker.transcript.strip():
            inputs["reference_text"] = _text(speaker.transcript.strip())
    elif isinstance(speaker, CachedSpeaker):
        inputs["speaker_id"] = _text(speaker.speaker_id)
    elif isinstance(speaker, TokenSpeaker):
        inputs["global_ids"] = np.array(speaker.global_ids, dtype=np.int32)
        inputs["semantic_ids"] = np.array(speaker.semantic_ids, dtype=np.int32)
        inputs["codec"] = _text(speaker.codec)
        if speaker.transcript.strip():
            inputs["reference_text"] = _text(speaker.transcript.strip())
    elif isinstance(speaker, ControlledSpeaker):
        inputs["gender"] = _text(speaker.gender.value)
        inputs["pitch"] = _text(speaker.pitch.value)
        inputs["speed"] = _text(speaker.speed.value)
    sampling = request.sampling
    for name, value, dtype in (
        ("temperature", sampling.temperature, np.float32),
        ("top_k", sampling.top_k, np.int32),
        ("top_p", sampling.top_p, np.float32),
        ("max_tokens", sampling.max_tokens or default_max_tokens, np.int32),
        # Triton's seed tensor is INT64: the uint64 seed travels as its 64 bits.
        ("seed", None if sampling.seed is None else as_int64(sampling.seed), np.int64),
    ):
        if value is not None:
            inputs[name] = np.array([value], dtype=dtype)
    return inputs


class TtsEngine:
    """Synthesis through Triton's spark_tts or piper model. A Triton that is
    restarting (a crash, a rollout) is waited for, up to ``triton_wait_seconds``
    and the caller's deadline, and a stream that fails as Triton goes down before
    it produced any audio is sent again once: only audio already on its way is lost."""

    def __init__(self, settings: TtsSettings, triton: Triton, metrics: TtsMetrics) -> None:
        self._settings = settings
        self.triton = triton
        self.metrics = metrics
        self.in_flight = 0
        self.default_engine = Engine(settings.default_engine)

    async def synthesize(
        self, request: SpeechRequest, streaming: bool = True
    ) -> AsyncIterator[SpeechChunk]:
        engine, notes = request.plan(self.default_engine)
        request.check(self._settings.max_text_chars, self._settings.max_reference_seconds, engine)
        model = MODELS[engine]
        await self._wait_for_triton(model)
        start = time.perf_counter()
        first: float | None = None
        audio_seconds = 0.0
        tokens = 0
        last_rate = SPARK_RATE
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            if engine is Engine.PIPER:
                inputs = piper_inputs(request)
            else:
                inputs = triton_inputs(request, streaming, token_cap(request.text, self._settings))
            remaining = time_remaining()
            if remaining is None:
                remaining = self._settings.request_timeout_seconds
            async for reply in self._replies(model, inputs, OUTPUTS[engine], remaining):
                samples = reply["waveform"].astype(np.float32).reshape(-1)
                rate = int(reply["sample_rate"].reshape(-1)[0])
                final = bool(reply["final"].reshape(-1)[0])
                speaker = ""
                clip_tokens = None
                if engine is Engine.SPARK:
                    tokens = int(reply["semantic_tokens"].reshape(-1)[0])
                    speaker = _string(reply["speaker_id"].reshape(-1)[0])
                    clip_tokens = reply_tokens(reply, request)
                if not samples.size and not final:
                    continue
                rate = rate if rate > 0 else last_rate  # an empty last response may carry none
                last_rate = rate
                if first is None:
                    first = time.perf_counter() - start
                    self.metrics.first_audio.observe(first)
                audio_seconds += samples.size / rate
                yield SpeechChunk(PcmAudio(samples, rate), final, speaker, tokens, engine, notes,
                                  clip_tokens)
                notes = ()  # said once, on the first chunk
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()
        elapsed = time.perf_counter() - start
        self.metrics.record_run(elapsed, audio_seconds, tokens)

    async def engines(self, state) -> list[EngineState]:
        """Each engine: whether Triton serves its model now, and Piper's voices."""
        ready = {m.name for m in state.models if m.ready}
        engines = [EngineState(Engine.SPARK, state.ready and SPARK_MODEL in ready)]
        piper_ready = state.ready and PIPER_MODEL in ready
        voices, default = (), ""
        if piper_ready:
            try:
                async for reply in self.triton.stream(
                    PIPER_MODEL, {"text": _text(""), "list_voices": np.array([True])},
                    ["voices", "voice", "final"], _VOICES_TIMEOUT,
                ):
                    voices = tuple(_string(v) for v in reply["voices"].reshape(-1))
                    default = _string(reply["voice"].reshape(-1)[0])
            except ServiceError as exc:  # the status reports it; it does not fail
                log.warning("could not list Piper's voices: %s", exc.message)
                piper_ready = False
        engines.append(EngineState(Engine.PIPER, piper_ready, voices, default))
        return engines

    async def _wait_for_triton(self, model: str) -> None:
        wait = self._settings.triton_wait_seconds
        remaining = time_remaining()
        if remaining is not None:
            wait = min(wait, remaining / 2)  # leave the other half for the synthesis
        deadline = time.monotonic() + wait
        while not await self.triton.ready(model):
            if time.monotonic() >= deadline:
                raise Unavailable(f"Triton at {self.triton.url} has no ready {model} model")
            await asyncio.sleep(_READY_POLL_SECONDS)  # no event to wait on: poll

    async def _replies(
        self, model: str, inputs: dict[str, np.ndarray], outputs: list[str], timeout: float
    ) -> AsyncIterator[dict[str, np.ndarray]]:
        try:
            async for reply in self.triton.stream(model, inputs, outputs, timeout):
                yield reply
                inputs = None  # audio has left: no second attempt from here on
        except Unavailable:
            if inputs is None:
                raise
            log.warning("Triton went away before the first audio; sending the request again")
            await self._wait_for_triton(model)
            remaining = time_remaining()
            async for reply in self.triton.stream(
                model, inputs, outputs, timeout if remaining is None else remaining
            ):
                yield reply
