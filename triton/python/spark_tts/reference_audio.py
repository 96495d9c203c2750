"""Preparing a reference clip the way BiCodec's speaker encoder expects it."""

from __future__ import annotations

import numpy as np


def normalize_volume(audio: np.ndarray, target: float = 0.2) -> np.ndarray:
    """Scale speech so its loud part sits near ``target``, without clipping.

    Quiet recordings are first lifted to a 0.1 peak; the loudness estimate is
    the mean of the 90th-99th percentile of non-silent magnitudes.
    """
    audio = audio.astype(np.float32, copy=True)
    magnitudes = np.sort(np.abs(audio))
    if magnitudes.size == 0:
        return audio
    peak = magnitudes[-1]
    if peak < 0.1:
        audio = audio / max(peak, 1e-3) * 0.1
        magnitudes = np.sort(np.abs(audio))
    voiced = magnitudes[magnitudes > 0.01]
    if voiced.size <= 10:
        return audio
    loudness = float(np.mean(voiced[int(0.9 * voiced.size): int(0.99 * voiced.size)]))
    audio = audio * float(np.clip(target / loudness, 0.1, 10.0))
    top = float(np.max(np.abs(audio)))
    return audio / top if top > 1.0 else audio


def reference_segment(audio: np.ndarray, length: int) -> np.ndarray:
    """Exactly ``length`` samples: the clip's start, repeated when it is shorter."""
    if audio.size == 0:
        raise ValueError("reference audio is empty")
    if audio.size < length:
        audio = np.tile(audio, length // audio.size + 1)
    return audio[:length]
