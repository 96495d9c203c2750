"""Whole conversions, pm pitch and long-input cuts against the RVC WebUI main branch.

Provenance of every number here and in golden/webui_main_conversion.npz: the WebUI at
commit 4338f12 (main), its ``infer``, ``tools`` and ``configs`` folders extracted with
``git archive`` into a scratch folder outside this repository, driven by a scratch script
with this repository's virtualenv (transformers 5, librosa 0.11, parselmouth, faiss). The
script loaded the tiny models that ``services.rvc.tiny_models.write_tiny_models`` writes
with seed 0 (what the ``tiny_rvc`` fixture writes): the voice through
``infer/module/models.py``'s ``SynthesizerTrnMs256NSFsid`` built from the checkpoint's
config (``enc_q`` deleted, ``load_state_dict(strict=False)``, no key missing), HuBERT
through ``infer/hubert.py``'s ``load_hubert_model`` with ``HUBERT_MODEL_PATH`` pointed at
the tiny transformers folder. It then called ``Pipeline(40000, config).pipeline(...)``
with config device cpu, is_half False, x_pad 1, x_query 6, x_center 38, x_max 41, after
``torch.manual_seed(0)``. Nothing was stubbed: on CPU ``run_cuda_graph`` calls the model
directly, and ``infer/vc/pipeline.py`` imports no ffmpeg, av or i18n.

* ``rms25`` / ``rms50``: ``pipeline()``'s int16 output for ``golden_clip()`` with sid 0,
  f0_up_key 2, f0_method "pm", the voice's ``added_*.index`` at index_rate 0.75,
  resample_sr 40000 (no resampling), rms_mix_rate 0.25 / 0.5, protect 0.33. 59200
  samples each; every 7th sample is stored (the full arrays are ~110 kB apiece and do not
  compress). sha256 of the full int16 arrays: rms25 98aed076a7c42b69..., rms50
  17c545a0ad92b2b1....
* ``two_pieces``: the same voice and call (f0_up_key 0, no index, rms_mix_rate 0.25,
  protect 0.33) on ``golden_clip()`` twice over (3 s), with config x_pad 1, x_query 1,
  x_center 2, x_max 3 so that the clip is cut once, after ``torch.manual_seed(5)``.
  119200 samples; every 29th is stored; sha256 9c9be559b87d34ac....
* ``pm_coarse`` / ``pm_hz``: ``Pipeline.get_f0(x, 350, 2, "pm")`` on ``golden_clip()``
  high-passed (``signal.filtfilt(bh, ah, ...)``) and reflect-padded by 16000 samples,
  as ``pipeline()`` prepares it; before the fill 135 of the 350 frames are unvoiced (130
  of Praat's 345 frames, and the 5 frames of centring padding).
* Cut points: main's ``opt_ts`` block of ``pipeline()`` executed as it stands on
  ``long_clip()`` high-passed; piece lengths: the ``audio0`` lengths ``pipeline()``
  passes to ``vc`` for the same clip (``vc`` replaced by a recorder, no pitch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import signal

from services.common.audio import PcmAudio, SampleFormat, encode_pcm
from services.rvc.dsp import f0 as pitch
from services.rvc.dsp.retrieval import FeatureIndex
from services.rvc.framing import RATE, WINDOW
from services.rvc.models.checkpoint import VoiceInfo, load_synthesizer
from services.rvc.models.content import ContentEncoder
from services.rvc.params import ConversionParams, F0Method
from services.rvc.pipeline import _HIGH_PASS, ConversionPipeline, Segmenting, Voice, split_points
from services.rvc.tiny_models import voice_name
from tests.unit.rvc.golden_inputs import golden_clip, long_clip

GOLDEN = np.load(Path(__file__).parent / "golden" / "webui_main_conversion.npz")
STRIDE = int(GOLDEN["stride"])
REFERENCE_LENGTH = 59_200
CUT_POINTS = [602_790, 1_180_504]
PIECE_LENGTHS = [634_880, 609_920, 371_520]


@pytest.fixture(scope="module")
def golden_voice(tiny_rvc: Path) -> tuple[ConversionPipeline, Voice]:
    encoder = ContentEncoder.load(tiny_rvc / "assets" / "hubert_base")
    pipeline = ConversionPipeline(encoder, torch.device("cpu"), False, lambda: None)
    name = voice_name("v1", True, 40_000)
    folder = tiny_rvc / "voices" / name
    info, synthesizer = load_synthesizer(folder / f"{name}.pth", torch.device("cpu"), False)
    index = FeatureIndex.load(next(folder.glob("added_*.index")))
    return pipeline, Voice(name, info, synthesizer, index)


@pytest.mark.parametrize("rms_mix_rate, key", [(0.25, "rms25"), (0.5, "rms50")])
def test_conversion_matches_the_webui_within_one_lsb(golden_voice, rms_mix_rate, key):
    pipeline, voice = golden_voice
    params = ConversionParams(
        pitch_shift=2, f0_method=F0Method.PM, index_rate=0.75, rms_mix_rate=rms_mix_rate,
        protect=0.33,
    )
    out = pipeline.convert(voice, golden_clip(), params, seed=0)
    pcm = np.frombuffer(encode_pcm(PcmAudio(out, 40_000), SampleFormat.S16LE), "<i2")
    # Ours lasts as long as the input; the WebUI's output stops short, ours is zero after.
    assert pcm.shape == (int(1.5 * 40_000),)
    assert not pcm[REFERENCE_LENGTH:].any()
    ours = pcm[:REFERENCE_LENGTH:STRIDE].astype(np.int32)
    reference = GOLDEN[key].astype(np.int32)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() <= 1


def test_a_clip_cut_in_two_matches_the_webui_within_one_lsb(golden_voice):
    """Piece boundaries, pitch slices and one noise stream running on across pieces."""
    pipeline, voice = golden_voice
    short = ConversionPipeline(
        pipeline.content, torch.device("cpu"), False, lambda: None, Segmenting(1, 1, 2, 3)
    )
    params = ConversionParams(f0_method=F0Method.PM, index_rate=0.0, rms_mix_rate=0.25)
    audio = np.tile(golden_clip(), 2)
    assert len(split_points(signal.filtfilt(*_HIGH_PASS, audio), short.segmenting)) == 1
    out = short.convert(voice, audio, params, seed=5)
    pcm = np.frombuffer(encode_pcm(PcmAudio(out, 40_000), SampleFormat.S16LE), "<i2")
    assert pcm.shape == (3 * 40_000,) and not pcm[119_200:].any()
    ours = pcm[:119_200:29].astype(np.int32)
    assert np.abs(ours - GOLDEN["two_pieces"].astype(np.int32)).max() <= 1


def test_pm_pitch_matches_the_webui_get_f0():
    audio = signal.filtfilt(*_HIGH_PASS, golden_clip())
    padded = np.pad(audio, (RATE, RATE), mode="reflect")
    frames = padded.shape[0] // WINDOW
    coarse, hz = pitch.track_pitch(padded, "pm", frames, 2)
    np.testing.assert_array_equal(coarse, GOLDEN["pm_coarse"])
    np.testing.assert_array_equal(hz, GOLDEN["pm_hz"])
    # The fill leaves nothing unvoiced, though Praat found unvoiced frames here.
    assert (hz > 0).all()
    assert (pitch.estimate_f0(padded, "pm", frames) == 0).sum() == 135


def test_long_input_cut_points_match_the_webui():
    audio = signal.filtfilt(*_HIGH_PASS, long_clip())
    assert split_points(audio, Segmenting.for_precision(False)) == CUT_POINTS


class _ContentStub:
    """Records the length of every piece handed to the content encoder."""

    def __init__(self) -> None:
        self.lengths: list[int] = []

    def extract(self, wav: torch.Tensor, version: str) -> torch.Tensor:
        self.lengths.append(wav.shape[-1])
        return torch.zeros(1, wav.shape[-1] // 320, 768)


class _SilentSynthesizer:
    def infer(self, phone, pitch=None, nsff0=None, speaker=0, generator=None):
        return torch.zeros(phone.shape[1] * 400)


def test_long_input_pieces_match_the_webui():
    content = _ContentStub()
    pipeline = ConversionPipeline(content, torch.device("cpu"), False, lambda: None)  # type: ignore[arg-type]
    info = VoiceInfo("v2", 40_000, False, 768, 400, 1, "")
    voice = Voice("stub", info, _SilentSynthesizer(), None)  # type: ignore[arg-type]
    out = pipeline.convert(voice, long_clip(), ConversionParams())
    assert content.lengths == PIECE_LENGTHS
    assert out.shape == (95 * 40_000,)
