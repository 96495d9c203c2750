from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from services.rvc.models.rmvpe import (
    CENTS_OFFSET,
    CENTS_PER_BIN,
    N_BINS,
    Rmvpe,
    RmvpeFormatError,
    decode_salience,
    htk_mel_filterbank,
)
from services.rvc.models.tiny_rmvpe import TINY_CONFIG, write_tiny_rmvpe

SR = 16000


def harmonic_tone(hz: float = 220.0, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    parts = [(1, 0.5), (2, 0.25), (3, 0.12), (4, 0.06)]
    return sum(a * np.sin(2 * np.pi * hz * k * t) for k, a in parts).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rmvpe") / "rmvpe.pt"
    write_tiny_rmvpe(path)
    return path


@pytest.fixture(scope="module")
def tiny(tiny_path: Path) -> Rmvpe:
    return Rmvpe.load(tiny_path)


def bin_of(hz: float) -> float:
    return (1200 * np.log2(hz / 10) - CENTS_OFFSET) / CENTS_PER_BIN


def test_tiny_file_has_the_public_key_set_and_is_small(tiny_path: Path) -> None:
    with torch.device("meta"):
        public = Rmvpe().state_dict()
    tiny = torch.load(tiny_path, weights_only=True)
    assert list(tiny) == list(public)
    assert len(public) == 741
    assert tiny_path.stat().st_size < 1_000_000


def test_default_widths_match_the_public_checkpoint_shapes() -> None:
    with torch.device("meta"):
        sd = Rmvpe().state_dict()
    assert sd["unet.encoder.bn.weight"].shape == (1,)
    assert sd["unet.encoder.layers.0.conv.0.shortcut.weight"].shape == (16, 1, 1, 1)
    assert sd["unet.intermediate.layers.0.conv.0.shortcut.weight"].shape == (512, 256, 1, 1)
    assert sd["unet.decoder.layers.0.conv1.0.weight"].shape == (512, 256, 3, 3)
    assert sd["unet.decoder.layers.4.conv2.0.shortcut.weight"].shape == (16, 32, 1, 1)
    assert sd["cnn.weight"].shape == (3, 16, 3, 3)
    assert sd["fc.0.gru.weight_ih_l0_reverse"].shape == (768, 384)
    assert sd["fc.1.weight"].shape == (360, 512)
    assert "unet.encoder.layers.0.conv.1.shortcut.weight" not in sd


def test_tiny_loads_strictly_with_inferred_widths(tiny: Rmvpe) -> None:
    assert tiny.cnn.weight.shape[1] == TINY_CONFIG["widths"][0]
    assert tiny.fc[0].gru.hidden_size == TINY_CONFIG["gru_hidden"]
    assert not tiny.training


@pytest.mark.parametrize("samples", [16000, 16001, 12345, 5000, 700, 100])
def test_f0_frame_count_matches_the_reference(tiny: Rmvpe, samples: int) -> None:
    audio = np.random.default_rng(samples).standard_normal(samples).astype(np.float32) * 0.1
    f0 = tiny.f0(audio)
    assert f0.shape == (samples // 160 + 1,)
    assert np.isfinite(f0).all() and (f0 >= 0).all()


def test_threshold_above_any_salience_gives_all_unvoiced(tiny: Rmvpe) -> None:
    assert not tiny.f0(harmonic_tone(seconds=0.3), threshold=1.0).any()


def test_half_is_ignored_on_cpu(tiny_path: Path) -> None:
    assert Rmvpe.load(tiny_path, half=True).cnn.weight.dtype == torch.float32


def test_renamed_key_is_named_in_the_error(tiny_path: Path, tmp_path: Path) -> None:
    state = torch.load(tiny_path, weights_only=True)
    state["cnn.kernel"] = state.pop("cnn.weight")
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(RmvpeFormatError, match=r"cnn\.weight.*cnn\.kernel"):
        Rmvpe.load(tmp_path / "bad.pt")


def test_missing_structural_key_is_named(tiny_path: Path, tmp_path: Path) -> None:
    state = torch.load(tiny_path, weights_only=True)
    del state["fc.0.gru.weight_hh_l0"]
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(RmvpeFormatError, match=r"fc\.0\.gru\.weight_hh_l0"):
        Rmvpe.load(tmp_path / "bad.pt")


def test_wrong_shape_is_a_format_error(tiny_path: Path, tmp_path: Path) -> None:
    state = torch.load(tiny_path, weights_only=True)
    state["fc.1.bias"] = torch.zeros(10)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(RmvpeFormatError, match=r"fc\.1\.bias"):
        Rmvpe.load(tmp_path / "bad.pt")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[override]
        return (Path.touch, (self.marker,))


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"cnn.weight": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(RmvpeFormatError, match="weights-only"):
        Rmvpe.load(tmp_path / "evil.pt")
    assert not marker.exists()


def test_non_state_dict_payload_is_refused(tmp_path: Path) -> None:
    torch.save([torch.zeros(3)], tmp_path / "list.pt")
    with pytest.raises(RmvpeFormatError, match="state dict"):
        Rmvpe.load(tmp_path / "list.pt")


def test_decode_peak_at_220_hz() -> None:
    centre = bin_of(220.0)
    bins = np.arange(N_BINS)
    salience = np.exp(-0.5 * ((bins - centre) / 1.5) ** 2)[None].repeat(3, axis=0) * 0.9
    salience[1] *= 0.03  # peak 0.027: below the 0.03 threshold
    hz = decode_salience(salience.astype(np.float32), threshold=0.03)
    assert hz[0] == pytest.approx(220.0, rel=2e-3)
    assert hz[1] == 0.0
    assert hz[2] == pytest.approx(220.0, rel=2e-3)


def test_decode_keeps_float64_as_the_webui_does() -> None:
    # The weighted cents mix float32 salience with a float64 grid; the WebUI keeps the
    # result in float64 through the key shift, so rounding here could move a coarse bin.
    centre = bin_of(233.7)
    bins = np.arange(N_BINS)
    salience = (np.exp(-0.5 * ((bins - centre) / 1.3) ** 2) * 0.8).astype(np.float32)[None]
    hz = decode_salience(salience)
    assert hz.dtype == np.float64
    assert float(hz[0]) != float(np.float32(hz[0]))


def test_decode_edges_and_all_zero_frames() -> None:
    salience = np.zeros((3, N_BINS), dtype=np.float32)
    salience[0, 0] = 0.9
    salience[1, N_BINS - 1] = 0.9
    hz = decode_salience(salience)
    assert hz[0] == pytest.approx(10 * 2 ** (CENTS_OFFSET / 1200), rel=1e-4)
    assert hz[1] == pytest.approx(10 * 2 ** ((CENTS_OFFSET + 20 * 359) / 1200), rel=1e-4)
    assert hz[2] == 0.0


def test_mel_filterbank_matches_librosa_htk() -> None:
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=128, fmin=30, fmax=8000, htk=True)
    np.testing.assert_allclose(htk_mel_filterbank(), ref, atol=1e-7)


@pytest.mark.skipif(
    not os.environ.get("RVC_RMVPE_WEIGHTS"),
    reason="RVC_RMVPE_WEIGHTS does not point to a real rmvpe.pt (not downloadable here)",
)
def test_real_weights_find_220_hz() -> None:
    model = Rmvpe.load(Path(os.environ["RVC_RMVPE_WEIGHTS"]))
    f0 = model.f0(harmonic_tone())
    voiced = f0[f0 > 0]
    assert voiced.size > 0.8 * f0.size
    assert np.median(voiced) == pytest.approx(220.0, rel=0.02)
