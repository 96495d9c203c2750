"""The WebUI conversion pipeline on a tiny content encoder and a spying synthesizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.rvc.dsp.f0 import estimate_f0
from services.rvc.dsp.retrieval import FeatureIndex, build_index
from services.rvc.framing import RATE, WINDOW
from services.rvc.models.checkpoint import VoiceInfo
from services.rvc.models.content import ContentEncoder
from services.rvc.params import ConversionParams, F0Method
from services.rvc.pipeline import (
    ConversionPipeline,
    Segmenting,
    Voice,
    mix_loudness,
    rms_frames,
    split_points,
)


class SpySynthesizer(torch.nn.Module):
    """Returns audio of the right length and keeps every input it was given."""

    def __init__(self, hop: int) -> None:
        super().__init__()
        self.hop = hop
        self.calls: list[dict] = []

    def infer(self, phone, pitch=None, nsff0=None, speaker=0, generator=None):
        self.calls.append({"phone": phone.clone(), "pitch": pitch, "nsff0": nsff0})
        noise = torch.rand(phone.shape[1] * self.hop, generator=generator) - 0.5
        return 0.1 * noise


def voice(version="v2", pitch_guided=True, rate=40_000) -> Voice:
    hop = rate // 100
    info = VoiceInfo(version, rate, pitch_guided, 768 if version == "v2" else 256, hop, 1, "")
    return Voice("spy", info, SpySynthesizer(hop), None)


@pytest.fixture(scope="module")
def pipeline(tiny_rvc) -> ConversionPipeline:
    encoder = ContentEncoder.load(tiny_rvc / "assets" / "hubert_base")
    return ConversionPipeline(encoder, torch.device("cpu"), False, lambda: None)


def harmonic(seconds: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * sum(np.sin(2 * np.pi * k * hz * t) / k for k in range(1, 5))).astype(np.float32)


@pytest.mark.parametrize("shift, expected", [(0, 220.0), (12, 440.0), (-12, 110.0)])
def test_pitch_shift_moves_the_f0_fed_to_the_synthesizer(pipeline, shift, expected):
    spy = voice()
    params = ConversionParams(pitch_shift=shift, f0_method=F0Method.HARVEST)
    pipeline.convert(spy, harmonic(1.0), params)
    (call,) = spy.synthesizer.calls
    hz = call["nsff0"][0].numpy()
    voiced = hz[hz > 0]
    assert voiced.size > 0.8 * hz.size
    assert np.median(voiced) == pytest.approx(expected, rel=0.02)
    assert call["pitch"].dtype == torch.long
    assert 1 <= int(call["pitch"].min()) and int(call["pitch"].max()) <= 255


@pytest.mark.parametrize("rate", [32_000, 40_000, 48_000])
@pytest.mark.parametrize("seconds", [0.05, 0.73, 2.0])
def test_the_output_lasts_as_long_as_the_input(pipeline, rate, seconds):
    spy = voice(rate=rate, pitch_guided=False)
    out = pipeline.convert(spy, harmonic(seconds), ConversionParams())
    assert out.dtype == np.float32
    assert abs(out.shape[0] - seconds * rate) <= rate // 100


def test_resample_sr_sets_the_output_rate(pipeline):
    out = pipeline.convert(voice(pitch_guided=False), harmonic(1.0), ConversionParams(resample_sr=22_050))
    assert abs(out.shape[0] - 22_050) <= 221


def test_long_input_is_cut_at_quiet_points_and_keeps_its_length(pipeline):
    short = Segmenting(pad=0.2, query=0.3, center=1.0, longest=1.2)
    cutting = ConversionPipeline(pipeline.content, torch.device("cpu"), False, lambda: None, short)
    audio = harmonic(3.5)
    # Quiet gaps where the cuts should land.
    for gap in (1.1, 2.05, 3.0):
        audio[int(gap * RATE) : int((gap + 0.05) * RATE)] = 0
    points = split_points(audio, short)
    assert len(points) == 3
    for point, gap in zip(points, (1.1, 2.05, 3.0), strict=True):
        assert gap * RATE <= point <= (gap + 0.05) * RATE
    spy = voice(pitch_guided=False)
    out = cutting.convert(spy, audio, ConversionParams())
    assert len(spy.synthesizer.calls) == 4
    assert abs(out.shape[0] - 3.5 * 40_000) <= 400


def test_short_input_is_not_cut():
    assert split_points(np.zeros(RATE * 10, np.float32), Segmenting.for_precision(False)) == []


def _phones_by_protect(pipeline, audio, index) -> tuple[dict, torch.Tensor]:
    phones = {}
    for label, protect, rate in (("raw", 0.5, 0.0), ("retrieved", 0.5, 1.0), ("protected", 0.0, 1.0)):
        spy = voice()
        spy.index = index
        params = ConversionParams(protect=protect, index_rate=rate, f0_method=F0Method.HARVEST)
        pipeline.convert(spy, audio, params)
        call = spy.synthesizer.calls[0]
        phones[label], hz = call["phone"][0], call["nsff0"][0]
    return phones, hz


@pytest.fixture(scope="module")
def random_index(tmp_path_factory) -> FeatureIndex:
    path = tmp_path_factory.mktemp("index") / "added.index"
    build_index(np.random.default_rng(1).standard_normal((400, 768)).astype(np.float32), path)
    return FeatureIndex.load(path)


def test_unvoiced_frames_are_filled_so_protect_leaves_them_alone(pipeline, random_index):
    """As in the WebUI main branch: the unvoiced fill makes every frame voiced, so with
    anything voiced in the clip, protect changes nothing (a quirk kept on purpose)."""
    audio = harmonic(1.0)
    noise = np.random.default_rng(0).standard_normal(RATE // 2).astype(np.float32)
    audio[RATE // 2 :] = 0.05 * noise  # the second half is unvoiced
    raw = estimate_f0(audio, "harvest", RATE // WINDOW)
    assert (raw == 0).sum() > 20
    phones, hz = _phones_by_protect(pipeline, audio, random_index)
    assert (hz > 0).all()
    torch.testing.assert_close(phones["protected"], phones["retrieved"])
    assert not torch.allclose(phones["raw"], phones["retrieved"])


def test_protect_keeps_the_raw_features_when_nothing_is_voiced(pipeline, random_index):
    audio = np.zeros(RATE, np.float32)
    phones, hz = _phones_by_protect(pipeline, audio, random_index)
    assert not hz.any()
    torch.testing.assert_close(phones["protected"], phones["raw"])
    assert not torch.allclose(phones["raw"], phones["retrieved"])


def test_rms_mix_rate_zero_gives_the_source_loudness():
    rate = 40_000
    source = harmonic(2.0)
    source[: RATE // 2] *= 0.1
    converted = np.full(2 * rate, 0.5, np.float32)
    mixed = mix_loudness(source, converted, rate, 0.0)
    first, last = np.abs(mixed[: rate // 4]).mean(), np.abs(mixed[-rate // 4 :]).mean()
    assert first < 0.3 * last
    np.testing.assert_array_equal(mix_loudness(source, converted, rate, 1.0), converted)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("samples", [0, 1, 16_001, 59_200])
@pytest.mark.parametrize("rate", [16_000, 40_000, 48_000])
def test_rms_frames_is_librosa_rms_bit_for_bit(dtype, samples, rate):
    """The WebUI's change_rms uses librosa.feature.rms; ours must round the same way."""
    import librosa

    x = (0.3 * np.random.default_rng(samples).standard_normal(samples)).astype(dtype)
    expected = librosa.feature.rms(y=x, frame_length=rate // 2 * 2, hop_length=rate // 2)[0]
    got = rms_frames(x, rate // 2 * 2, rate // 2)
    assert got.dtype == expected.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_frames_are_10_ms_of_16_khz():
    assert (RATE, WINDOW) == (16_000, 160)
