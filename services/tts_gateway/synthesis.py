"""The TTS core: checks a request, then has Spark TTS on Triton synthesise it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from services.common.audio import PcmAudio, resample, to_mono
from services.common.errors import Unavailable
from services.common.request_context import time_remaining
from services.tts_gateway.metrics import TtsMetrics
from services.tts_gateway.request import (
    CachedSpeaker,
    ControlledSpeaker,
    ReferenceSpeaker,
    SpeechRequest,
)
from services.tts_gateway.settings import TtsSettings
from services.tts_gateway.triton import Triton

SPARK_MODEL = "spark_tts"
# How often a request waiting for Triton to come back asks whether it is ready.
_READY_POLL_SECONDS = 0.5
SPARK_RATE = 16_000
log = logging.getLogger(__name__)
OUTPUTS = ["waveform", "sample_rate", "speaker_id", "semantic_tokens", "final"]


@dataclass(frozen=True)
class SpeechChunk:
    audio: PcmAudio
    final: bool
    speaker_id: str = ""
    semantic_tokens: int = 0


def _text(value: str) -> np.ndarray:
    return np.array([value.encode("utf-8")], dtype=np.object_)


def token_cap(text: str, settings: TtsSettings) -> int:
    """Semantic-token cap for a request that sets none."""
    wanted = settings.min_tokens + int(len(text) * settings.tokens_per_char)
    return min(settings.max_tokens, wanted)


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
        ("seed", sampling.seed, np.int64),
    ):
        if value is not None:
            inputs[name] = np.array([value], dtype=dtype)
    return inputs


class TtsEngine:
    """Synthesis through Triton's spark_tts model. A Triton that is restarting (a
    crash, a rollout) is waited for, up to ``triton_wait_seconds`` and the caller's
    deadline, and a stream that fails as Triton goes down before it produced any
    audio is sent again once: only audio already on its way is lost."""

    def __init__(self, settings: TtsSettings, triton: Triton, metrics: TtsMetrics) -> None:
        self._settings = settings
        self.triton = triton
        self.metrics = metrics
        self.in_flight = 0

    async def synthesize(
        self, request: SpeechRequest, streaming: bool = True
    ) -> AsyncIterator[SpeechChunk]:
        request.check(self._settings.max_text_chars, self._settings.max_reference_seconds)
        await self._wait_for_triton()
        start = time.perf_counter()
        first: float | None = None
        audio_seconds = 0.0
        tokens = 0
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            inputs = triton_inputs(request, streaming, token_cap(request.text, self._settings))
            remaining = time_remaining()
            if remaining is None:
                remaining = self._settings.request_timeout_seconds
            async for reply in self._replies(inputs, remaining):
                samples = reply["waveform"].astype(np.float32).reshape(-1)
                rate = int(reply["sample_rate"].reshape(-1)[0])
                final = bool(reply["final"].reshape(-1)[0])
                tokens = int(reply["semantic_tokens"].reshape(-1)[0])
                speaker = reply["speaker_id"].reshape(-1)[0]
                if first is None:
                    first = time.perf_counter() - start
                    self.metrics.first_audio.observe(first)
                audio_seconds += samples.size / rate
                yield SpeechChunk(
                    PcmAudio(samples, rate),
                    final,
                    speaker.decode() if isinstance(speaker, bytes) else str(speaker),
                    tokens,
                )
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()
        elapsed = time.perf_counter() - start
        self.metrics.record_run(elapsed, audio_seconds, tokens)

    async def _wait_for_triton(self) -> None:
        wait = self._settings.triton_wait_seconds
        remaining = time_remaining()
        if remaining is not None:
            wait = min(wait, remaining / 2)  # leave the other half for the synthesis
        deadline = time.monotonic() + wait
        while not await self.triton.ready(SPARK_MODEL):
            if time.monotonic() >= deadline:
                raise Unavailable(
                    f"Triton at {self.triton.url} has no ready {SPARK_MODEL} model")
            await asyncio.sleep(_READY_POLL_SECONDS)  # no event to wait on: poll

    async def _replies(
        self, inputs: dict[str, np.ndarray], timeout: float
    ) -> AsyncIterator[dict[str, np.ndarray]]:
        try:
            async for reply in self.triton.stream(SPARK_MODEL, inputs, OUTPUTS, timeout):
                yield reply
                inputs = None  # audio has left: no second attempt from here on
        except Unavailable:
            if inputs is None:
                raise
            log.warning("Triton went away before the first audio; sending the request again")
            await self._wait_for_triton()
            remaining = time_remaining()
            async for reply in self.triton.stream(
                SPARK_MODEL, inputs, OUTPUTS, timeout if remaining is None else remaining
            ):
                yield reply
