"""Preparing a reference clip the way BiCodec's speaker encoder expects it."""

from __future__ import annotations

import numpy as np


def normalize_volume(audio: np.ndarray, target: float = 0.2) -> np.ndarray:
    """Scale speech so its loud part sits near ``target``, without clipping.

    Computes what Spark-TTS's own reference-clip preparation computes, number
    for number, in the input's float dtype (float32 in, float32 out):

    1. A clip peaking below 0.1 is first lifted so it peaks at 0.1.
    2. The loudness estimate is the mean of the 90th-99th percentile of the
       magnitudes above 0.01, and the gain is ``target / loudness`` held to
       [0.1, 10]. Spark takes these magnitudes from the clip as it came in,
       *before* the lift of step 1, and applies the gain to the lifted clip:
       a quiet clip therefore ends up louder than ``target`` (by up to
       0.1 / peak). We keep that on purpose: the speaker tokens, and so the
       voice, depend on it.
    3. With 10 or fewer magnitudes above 0.01 the (lifted) clip is returned
       without a gain.
    4. A result peaking above 1 is divided by its peak.

    An empty clip comes back empty (Spark itself fails on one).
    """
    audio = np.asarray(audio)
    if not np.issubdtype(audio.dtype, np.floating):
        audio = audio.astype(np.float64)
    # Sorted once, before any scaling: both the lift and the estimate use it.
    magnitudes = np.sort(np.abs(audio))
    if magnitudes.size == 0:
        return audio.copy()
    peak = magnitudes[-1]
    if peak < 0.1:
        # Divide then multiply, as Spark does: the rounding is part of the result.
        audio = audio / max(peak, 1e-3) * 0.1
    voiced = magnitudes[magnitudes > 0.01]
    count = voiced.shape[0]
    if count <= 10:
        return audio.copy() if peak >= 0.1 else audio
    # Numpy scalars throughout (no float()): the dtype promotions, and so the
    # exact gain, follow Spark's on any numpy version.
    loudness = np.mean(voiced[int(0.9 * count): int(0.99 * count)])
    audio = audio * np.clip(target / loudness, 0.1, 10)
    top = np.max(np.abs(audio))
    if top > 1:
        audio = audio / top
    return audio


def reference_segment(audio: np.ndarray, length: int) -> np.ndarray:
    """Exactly ``length`` samples: the clip's start, repeated when it is shorter."""
    if audio.size == 0:
        raise ValueError("reference audio is empty")
    if audio.size < length:
        audio = np.tile(audio, length // audio.size + 1)
    return audio[:length]
