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


def test_quiet_clip_is_lifted_past_the_target():
    """Spark's quirk: a clip peaking below 0.1 is lifted to a 0.1 peak, but its
    loudness is estimated before that lift, so the gain meant for its original
    level multiplies the lifted clip. A 0.05 tone ends up near 0.4, not 0.2."""
    quiet = tone(0.05)
    out = normalize_volume(quiet)
    lifted = quiet / np.max(np.abs(quiet)) * 0.1
    np.testing.assert_allclose(out, lifted * (0.2 / loudness(quiet)), rtol=1e-6)
    assert loudness(out) == pytest.approx(0.2 * 0.1 / 0.05, rel=0.02)


def test_quiet_clip_gain_is_still_bounded_to_ten():
    # A 0.02 tone would need about 10.1x on top of its lift to 0.1.
    out = normalize_volume(tone(0.02))
    assert np.max(np.abs(out)) == pytest.approx(1.0, rel=1e-6)


def test_clip_too_quiet_to_estimate_is_only_lifted():
    """No sample of the clip as given is above 0.01 (the lift would put many
    above it), so there is no loudness estimate: the lifted clip comes back."""
    quiet = tone(0.009)
    out = normalize_volume(quiet)
    np.testing.assert_allclose(out, quiet / np.max(np.abs(quiet)) * 0.1, rtol=1e-6)
    assert np.max(np.abs(out)) == pytest.approx(0.1, rel=1e-6)


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_clip_stays_empty(dtype):
    out = normalize_volume(np.zeros(0, dtype))
    assert out.size == 0
    assert out.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("peak", [0.05, 0.9])
def test_normalize_keeps_the_float_dtype_and_leaves_the_input_alone(dtype, peak):
    """Spark computes in the dtype it is given (float64 from soundfile)."""
    audio = tone(peak).astype(dtype)
    before = audio.copy()
    out = normalize_volume(audio)
    assert out.dtype == dtype
    np.testing.assert_array_equal(audio, before)


def test_float64_is_not_rounded_through_float32():
    audio = tone(0.9).astype(np.float64) + 1e-9
    out = normalize_volume(audio)
    assert not np.array_equal(out, out.astype(np.float32).astype(np.float64))


def test_list_input_is_computed_in_float64():
    out = normalize_volume(tone(0.9).tolist())
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, normalize_volume(tone(0.9).astype(np.float64)))


def test_clip_returned_unscaled_is_a_copy():
    # Peak 0.5 (no lift) and only 3 samples above 0.01: nothing to estimate.
    audio = np.zeros(100, np.float32)
    audio[[3, 40, 70]] = [0.5, -0.2, 0.3]
    out = normalize_volume(audio)
    np.testing.assert_array_equal(out, audio)
    out[3] = 0.0
    assert audio[3] == 0.5


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
