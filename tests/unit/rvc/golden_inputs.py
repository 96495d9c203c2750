"""Deterministic inputs shared by the golden tests and the scratch script that computed them.

The golden numbers under tests/unit/rvc/golden/ were produced by running the RVC WebUI
(main branch, commit 4338f12) on exactly these inputs; changing anything here
invalidates them.
"""

from __future__ import annotations

import numpy as np

RATE = 16_000


def _tone(seconds: float, f0: float, vibrato_hz: float, depth: float) -> np.ndarray:
    t = np.arange(int(round(seconds * RATE))) / RATE
    hz = f0 * (1.0 + depth * np.sin(2 * np.pi * vibrato_hz * t))
    phase = 2 * np.pi * np.cumsum(hz) / RATE
    # A few harmonics with falling strength, and a gentle fade at both ends.
    wave = sum(np.sin(k * phase) / k for k in range(1, 6))
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)
    return wave * fade


def golden_clip() -> np.ndarray:
    """1.5 s at 16 kHz: a vibrato tone, digital silence, breath noise, a higher tone."""
    rng = np.random.default_rng(20240615)
    parts = [
        0.25 * _tone(0.50, 150.0, 5.0, 0.03),
        np.zeros(int(0.25 * RATE)),
        0.05 * rng.standard_normal(int(0.20 * RATE)),
        0.25 * _tone(0.55, 220.0, 6.0, 0.04),
    ]
    return np.concatenate(parts).astype(np.float32)


def golden_f0_curve() -> np.ndarray:
    """Hz per 10 ms frame with unvoiced (0) runs at the start, in the middle and at the end."""
    voiced_a = 120.0 + 30.0 * np.sin(np.linspace(0.0, 3.0, 14))
    voiced_b = np.linspace(210.0, 1000.0, 9)
    # A lone voiced frame between unvoiced ones, and values below the coarse floor (50 Hz).
    return np.concatenate(
        [
            np.zeros(4),
            voiced_a,
            np.zeros(5),
            [95.0],
            np.zeros(2),
            [40.0, 47.5],
            voiced_b,
            np.zeros(3),
        ]
    ).astype(np.float64)


def long_clip() -> np.ndarray:
    """95 s at 16 kHz, long enough for two cuts at the CPU segmenting (x_max 41 s)."""
    rng = np.random.default_rng(77)
    n = 95 * RATE
    t = np.arange(n) / RATE
    # Syllable-rate loudness with slow drift, so every search window has one clear minimum.
    envelope = 0.3 + 0.25 * np.sin(2 * np.pi * 3.1 * t) + 0.1 * np.sin(2 * np.pi * 0.13 * t)
    return (0.2 * envelope * rng.standard_normal(n)).astype(np.float32)
