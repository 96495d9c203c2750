from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.rvc.dsp.f0 import (
    F0_MAX,
    F0_MIN,
    HOP,
    METHODS,
    coarse_pitch,
    estimate_f0,
    fill_unvoiced,
    frame_count,
    shift_pitch,
    track_pitch,
)
from services.rvc.models.rmvpe import Rmvpe
from services.rvc.models.tiny_rmvpe import write_tiny_rmvpe
from tests.real_speech import real_speech

SR = 16000
ESTIMATORS = ("pm", "harvest", "dio", "crepe", "crepe-tiny")


def harmonic_tone(hz: float = 220.0, seconds: float = 0.4) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    parts = [(1, 0.5), (2, 0.25), (3, 0.12), (4, 0.06)]
    return sum(a * np.sin(2 * np.pi * hz * k * t) for k, a in parts).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_rmvpe(tmp_path_factory: pytest.TempPathFactory) -> Rmvpe:
    path: Path = tmp_path_factory.mktemp("rmvpe") / "rmvpe.pt"
    write_tiny_rmvpe(path)
    return Rmvpe.load(path)


@pytest.mark.parametrize("method", ESTIMATORS)
def test_harmonic_tone_reads_220_hz(method: str) -> None:
    audio = harmonic_tone(seconds=0.3 if method == "crepe" else 0.5)
    f0 = estimate_f0(audio, method, frame_count(audio.size))
    voiced = f0[f0 > 0]
    assert voiced.size >= 0.8 * f0.size
    assert np.median(voiced) == pytest.approx(220.0, rel=0.02)


@pytest.mark.parametrize("method", ESTIMATORS)
def test_silence_is_unvoiced(method: str) -> None:
    audio = np.zeros(SR // 8, dtype=np.float32)
    f0 = estimate_f0(audio, method, frame_count(audio.size))
    assert f0.shape == (frame_count(audio.size),)
    assert not f0.any()


def test_crepe_unvoices_only_the_silent_part() -> None:
    audio = np.concatenate([np.zeros(SR // 4, np.float32), harmonic_tone(seconds=0.25)])
    f0 = estimate_f0(audio, "crepe-tiny", frame_count(audio.size))
    assert not f0[:15].any()
    assert np.median(f0[35:]) == pytest.approx(220.0, rel=0.02)


@pytest.mark.parametrize("method", METHODS)
def test_output_is_exactly_frames_long(method: str, tiny_rmvpe: Rmvpe) -> None:
    rng = np.random.default_rng(1)
    # Full CREPE costs ~50 ms a frame on a small CPU: one odd length is enough for it.
    lengths = (1234,) if method == "crepe" else (100, 160, 1234, 4001)
    for samples in lengths:
        audio = (0.1 * rng.standard_normal(samples)).astype(np.float32)
        frames = frame_count(samples)
        extra = () if method == "crepe" else (frames + 3, max(frames - 2, 0))
        for wanted in (frames, *extra):
            f0 = estimate_f0(audio, method, wanted, rmvpe=tiny_rmvpe)
            assert f0.shape == (wanted,) and f0.dtype == np.float32
            assert np.isfinite(f0).all() and (f0 >= 0).all()


def test_frame_count_is_the_webui_p_len() -> None:
    assert [frame_count(n) for n in (0, 159, 160, 16000, 16159)] == [0, 0, 1, 100, 100]
    assert HOP == 160


def test_pm_pads_both_ends() -> None:
    audio = harmonic_tone(seconds=0.3)
    f0 = estimate_f0(audio, "pm", frame_count(audio.size))
    assert f0[0] == 0 and f0[-1] == 0 and f0[f0.size // 2] > 0


def test_harvest_median_filter_follows_filter_radius() -> None:
    from scipy.signal import medfilt

    audio = harmonic_tone(seconds=0.3) * np.linspace(0, 1, int(0.3 * SR), dtype=np.float32)
    frames = frame_count(audio.size)
    raw = estimate_f0(audio, "harvest", frames, filter_radius=2)
    smooth = estimate_f0(audio, "harvest", frames, filter_radius=3)
    np.testing.assert_allclose(smooth, medfilt(raw, 3), rtol=1e-6)


# Full CREPE shares crepe-tiny's code path and costs far more CPU.
@pytest.mark.parametrize("method", ("pm", "harvest", "dio", "crepe-tiny"))
def test_every_method_gets_the_unvoiced_fill(method: str) -> None:
    """The WebUI main branch fills unvoiced frames for its own methods (pm, rmvpe); the
    ones it no longer has (harvest, dio, crepe) get the same post-processing here."""
    audio = np.concatenate([np.zeros(SR // 8, np.float32), harmonic_tone(seconds=0.3),
                            np.zeros(SR // 8, np.float32)])
    frames = frame_count(audio.size)
    # torchcrepe dithers its pitch with numpy's global RNG: the same seed, the same dither.
    np.random.seed(0)
    raw = estimate_f0(audio, method, frames)
    assert (raw == 0).sum() >= 10 and (raw > 0).sum() >= 10
    np.random.seed(0)
    coarse, hz = track_pitch(audio, method, frames, 12)
    assert coarse.shape == hz.shape == (frames,) and hz.dtype == np.float32
    assert (hz > 0).all()
    expected = shift_pitch(fill_unvoiced(raw), 12)
    np.testing.assert_allclose(hz, expected, rtol=1e-6)
    np.testing.assert_array_equal(coarse, coarse_pitch(hz.astype(np.float64)))


def test_harvest_median_filter_comes_before_the_fill() -> None:
    audio = np.concatenate([np.zeros(SR // 10, np.float32), harmonic_tone(seconds=0.3)])
    frames = frame_count(audio.size)
    smooth = estimate_f0(audio, "harvest", frames, filter_radius=3)
    assert (smooth == 0).sum() >= 5
    _, hz = track_pitch(audio, "harvest", frames, filter_radius=3)
    np.testing.assert_allclose(hz, fill_unvoiced(smooth), rtol=1e-6)


def test_fill_unvoiced() -> None:
    f0 = np.array([0.0, 0.0, 100.0, 0.0, 0.0, 0.0, 200.0, 0.0])
    np.testing.assert_array_equal(
        fill_unvoiced(f0), [100.0, 100.0, 100.0, 125.0, 150.0, 175.0, 200.0, 200.0]
    )
    assert fill_unvoiced(f0).dtype == np.float64 and f0[0] == 0.0  # a copy
    np.testing.assert_array_equal(fill_unvoiced(np.array([0.0, 80.0, 0.0])), [80.0] * 3)
    np.testing.assert_array_equal(fill_unvoiced(np.zeros(4)), np.zeros(4))
    np.testing.assert_array_equal(fill_unvoiced(np.array([], dtype=np.float32)), [])


def test_fill_sees_frames_past_the_end(tiny_rmvpe: Rmvpe) -> None:
    """The fill runs on the estimator's whole output, before the trim to `frames`."""

    class Given:
        def f0(self, audio16k: np.ndarray, threshold: float = 0.03) -> np.ndarray:
            return np.array([100.0, 0.0, 0.0, 0.0, 300.0])

    _, hz = track_pitch(np.zeros(4 * HOP), "rmvpe", 3, rmvpe=Given())  # type: ignore[arg-type]
    np.testing.assert_array_equal(hz, [100.0, 150.0, 200.0])
    # Frames the estimator did not reach count as unvoiced, so they take the last value.
    _, hz = track_pitch(np.zeros(4 * HOP), "rmvpe", 7, rmvpe=Given())  # type: ignore[arg-type]
    np.testing.assert_array_equal(hz, [100.0, 150.0, 200.0, 250.0, 300.0, 300.0, 300.0])


def test_unknown_method_and_missing_model_are_rejected() -> None:
    audio = harmonic_tone(seconds=0.1)
    with pytest.raises(ValueError, match="unknown F0 method"):
        estimate_f0(audio, "yin", 10)
    with pytest.raises(ValueError, match="Rmvpe"):
        estimate_f0(audio, "rmvpe", 10)
    with pytest.raises(ValueError, match="unknown F0 method"):
        track_pitch(audio, "yin", 10)


def test_shift_pitch() -> None:
    f0 = np.array([0.0, 110.0, 220.0])
    np.testing.assert_allclose(shift_pitch(f0, 12), [0.0, 220.0, 440.0])
    np.testing.assert_allclose(shift_pitch(f0, -12), [0.0, 55.0, 110.0])
    np.testing.assert_allclose(shift_pitch(f0, 0), f0)


def test_coarse_pitch() -> None:
    f0 = np.array([0.0, F0_MIN, F0_MAX, 10.0, 5000.0])
    coarse = coarse_pitch(f0)
    assert coarse.dtype == np.int64
    assert coarse.tolist() == [1, 1, 255, 1, 255]
    ramp = coarse_pitch(np.geomspace(F0_MIN, F0_MAX, 500))
    assert (np.diff(ramp) >= 0).all() and ramp[0] == 1 and ramp[-1] == 255
    assert len(set(ramp.tolist())) > 200


@pytest.mark.parametrize("method", ("pm", "harvest", "dio", "crepe-tiny"))
def test_real_speech_reads_as_a_speaking_voice(method: str) -> None:
    """Unlike a steady tone, speech has unvoiced consonants and pauses and a moving pitch:
    each estimator must leave the unvoiced part at 0 and find a man's speaking pitch
    in the rest. (They disagree on both: on this clip about 29% of the frames are
    voiced for harvest, 41% for pm and dio, 50% for crepe-tiny, and the medians are
    about 85 Hz for crepe-tiny and pm, 106 for harvest and 166 for dio.)"""
    audio = real_speech(rate=SR).samples
    f0 = estimate_f0(audio, method, frame_count(audio.size))
    voiced = f0[f0 > 0]
    assert 0.2 < voiced.size / f0.size < 0.9
    assert 70 < np.median(voiced) < 200
    assert np.percentile(voiced, 90) / np.percentile(voiced, 10) > 1.15  # intonation moves
