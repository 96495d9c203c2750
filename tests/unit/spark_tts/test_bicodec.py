"""BiCodec with a tiny config: shapes, mel definition, quantizer, strict checkpoint loading."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from spark_tts.bicodec.factorized_vq import FactorizedVectorQuantize
from spark_tts.bicodec.mel import MelSpectrogram, hz_to_slaney_mel, slaney_mel_to_hz
from spark_tts.bicodec.model import BiCodec, build_bicodec, load_bicodec
from spark_tts.bicodec.sampling import SamplingBlock

HOP = 320
TINY = {
    "mel_params": {
        "sample_rate": 16000,
        "n_fft": 1024,
        "win_length": 640,
        "hop_length": HOP,
        "mel_fmin": 10,
        "mel_fmax": None,
        "num_mels": 32,
    },
    "encoder": {
        "input_channels": 32,
        "vocos_dim": 16,
        "vocos_intermediate_dim": 32,
        "vocos_num_layers": 2,
        "out_channels": 32,
        "sample_ratios": [1, 1],
    },
    "decoder": {
        "input_channel": 32,
        "channels": 32,
        "rates": [8, 5, 4, 2],
        "kernel_sizes": [16, 11, 8, 4],
    },
    "quantizer": {
        "input_dim": 32,
        "codebook_size": 64,
        "codebook_dim": 4,
        "commitment": 0.25,
        "codebook_loss_weight": 2.0,
        "use_l2_normlize": True,
        "threshold_ema_dead_code": 0.2,
    },
    "speaker_encoder": {
        "input_dim": 32,
        "out_dim": 32,
        "latent_dim": 16,
        "token_num": 4,
        "fsq_levels": [4, 4, 4, 4],
        "fsq_num_quantizers": 1,
    },
    "prenet": {
        "input_channels": 32,
        "vocos_dim": 16,
        "vocos_intermediate_dim": 32,
        "vocos_num_layers": 2,
        "out_channels": 32,
        "condition_dim": 32,
        "sample_ratios": [1, 1],
        "use_tanh_at_final": False,
    },
    "postnet": {
        "input_channels": 32,
        "vocos_dim": 16,
        "vocos_intermediate_dim": 32,
        "vocos_num_layers": 1,
        "out_channels": 32,
        "use_tanh_at_final": False,
    },
}


@pytest.fixture(scope="module")
def model() -> BiCodec:
    torch.manual_seed(0)
    return build_bicodec(copy.deepcopy(TINY)).eval()


@pytest.fixture(scope="module")
def checkpoint_dir(model: BiCodec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bicodec")
    (root / "config.yaml").write_text(yaml.safe_dump({"audio_tokenizer": TINY}))
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "model.safetensors")
    )
    return root


def _write_checkpoint(root: Path, state: dict[str, torch.Tensor]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump({"audio_tokenizer": TINY}))
    save_file({k: v.contiguous() for k, v in state.items()}, str(root / "model.safetensors"))
    return root


def test_detokenize_yields_hop_samples_per_token(model: BiCodec) -> None:
    semantic = torch.randint(0, 64, (2, 7))
    global_tokens = torch.randint(0, 4**4, (2, 1, 4), dtype=torch.int32)
    wav = model.detokenize(semantic, global_tokens)
    assert wav.shape == (2, 1, 7 * HOP)
    assert torch.isfinite(wav).all() and wav.abs().max() <= 1.0


def test_tokenize_then_detokenize(model: BiCodec) -> None:
    torch.manual_seed(1)
    feat = torch.randn(2, 9, 32)
    ref_wav = torch.randn(2, 1, 16000) * 0.1
    semantic, global_tokens = model.tokenize(feat, ref_wav)
    assert semantic.shape == (2, 9)
    assert int(semantic.min()) >= 0 and int(semantic.max()) < 64
    assert global_tokens.shape == (2, 1, 4)
    # A 2-D reference waveform is accepted too and gives the same tokens.
    assert torch.equal(model.tokenize(feat, ref_wav[:, 0])[1], global_tokens)
    assert model.detokenize(semantic, global_tokens).shape == (2, 1, 9 * HOP)


def test_vq_finds_its_own_codewords() -> None:
    torch.manual_seed(2)
    vq = FactorizedVectorQuantize(input_dim=4, codebook_size=16, codebook_dim=4, commitment=0.25)
    codes = vq.codebook.weight.detach().t().unsqueeze(0) * 3.0  # scale must not matter (cosine)
    assert torch.equal(vq.tokenize(codes), torch.arange(16).unsqueeze(0))
    assert torch.allclose(vq.detokenize(torch.arange(16).unsqueeze(0)), codes / 3.0)


@pytest.mark.parametrize(("up", "down", "out_len"), [(1, 1, 10), (2, 1, 20), (1, 2, 5), (3, 1, 30)])
def test_sampling_block_lengths(up: int, down: int, out_len: int) -> None:
    block = SamplingBlock(dim=8, groups=8, upsample_scale=up, downsample_scale=down)
    assert block(torch.randn(2, 10, 8)).shape == (2, 8, out_len)


def _numpy_slaney_mel(
    wav: np.ndarray, sr: int, n_fft: int, win: int, hop: int, fmin: float, n_mels: int
) -> np.ndarray:
    """Independent float64 reference: |STFT| of a centred Hann window, Slaney filters."""

    def to_mel(f: np.ndarray) -> np.ndarray:
        return np.where(
            f >= 1000.0,
            15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) * 27.0 / np.log(6.4),
            f * 3.0 / 200.0,
        )

    def to_hz(m: np.ndarray) -> np.ndarray:
        return np.where(
            m >= 15.0, 1000.0 * np.exp((m - 15.0) * np.log(6.4) / 27.0), m * 200.0 / 3.0
        )

    window = np.zeros(n_fft)
    start = (n_fft - win) // 2
    window[start : start + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    padded = np.pad(wav, n_fft // 2, mode="reflect")
    n_frames = 1 + (len(padded) - n_fft) // hop
    frames = np.stack([padded[i * hop : i * hop + n_fft] for i in range(n_frames)])
    mag = np.abs(np.fft.rfft(frames * window, axis=-1))  # (frames, n_freqs)

    freqs = np.linspace(0, sr // 2, n_fft // 2 + 1)
    edges = to_hz(np.linspace(to_mel(np.array(fmin)), to_mel(np.array(sr / 2)), n_mels + 2))
    fb = np.zeros((len(freqs), n_mels))
    for j in range(n_mels):
        lo, mid, hi = edges[j], edges[j + 1], edges[j + 2]
        tri = np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid))
        fb[:, j] = np.maximum(tri, 0.0) * 2.0 / (hi - lo)
    return (mag @ fb).T  # (n_mels, frames)


def test_mel_matches_numpy_definition() -> None:
    rng = np.random.default_rng(3)
    wav = (rng.standard_normal(8000) * 0.2).astype(np.float32)
    mel = MelSpectrogram.from_mel_params(TINY["mel_params"])
    ours = mel(torch.from_numpy(wav).view(1, 1, -1))[0, 0].double().numpy()
    expected = _numpy_slaney_mel(wav.astype(np.float64), 16000, 1024, 640, HOP, 10.0, 32)
    assert ours.shape == expected.shape == (32, 1 + 8000 // HOP)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_slaney_scale_breakpoint() -> None:
    assert hz_to_slaney_mel(1000.0) == pytest.approx(15.0)
    assert hz_to_slaney_mel(500.0) == pytest.approx(7.5)
    back = slaney_mel_to_hz(torch.tensor([7.5, 15.0, 30.0], dtype=torch.float64))
    assert torch.allclose(
        back, torch.tensor([500.0, 1000.0, 1000.0 * 6.4 ** (15 / 27)], dtype=torch.float64)
    )


def test_mel_buffers_stay_out_of_state_dict(model: BiCodec) -> None:
    # The official checkpoint has no mel tensors, so they must not be expected by a strict load.
    assert not [k for k in model.state_dict() if k.startswith("mel_transformer.")]
    assert any(k.endswith("weight_g") for k in model.state_dict())


def test_load_bicodec_round_trips_strictly(model: BiCodec, checkpoint_dir: Path) -> None:
    loaded = load_bicodec(checkpoint_dir)
    assert not loaded.training
    assert not [k for k in loaded.state_dict() if k.endswith(("weight_g", "weight_v"))]
    semantic = torch.randint(0, 64, (1, 5))
    global_tokens = torch.randint(0, 4**4, (1, 1, 4), dtype=torch.int32)
    reference = model.detokenize(semantic, global_tokens)
    torch.testing.assert_close(
        loaded.detokenize(semantic, global_tokens), reference, rtol=1e-4, atol=1e-5
    )


def _broken_states(
    state: dict[str, torch.Tensor],
) -> list[tuple[str, dict[str, torch.Tensor], str]]:
    victim = "prenet.vocos_backbone.norm.scale.weight"
    renamed = dict(state)
    renamed["prenet.vocos_backbone.norm.scales.weight"] = renamed.pop(victim)
    missing = {k: v for k, v in state.items() if k != "quantizer.cluster_size"}
    reshaped = dict(state)
    reshaped["quantizer.codebook.weight"] = torch.zeros(65, 4)
    return [
        ("renamed", renamed, "prenet.vocos_backbone.norm.scales.weight"),
        ("missing", missing, "quantizer.cluster_size"),
        ("reshaped", reshaped, "quantizer.codebook.weight"),
    ]


def test_load_bicodec_rejects_bad_keys(model: BiCodec, tmp_path: Path) -> None:
    state = dict(model.state_dict())
    for label, broken, offending in _broken_states(state):
        root = _write_checkpoint(tmp_path / label, broken)
        with pytest.raises(ValueError, match=offending.replace(".", r"\.")):
            load_bicodec(root)
