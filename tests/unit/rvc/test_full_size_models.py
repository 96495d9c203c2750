"""Full-size untrained RVC models: real shapes and parameter counts, built on the meta device.

Reference numbers and where they come from:

* HuBERT base as RVC uses it: the 189,206,711-byte ``hubert_base/pytorch_model.bin`` and the
  189,507,909-byte fairseq ``hubert_base.pt`` that RVC tools pin by size; both store fp16,
  so each holds about 94.6M floats (HubertModel 94.37M + final_proj 768 -> 256).
* RMVPE: the 181,184,272-byte ``rmvpe.pt`` of lj1995/VoiceConversionWebUI (its fp32 ONNX
  export is 362,003,174 bytes, so the .pt stores fp16), built upstream as
  ``E2E(4, 1, (2, 2))`` in infer/lib/rmvpe.py.
* Voices: the config lists of ``extract_small_model`` in the WebUI's
  infer/lib/train/process_ckpt.py (= the "model" sections of configs/v1/*.json and
  configs/v2/*.json); key counts of the pretrained ``pretrained_v2/f0G48k.pth`` as a
  third-party port documents them (560 keys, of which enc_q 103, which voices drop).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
import torch

from services.rvc.models.checkpoint import to_weight_norm_keys
from services.rvc.models.content import ContentEncoder
from services.rvc.models.rmvpe import Rmvpe, _infer_config
from services.rvc.models.synthesizer import synthesizer_class
from services.rvc.models.tiny_content import full_hubert_config, hubert_config
from services.rvc.models.tiny_rmvpe import FULL_CONFIG, TINY_CONFIG, rmvpe_config, write_tiny_rmvpe
from services.rvc.models.tiny_voice import full_config, tiny_config, voice_config, write_tiny_voice
from services.rvc.tiny_models import MARKER, is_current

HUBERT_BIN_BYTES = 189_206_711
HUBERT_FAIRSEQ_BYTES = 189_507_909
RMVPE_PT_BYTES = 181_184_272


def _floats(module: torch.nn.Module) -> int:
    return sum(t.numel() for t in module.state_dict().values() if t.is_floating_point())


def _near_fp16_file(n_floats: int, file_bytes: int, slack: float = 0.005) -> bool:
    """fp16 payload fits in the file and leaves no more than ``slack`` for the container."""
    payload = 2 * n_floats
    return payload < file_bytes and (file_bytes - payload) < slack * file_bytes


def test_full_hubert_matches_hubert_base() -> None:
    config = full_hubert_config()
    assert (config.hidden_size, config.num_hidden_layers) == (768, 12)
    assert (config.num_attention_heads, config.intermediate_size) == (12, 3072)
    assert tuple(config.conv_dim) == (512,) * 7
    assert tuple(config.conv_kernel) == (10, 3, 3, 3, 3, 2, 2)
    assert tuple(config.conv_stride) == (5, 2, 2, 2, 2, 2, 2)
    assert math.prod(config.conv_stride) == 320  # 20 ms content frames at 16 kHz
    assert (config.num_conv_pos_embeddings, config.num_conv_pos_embedding_groups) == (128, 16)
    assert config.conv_bias is False and config.feat_extract_norm == "group"
    assert config.classifier_proj_size == 256
    with torch.device("meta"):
        encoder = ContentEncoder(config)
    # Inference model: no masking embedding (the loaders drop the files' copy of it).
    assert _floats(encoder.hubert) == 94_370_944
    total = _floats(encoder)
    assert total == 94_370_944 + 768 * 256 + 256
    # The transformers file also holds masked_spec_embed (768); the fairseq one mask_emb
    # (768) and label_embs_concat (504 x 256).
    assert _near_fp16_file(total + 768, HUBERT_BIN_BYTES, slack=0.001)
    assert _near_fp16_file(total + 768 + 504 * 256, HUBERT_FAIRSEQ_BYTES, slack=0.001)
    assert encoder.feature_dim("v1") == 256 and encoder.feature_dim("v2") == 768


def test_full_rmvpe_matches_public_checkpoint() -> None:
    assert FULL_CONFIG == {
        "widths": (16, 32, 64, 128, 256),
        "mid": 512,
        "n_inter": 4,
        "n_blocks": 4,
        "gru_hidden": 256,
        "n_gru": 1,
    }
    with torch.device("meta"):
        model = Rmvpe(**rmvpe_config("full"))
    state = model.state_dict()
    assert _floats(model) == 90_472_799
    assert sum(p.numel() for p in model.parameters()) == 90_423_165
    assert _near_fp16_file(_floats(model), RMVPE_PT_BYTES)
    # The loader reads the same architecture back from the shapes alone.
    assert _infer_config(state) == {**FULL_CONFIG, "in_channels": 1}


# extract_small_model's lists, per (version, rate); v2 40k uses the v1 40k list.
_WEBUI_LISTS = {
    ("v1", 32000): (513, [10, 4, 2, 2, 2], [16, 16, 4, 4, 4]),
    ("v1", 40000): (1025, [10, 10, 2, 2], [16, 16, 4, 4]),
    ("v1", 48000): (1025, [10, 6, 2, 2, 2], [16, 16, 4, 4, 4]),
    ("v2", 32000): (513, [10, 8, 2, 2], [20, 16, 4, 4]),
    ("v2", 40000): (1025, [10, 10, 2, 2], [16, 16, 4, 4]),
    ("v2", 48000): (1025, [12, 10, 2, 2], [24, 20, 4, 4]),
}


@pytest.mark.parametrize(("version", "rate"), sorted(_WEBUI_LISTS))
def test_full_voice_config_is_the_webui_list(version: str, rate: int) -> None:
    spec, ups, kernels = _WEBUI_LISTS[(version, rate)]
    expected = [
        spec, 32, 192, 192, 768, 2, 6, 3, 0, "1", [3, 7, 11],
        [[1, 3, 5], [1, 3, 5], [1, 3, 5]], ups, 512, kernels, 109, 256, rate,
    ]  # fmt: skip
    assert full_config(version, rate).to_list() == expected
    assert voice_config(version, rate, "full") == full_config(version, rate)


# Parameters of the voice's weight dict (enc_q excluded), per (version, f0, rate).
_VOICE_PARAMS = {
    ("v2", True, 48000): 28_716_994,
    ("v1", True, 40000): 27_439_042,
    ("v2", False, 40000): 27_465_920,
    ("v1", False, 32000): 27_402_432,
}


@pytest.mark.parametrize(("version", "f0", "rate"), sorted(_VOICE_PARAMS))
def test_full_voice_parameter_counts(version: str, f0: bool, rate: int) -> None:
    with torch.device("meta"):
        model = synthesizer_class(version, f0)(full_config(version, rate))
    weights = to_weight_norm_keys(model.state_dict())
    assert sum(t.numel() for t in weights.values()) == _VOICE_PARAMS[(version, f0, rate)]
    assert weights["emb_g.weight"].shape == (109, 256)
    assert weights["enc_p.emb_phone.weight"].shape == (192, 256 if version == "v1" else 768)
    assert ("enc_p.emb_pitch.weight" in weights) == f0


def test_full_v2_48k_f0_keys_match_the_pretrained_generator() -> None:
    with torch.device("meta"):
        model = synthesizer_class("v2", True)(full_config("v2", 48000))
    keys = list(to_weight_norm_keys(model.state_dict()))
    by_prefix = {p: sum(k.startswith(p + ".") for k in keys) for p in ("enc_p", "dec", "flow")}
    assert by_prefix == {"enc_p": 113, "dec": 243, "flow": 100}
    assert len(keys) == 560 - 103  # the training generator's keys less enc_q's


def test_unknown_size_is_refused() -> None:
    with pytest.raises(ValueError):
        hubert_config("huge")
    with pytest.raises(ValueError):
        rmvpe_config("huge")
    with pytest.raises(ValueError):
        voice_config("v2", 48000, "huge")


# --- tiny stays exactly as before (tests and the local stack depend on its bytes) ---


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_tiny_defaults_unchanged(tmp_path: Path) -> None:
    assert rmvpe_config() == TINY_CONFIG
    assert TINY_CONFIG == {
        "widths": (2, 3, 4, 5, 6), "mid": 7, "n_inter": 4, "n_blocks": 4,
        "gru_hidden": 8, "n_gru": 1,
    }  # fmt: skip
    assert voice_config("v2", 48000) == tiny_config("v2", 48000)
    tiny = hubert_config()
    assert (tiny.num_attention_heads, tiny.intermediate_size) == (4, 64)
    assert tuple(tiny.conv_dim) == (32,) * 7
    # torch.save names its archive folder after the file stem, so the names are pinned too.
    write_tiny_rmvpe(tmp_path / "r.pt", seed=0)
    assert _sha(tmp_path / "r.pt") == "07134d14433e5e4a"
    for version, f0, rate, digest in (
        ("v1", True, 40000, "8621fb761c851dc4"),
        ("v2", True, 48000, "c975c5dc9578543a"),
        ("v1", False, 32000, "ae04aff6dfc14e00"),
    ):
        path = tmp_path / f"{version}{f0}{rate}.pth"
        write_tiny_voice(path, version, f0, rate, seed=1)
        assert _sha(path) == digest, (version, f0, rate)


def test_is_current_tells_sizes_apart(tmp_path: Path) -> None:
    assert not is_current(tmp_path)
    (tmp_path / MARKER).write_text("version 1 seed 0\nUntrained RVC models ...\n")
    assert is_current(tmp_path) and is_current(tmp_path, 0, "tiny")
    assert not is_current(tmp_path, 0, "full") and not is_current(tmp_path, 1)
    (tmp_path / MARKER).write_text("version 1 seed 0 size full\nFull-size layers ...\n")
    assert is_current(tmp_path, 0, "full")
    assert not is_current(tmp_path) and not is_current(tmp_path, 1, "full")
