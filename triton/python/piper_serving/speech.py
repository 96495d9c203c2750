"""Real English speech from Piper's packaged voice, in-process, for tests and
benchmarks that need a voice rather than a tone (the voice ships as a Python
package: nothing is downloaded)."""

from __future__ import annotations

import threading

import numpy as np

from piper_serving.voices import packaged_voice, piper_loader


class PackagedSpeaker:
    """Speaks with the packaged voice, loaded on first use (about a second)."""

    def __init__(self) -> None:
        self._voice = None
        self._lock = threading.Lock()

    def _loaded(self):
        with self._lock:
            if self._voice is None:
                _, model, config = packaged_voice()
                self._voice = piper_loader()(model, config)
            return self._voice

    def speak(self, text: str) -> tuple[np.ndarray, int]:
        """(float32 mono samples, sample rate) of ``text``, its sentences joined.

        Without Piper's sampling noise, so the same text always gives the same
        samples (tests and benchmarks need fixed inputs).
        """
        from piper import SynthesisConfig

        voice = self._loaded()
        fixed = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
        pieces = [chunk.audio_float_array for chunk in voice.synthesize(text, fixed)]
        if not pieces:
            raise ValueError(f"Piper found nothing to speak in {text[:40]!r}")
        return np.concatenate(pieces).astype(np.float32), int(voice.config.sample_rate)
