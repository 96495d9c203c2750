"""Reference clip preparation: volume normalisation and the fixed-length segment."""

import numpy as np
import pytest

from spark_tts.reference_audio import normalize_volume, reference_segment

RATE = 16_000


def tone(peak: float, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (peak * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def loudness(audio: np.ndarray) -> float:
    """The estimate normalize_volume aims at: mean of the 90th-99th percentile."""
    voiced = np.sort(np.abs(audio))
    voiced = voiced[voiced > 0.01]
    return float(np.mean(voiced[int(0.9 * voiced.size): int(0.99 * voiced.size)]))


def test_quiet_clip_is_lifted_to_the_target():
    quiet = tone(0.02)
    out = normalize_volume(quiet)
    assert np.max(np.abs(out)) > 5 * np.max(np.abs(quiet))
    assert loudness(out) == pytest.approx(0.2, rel=0.02)


def test_loud_clip_is_scaled_down_to_the_target():
    out = normalize_volume(tone(0.9))
    assert loudness(out) == pytest.approx(0.2, rel=0.02)
    assert np.max(np.abs(out)) == pytest.approx(0.2, rel=0.02)


def test_target_is_honoured():
    assert loudness(normalize_volume(tone(0.5), target=0.05)) == pytest.approx(0.05, rel=0.02)


def test_gain_never_pushes_samples_past_full_scale():
    # Steady speech at 0.1 with a few 0.9 clicks: lifting the speech to 0.2
    # would put the clicks at 1.8.
    audio = np.full(2000, 0.1, np.float32)
    audio[::2] *= -1
    audio[[10, 500, 1500]] = 0.9
    out = normalize_volume(audio)
    assert np.max(np.abs(out)) <= 1.0
    assert np.max(np.abs(out)) == pytest.approx(1.0)


def test_gain_is_bounded_to_ten():
    # Nearly all samples sit just above the silence threshold, so reaching
    # the target would need 18x.
    audio = np.full(1000, 0.011, np.float32)
    audio[0] = 0.1
    out = normalize_volume(audio)
    assert np.max(np.abs(out)) == pytest.approx(1.0)
    assert out[1] == pytest.approx(0.11, rel=1e-4)


def test_silence_stays_silent_and_finite():
    out = normalize_volume(np.zeros(RATE, np.float32))
    assert np.all(np.isfinite(out))
    assert not np.any(out)


def test_near_silence_stays_finite():
    audio = np.full(RATE, 1e-7, np.float32)
    out = normalize_volume(audio)
    assert np.all(np.isfinite(out))
    assert np.max(np.abs(out)) <= 1.0


def test_empty_clip_stays_empty():
    out = normalize_volume(np.zeros(0, np.float32))
    assert out.size == 0
    assert out.dtype == np.float32


def test_normalize_returns_float32_and_leaves_the_input_alone():
    audio = tone(0.9).astype(np.float64)
    before = audio.copy()
    out = normalize_volume(audio)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(audio, before)


def test_short_clip_is_repeated_to_the_exact_length():
    out = reference_segment(np.arange(5, dtype=np.float32), 12)
    np.testing.assert_array_equal(out, [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1])


@pytest.mark.parametrize("size", [1, 4, 8, 96_000 - 1])
def test_repeated_clip_has_exactly_the_asked_length(size):
    out = reference_segment(np.ones(size, np.float32), 96_000)
    assert out.shape == (96_000,)


def test_long_clip_keeps_its_start():
    audio = np.arange(100, dtype=np.float32)
    np.testing.assert_array_equal(reference_segment(audio, 30), audio[:30])


def test_clip_of_the_exact_length_is_unchanged():
    audio = np.arange(30, dtype=np.float32)
    np.testing.assert_array_equal(reference_segment(audio, 30), audio)


def test_empty_reference_is_refused():
    with pytest.raises(ValueError, match="empty"):
        reference_segment(np.zeros(0, np.float32), 100)
