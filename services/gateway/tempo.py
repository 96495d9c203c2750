"""Speaking rate: faster or slower speech at the same pitch."""

from __future__ import annotations

import numpy as np

from services.common.audio import PcmAudio, to_mono


def change_tempo(audio: PcmAudio, speed: float) -> PcmAudio:
    """``audio`` played ``speed`` times as fast, pitch kept (librosa's phase vocoder)."""
    if speed == 1.0 or audio.frames == 0:
        return audio
    import librosa  # heavy (numba); only requests that change the speed pay for it

    stretched = librosa.effects.time_stretch(to_mono(audio).samples, rate=speed)
    return PcmAudio(stretched.astype(np.float32, copy=False), audio.sample_rate)
