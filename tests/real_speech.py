"""Real English speech for tests, from Piper's packaged voice (spoken once per text)."""

from __future__ import annotations

from functools import lru_cache

from piper_serving.speech import PackagedSpeaker
from services.common.audio import PcmAudio, resample

SENTENCE = "The quick brown fox jumps over the lazy dog, and nobody seems surprised."
_SPEAKER = PackagedSpeaker()


@lru_cache(maxsize=16)
def _spoken(text: str):
    return _SPEAKER.speak(text)


def real_speech(text: str = SENTENCE, rate: int = 16_000) -> PcmAudio:
    """``text`` spoken by a real (male, US English) voice, mono float32 at ``rate``."""
    samples, native = _spoken(text)
    audio = PcmAudio(samples.copy(), native)
    return audio if rate == native else resample(audio, rate)
