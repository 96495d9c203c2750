"""F0 estimation with the RVC WebUI's methods, and its post-processing (fill, shift, coarse)."""

from __future__ import annotations

import threading
import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from services.rvc.models.rmvpe import Rmvpe

SAMPLE_RATE = 16000
HOP = 160  # samples at 16 kHz per frame (10 ms)
F0_MIN, F0_MAX = 50.0, 1100.0
METHODS = ("rmvpe", "crepe", "crepe-tiny", "harvest", "dio", "pm")

_FRAME_PERIOD_MS = 1000.0 * HOP / SAMPLE_RATE
_PM_VOICING_THRESHOLD = 0.6
_CREPE_BATCH = 512
_CREPE_PERIODICITY_MIN = 0.1
_CREPE_WINDOW = 1024
# CREPE rescales every frame to unit variance, so digital silence still gets a confident
# (~0.14) pitch near 540 Hz; frames quieter than -80 dBFS are forced unvoiced instead.
_CREPE_SILENCE_RMS = 1e-4
_RMVPE_THRESHOLD = 0.03
_MEL_MIN = 1127.0 * np.log(1.0 + F0_MIN / 700.0)
_MEL_MAX = 1127.0 * np.log(1.0 + F0_MAX / 700.0)
# torchcrepe keeps one global model and swaps it on a capacity change; serialise its use.
_CREPE_LOCK = threading.Lock()


def frame_count(samples: int) -> int:
    """Pitch frames the WebUI keeps for `samples` of 16 kHz audio (its p_len)."""
    return int(samples) // HOP


def estimate_f0(audio16k: np.ndarray, method: str, frames: int, *, filter_radius: int = 3,
                rmvpe: Rmvpe | None = None, device: str = "cpu") -> np.ndarray:
    """Hz per 10 ms frame as the estimator found it, exactly `frames` long, 0 where unvoiced."""
    f0 = _estimate(audio16k, method, frames, filter_radius, rmvpe, device)
    return _fit(f0.astype(np.float32), frames)


def track_pitch(audio16k: np.ndarray, method: str, frames: int, semitones: float = 0.0, *,
                filter_radius: int = 3, rmvpe: Rmvpe | None = None,
                device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """The synthesizer's pitch inputs, made the way the WebUI main branch's ``get_f0`` does.

    Every unvoiced frame of the estimate is filled in from the voiced frames around it
    (``fill_unvoiced``), the result is shifted by `semitones` and quantised
    (``coarse_pitch``). Returns (coarse bins as int64, Hz as float32), both `frames` long.
    """
    f0 = _estimate(audio16k, method, frames, filter_radius, rmvpe, device)
    if f0.shape[0] < frames:
        # Frames the estimator did not cover count as unvoiced: the fill extends the last value.
        f0 = np.pad(f0, (0, frames - f0.shape[0]))
    # Filled before trimming, as in the WebUI: a frame past `frames` may be the nearest voiced one.
    hz = shift_pitch(fill_unvoiced(f0), semitones)
    return coarse_pitch(hz)[:frames], hz[:frames].astype(np.float32)


def fill_unvoiced(f0: np.ndarray) -> np.ndarray:
    """Unvoiced (0 Hz) frames take the straight line between the nearest voiced frames.

    Frames before the first or after the last voiced frame take that frame's value; with no
    voiced frame at all, nothing changes. Returns a float64 copy.
    """
    hz = np.array(f0, dtype=np.float64).reshape(-1)
    unvoiced = hz == 0
    voiced_at = np.flatnonzero(~unvoiced)
    if voiced_at.size and unvoiced.any():
        hz[unvoiced] = np.interp(np.flatnonzero(unvoiced), voiced_at, hz[voiced_at])
    return hz


def _estimate(audio16k: np.ndarray, method: str, frames: int, filter_radius: int,
              rmvpe: Rmvpe | None, device: str) -> np.ndarray:
    """The estimator's own frames in float64 (pm's already centred on `frames`), untrimmed."""
    if method not in METHODS:
        raise ValueError(f"unknown F0 method {method!r}; expected one of {', '.join(METHODS)}")
    if method == "rmvpe" and rmvpe is None:
        raise ValueError("F0 method 'rmvpe' needs a loaded Rmvpe model")
    if frames < 0:
        raise ValueError(f"frames must be >= 0, got {frames}")
    x = np.asarray(audio16k, dtype=np.float64).reshape(-1)
    if x.shape[0] < HOP:
        # Shorter than one frame: some estimators fail outright, none can find a period.
        return np.zeros(frames)
    if method == "pm":
        f0 = _pm(x, frames)
    elif method == "harvest":
        f0 = _world(x, "harvest")
        # The WebUI's only use of filter_radius, from the releases that had harvest: a fixed
        # 3-tap median on the raw estimate, before the unvoiced fill and the shift.
        if filter_radius > 2:
            from scipy.signal import medfilt

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # medfilt warns on clips under 3 frames
                f0 = medfilt(f0, 3)
    elif method == "dio":
        f0 = _world(x, "dio")
    elif method in ("crepe", "crepe-tiny"):
        f0 = _crepe(x, "tiny" if method == "crepe-tiny" else "full", device)
    else:
        assert rmvpe is not None
        f0 = rmvpe.f0(x.astype(np.float32), threshold=_RMVPE_THRESHOLD)
    return np.asarray(f0, dtype=np.float64).reshape(-1)


def shift_pitch(f0: np.ndarray, semitones: float) -> np.ndarray:
    """Transpose by `semitones` (unvoiced zeros stay zero)."""
    return np.asarray(f0) * 2.0 ** (semitones / 12.0)


def coarse_pitch(f0: np.ndarray) -> np.ndarray:
    """The WebUI's mel-scale pitch bins: int64 in 1..255, 1 = unvoiced or <= F0_MIN."""
    # log(1 + x) rather than log1p: they can differ in the last bit, enough to cross a bin edge.
    mel = 1127.0 * np.log(1.0 + np.asarray(f0, dtype=np.float64) / 700.0)
    voiced = mel > 0
    mel[voiced] = (mel[voiced] - _MEL_MIN) * 254.0 / (_MEL_MAX - _MEL_MIN) + 1.0
    return np.rint(np.clip(mel, 1.0, 255.0)).astype(np.int64)


def _fit(f0: np.ndarray, frames: int) -> np.ndarray:
    """Trim or zero-extend at the end, as the WebUI's later `[:p_len]` slice would."""
    if f0.shape[0] >= frames:
        return f0[:frames].copy()
    return np.pad(f0, (0, frames - f0.shape[0]))


def _pm(x: np.ndarray, frames: int) -> np.ndarray:
    import parselmouth

    try:
        pitch = parselmouth.Sound(x, SAMPLE_RATE).to_pitch_ac(
            time_step=HOP / SAMPLE_RATE,
            voicing_threshold=_PM_VOICING_THRESHOLD,
            pitch_floor=F0_MIN,
            pitch_ceiling=F0_MAX,
        )
    except parselmouth.PraatError:
        # Praat refuses clips shorter than its analysis window: nothing to call voiced.
        return np.zeros(frames, dtype=np.float32)
    f0 = pitch.selected_array["frequency"]
    # Praat's frames are centred in the clip, so split the shortfall between both ends.
    missing = frames - f0.shape[0]
    if missing > 0:
        left = (missing + 1) // 2
        f0 = np.pad(f0, (left, missing - left))
    return f0


def _world(x: np.ndarray, kind: str) -> np.ndarray:
    with warnings.catch_warnings():
        # pyworld imports pkg_resources, which warns on import.
        warnings.simplefilter("ignore")
        import pyworld

    audio = np.ascontiguousarray(x)
    estimator = pyworld.harvest if kind == "harvest" else pyworld.dio
    f0, t = estimator(audio, fs=SAMPLE_RATE, f0_floor=F0_MIN, f0_ceil=F0_MAX,
                      frame_period=_FRAME_PERIOD_MS)
    return pyworld.stonemask(audio, f0, t, SAMPLE_RATE)


def _crepe(x: np.ndarray, capacity: str, device: str) -> np.ndarray:
    import torch
    import torchcrepe

    audio = torch.from_numpy(np.array(x, dtype=np.float32))[None]
    with _CREPE_LOCK:
        f0, periodicity = torchcrepe.predict(
            audio, SAMPLE_RATE, HOP, F0_MIN, F0_MAX, capacity,
            batch_size=_CREPE_BATCH, device=device, return_periodicity=True,
        )
    periodicity = torchcrepe.filter.median(periodicity, 3)
    f0 = torchcrepe.filter.mean(f0, 3)
    f0[periodicity < _CREPE_PERIODICITY_MIN] = 0
    f0 = f0[0].cpu().numpy()
    f0[_silent_frames(x, f0.shape[0])] = 0
    return f0


def _silent_frames(x: np.ndarray, frames: int) -> np.ndarray:
    """Per CREPE frame (1024 samples centred on each hop), is the mean-removed RMS negligible?"""
    half = _CREPE_WINDOW // 2
    padded = np.pad(x.astype(np.float64), (half, half))
    sums = np.concatenate(([0.0], np.cumsum(padded)))
    squares = np.concatenate(([0.0], np.cumsum(padded * padded)))
    starts = np.arange(frames) * HOP
    ends = np.minimum(starts + _CREPE_WINDOW, padded.shape[0])
    mean = (sums[ends] - sums[starts]) / _CREPE_WINDOW
    power = (squares[ends] - squares[starts]) / _CREPE_WINDOW
    return power - mean * mean < _CREPE_SILENCE_RMS**2
