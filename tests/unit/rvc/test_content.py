"""Content encoder: both checkpoint formats, layer choice, frame count, and safe loading."""

from __future__ import annotations

import argparse
import enum
import json
import os
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from services.rvc.models.content import ContentEncoder, ContentFormatError
from services.rvc.models.tiny_content import write_tiny_fairseq_hubert, write_tiny_hubert


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Tiny ops: a thread pool only adds contention on a shared CI box.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hubert")
    write_tiny_hubert(root / "hf", seed=3)
    write_tiny_fairseq_hubert(root / "hubert_base.pt", seed=3)
    return {"root": root, "hf": root / "hf", "fairseq": root / "hubert_base.pt"}


@pytest.fixture(scope="module")
def hf_encoder(tiny: dict[str, Path]) -> ContentEncoder:
    return ContentEncoder.load(tiny["hf"])


@pytest.fixture(scope="module")
def fairseq_encoder(tiny: dict[str, Path]) -> ContentEncoder:
    return ContentEncoder.load(tiny["fairseq"])


def _wav(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(1, n, generator=gen)


def _trusted_load(path: Path) -> dict:
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def _fairseq_reference(model: dict, wav: torch.Tensor, n_layers: int, heads: int) -> torch.Tensor:
    """fairseq HuBERT-base (post-LN) forward written straight from the fairseq key names."""
    w = {k: v.float() for k, v in model.items()}
    strides = (5, 2, 2, 2, 2, 2, 2)
    x = wav[:, None]
    for i, stride in enumerate(strides):
        x = F.conv1d(x, w[f"feature_extractor.conv_layers.{i}.0.weight"], stride=stride)
        if i == 0:
            gn_w = w["feature_extractor.conv_layers.0.2.weight"]
            x = F.group_norm(x, x.shape[1], gn_w, w["feature_extractor.conv_layers.0.2.bias"])
        x = F.gelu(x)
    x = x.transpose(1, 2)
    x = F.layer_norm(x, x.shape[-1:], w["layer_norm.weight"], w["layer_norm.bias"])
    x = F.linear(x, w["post_extract_proj.weight"], w["post_extract_proj.bias"])
    g, v = w["encoder.pos_conv.0.weight_g"], w["encoder.pos_conv.0.weight_v"]
    kernel = v.shape[2]
    weight = g * v / v.norm(dim=(0, 1), keepdim=True)
    pos = F.conv1d(
        x.transpose(1, 2),
        weight,
        w["encoder.pos_conv.0.bias"],
        padding=kernel // 2,
        groups=x.shape[-1] // v.shape[1],
    )
    if kernel % 2 == 0:
        pos = pos[:, :, :-1]
    x = x + F.gelu(pos).transpose(1, 2)
    x = F.layer_norm(x, x.shape[-1:], w["encoder.layer_norm.weight"], w["encoder.layer_norm.bias"])
    for i in range(n_layers):
        p = f"encoder.layers.{i}."

        def lin(name: str, t: torch.Tensor, p: str = p) -> torch.Tensor:
            return F.linear(t, w[p + name + ".weight"], w[p + name + ".bias"])

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)

        q, k, vv = (split(lin(f"self_attn.{n}_proj", x)) for n in "qkv")
        att = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1) @ vv
        x = x + lin("self_attn.out_proj", att.transpose(1, 2).reshape(x.shape))
        x = F.layer_norm(
            x,
            x.shape[-1:],
            w[p + "self_attn_layer_norm.weight"],
            w[p + "self_attn_layer_norm.bias"],
        )
        x = x + lin("fc2", F.gelu(lin("fc1", x)))
        x = F.layer_norm(
            x, x.shape[-1:], w[p + "final_layer_norm.weight"], w[p + "final_layer_norm.bias"]
        )
    return x


def test_formats_agree_and_dims(
    hf_encoder: ContentEncoder, fairseq_encoder: ContentEncoder
) -> None:
    wav = _wav(16000)
    v1 = hf_encoder.extract(wav, "v1")
    v2 = hf_encoder.extract(wav, "v2")
    assert v1.shape == (1, 49, 256) and v1.dtype == torch.float32
    assert v2.shape == (1, 49, 768)
    assert torch.isfinite(v2).all() and v2.std() > 0.1
    torch.testing.assert_close(fairseq_encoder.extract(wav, "v1"), v1, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fairseq_encoder.extract(wav, "v2"), v2, rtol=1e-4, atol=1e-4)
    assert hf_encoder.feature_dim("v1") == 256 and hf_encoder.feature_dim("v2") == 768


def test_matches_fairseq_semantics(tiny: dict[str, Path], fairseq_encoder: ContentEncoder) -> None:
    """output_layer=9 / 12 of a fairseq forward over the raw fairseq tensors."""
    ckpt = _trusted_load(tiny["fairseq"])
    wav = _wav(8000, seed=1)
    heads = ckpt["args"].encoder_attention_heads
    ref9 = _fairseq_reference(ckpt["model"], wav, 9, heads)
    ref9 = F.linear(
        ref9, ckpt["model"]["final_proj.weight"].float(), ckpt["model"]["final_proj.bias"].float()
    )
    ref12 = _fairseq_reference(ckpt["model"], wav, 12, heads)
    torch.testing.assert_close(fairseq_encoder.extract(wav, "v1"), ref9, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(fairseq_encoder.extract(wav, "v2"), ref12, rtol=1e-3, atol=1e-3)


def test_matches_transformers_hidden_states(
    tiny: dict[str, Path], hf_encoder: ContentEncoder
) -> None:
    """v1 is hidden_states[9] through final_proj, v2 the last hidden state, as the WebUI reads."""
    from transformers import HubertModel

    ref = HubertModel.from_pretrained(str(tiny["hf"]), dtype=torch.float32).eval()
    wav = _wav(12345, seed=2)
    with torch.no_grad():
        out = ref(wav, output_hidden_states=True)
    v1 = hf_encoder.final_proj(out.hidden_states[9]).detach()
    torch.testing.assert_close(hf_encoder.extract(wav, "v1"), v1, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(
        hf_encoder.extract(wav, "v2"), out.last_hidden_state, rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("n", [400, 719, 720, 1000, 16000, 16001, 16320, 24000 + 123])
def test_frame_count(hf_encoder: ContentEncoder, n: int) -> None:
    # The conv stack's receptive field is 400 samples and its hop 320.
    expected = (n - 400) // 320 + 1
    assert hf_encoder.num_frames(n) == expected
    assert hf_encoder.extract(_wav(n), "v2").shape == (1, expected, 768)


def test_too_short_and_bad_version(hf_encoder: ContentEncoder) -> None:
    assert hf_encoder.num_frames(399) == 0
    with pytest.raises(ValueError, match="too short"):
        hf_encoder.extract(_wav(399), "v2")
    with pytest.raises(ValueError, match="v3"):
        hf_encoder.extract(_wav(1600), "v3")


def test_half_precision(tiny: dict[str, Path], hf_encoder: ContentEncoder) -> None:
    half = ContentEncoder.load(tiny["hf"], half=True)
    wav = _wav(4000)
    out = half.extract(wav, "v2")
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), hf_encoder.extract(wav, "v2"), rtol=0.05, atol=0.05)


def test_normalize_metadata_is_ignored(
    tiny: dict[str, Path], hf_encoder: ContentEncoder, tmp_path: Path
) -> None:
    """do_normalize (transformers) and normalize (fairseq) change nothing: the WebUI main
    branch feeds HuBERT the waveform as it is, whatever the checkpoint says."""
    norm_dir = tmp_path / "norm"
    norm_dir.mkdir()
    for name in ("config.json", "model.safetensors"):
        os.symlink(tiny["hf"] / name, norm_dir / name)
    (norm_dir / "preprocessor_config.json").write_text(json.dumps({"do_normalize": True}))

    def normalizing(ckpt: dict) -> None:
        ckpt["args"].normalize = True
        ckpt["cfg"]["task"]["normalize"] = True

    fairseq = _resave(tiny["fairseq"], tmp_path / "norm.pt", normalizing)
    # Quiet and off-centre: standardising this would change the features a lot.
    wav = 0.003 * _wav(4000) + 0.002
    expect = hf_encoder.extract(wav, "v2")
    assert not torch.allclose(hf_encoder.extract(F.layer_norm(wav, wav.shape[-1:]), "v2"), expect)
    for path in (norm_dir, fairseq):
        torch.testing.assert_close(ContentEncoder.load(path).extract(wav, "v2"), expect)


def test_legacy_transformers_names(
    tiny: dict[str, Path], hf_encoder: ContentEncoder, tmp_path: Path
) -> None:
    """pytorch_model.bin, a hubert. prefix and weight_g/weight_v still load."""
    from safetensors.torch import load_file

    weights = load_file(str(tiny["hf"] / "model.safetensors"))
    legacy = {}
    for key, value in weights.items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        key = key.replace("parametrizations.weight.original1", "weight_v")
        legacy[key if key.startswith("final_proj") else "hubert." + key] = value
    legacy["hubert.masked_spec_embed"] = torch.zeros(768)
    out = tmp_path / "legacy"
    out.mkdir()
    shutil.copy(tiny["hf"] / "config.json", out / "config.json")
    torch.save(legacy, out / "pytorch_model.bin")
    wav = _wav(3200)
    torch.testing.assert_close(
        ContentEncoder.load(out).extract(wav, "v1"), hf_encoder.extract(wav, "v1")
    )


def test_fairseq_file_layout(tiny: dict[str, Path]) -> None:
    ckpt = _trusted_load(tiny["fairseq"])
    assert isinstance(ckpt["args"], argparse.Namespace)
    model = ckpt["model"]
    for key in (
        "feature_extractor.conv_layers.0.0.weight",
        "feature_extractor.conv_layers.0.2.weight",
        "post_extract_proj.weight",
        "layer_norm.bias",
        "encoder.pos_conv.0.weight_g",
        "encoder.pos_conv.0.weight_v",
        "encoder.pos_conv.0.bias",
        "encoder.layer_norm.weight",
        "encoder.layers.11.self_attn.out_proj.bias",
        "encoder.layers.0.self_attn_layer_norm.weight",
        "encoder.layers.5.fc1.weight",
        "encoder.layers.5.final_layer_norm.bias",
        "mask_emb",
        "final_proj.weight",
        "label_embs_concat",
    ):
        assert key in model, key


def _resave(src: Path, dst: Path, edit) -> Path:
    ckpt = _trusted_load(src)
    edit(ckpt)
    torch.save(ckpt, dst)
    return dst


def test_fairseq_metadata_sources(
    tiny: dict[str, Path], fairseq_encoder: ContentEncoder, tmp_path: Path
) -> None:
    """Metadata only in args (old fairseq) or only in cfg (newer) both work."""
    wav = _wav(4000)
    ref = fairseq_encoder.extract(wav, "v2")
    args_only = _resave(tiny["fairseq"], tmp_path / "a.pt", lambda c: c.update(cfg=None))
    cfg_only = _resave(tiny["fairseq"], tmp_path / "c.pt", lambda c: c.update(args=None))
    for path in (args_only, cfg_only):
        torch.testing.assert_close(ContentEncoder.load(path).extract(wav, "v2"), ref)


def test_renamed_and_missing_keys(tiny: dict[str, Path], tmp_path: Path) -> None:
    def rename(c: dict) -> None:
        c["model"]["encoder.layers.3.fc_1.weight"] = c["model"].pop("encoder.layers.3.fc1.weight")

    with pytest.raises(ContentFormatError, match=r"encoder\.layers\.3\.fc_1\.weight"):
        ContentEncoder.load(_resave(tiny["fairseq"], tmp_path / "r.pt", rename))
    drop = _resave(
        tiny["fairseq"],
        tmp_path / "m.pt",
        lambda c: c["model"].pop("encoder.layers.7.final_layer_norm.bias"),
    )
    with pytest.raises(ContentFormatError, match=r"encoder\.layers\.7\.final_layer_norm\.bias"):
        ContentEncoder.load(drop)

    from safetensors.torch import load_file, save_file

    bad_dir = tmp_path / "hf_bad"
    bad_dir.mkdir()
    shutil.copy(tiny["hf"] / "config.json", bad_dir / "config.json")
    weights = load_file(str(tiny["hf"] / "model.safetensors"))
    weights["lm_head.weight"] = torch.zeros(2, 2)
    save_file(weights, str(bad_dir / "model.safetensors"))
    with pytest.raises(ContentFormatError, match=r"lm_head\.weight"):
        ContentEncoder.load(bad_dir)
    with pytest.raises(ContentFormatError, match="no such file"):
        ContentEncoder.load(tmp_path / "absent.pt")


def test_fairseq_objects_in_metadata(
    tiny: dict[str, Path],
    fairseq_encoder: ContentEncoder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """fairseq enums, its Dictionary and numpy scalars load as inert stubs, never imported."""
    choice = enum.Enum(
        "ChoiceEnum", {"GELU": "gelu"}, module="fairseq.dataclass.constants", qualname="ChoiceEnum"
    )
    dictionary = type("Dictionary", (), {"__module__": "fairseq.data.dictionary"})
    constants = types.ModuleType("fairseq.dataclass.constants")
    constants.ChoiceEnum = choice
    dict_module = types.ModuleType("fairseq.data.dictionary")
    dict_module.Dictionary = dictionary
    for name in ("fairseq", "fairseq.dataclass", "fairseq.data"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "fairseq.dataclass.constants", constants)
    monkeypatch.setitem(sys.modules, "fairseq.data.dictionary", dict_module)

    def edit(c: dict) -> None:
        c["args"].activation_fn = choice.GELU
        c["cfg"]["model"]["activation_fn"] = choice.GELU
        labels = dictionary()
        labels.symbols, labels.indices = ["<s>", "0"], {"<s>": 0, "0": 1}
        c["task_state"] = {"dictionaries": [labels]}
        c["extra_state"] = {"best": np.float64(1.5)}

    path = _resave(tiny["fairseq"], tmp_path / "objects.pt", edit)
    monkeypatch.undo()
    found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    for name in ("fairseq.dataclass.constants.ChoiceEnum", "fairseq.data.dictionary.Dictionary"):
        assert name in found
    wav = _wav(2000)
    torch.testing.assert_close(
        ContentEncoder.load(path).extract(wav, "v1"), fairseq_encoder.extract(wav, "v1")
    )
    assert "fairseq" not in sys.modules


class _Evil:
    def __init__(self, func, arg: str) -> None:
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("kind", ["system", "eval"])
def test_malicious_pickle_refused(tiny: dict[str, Path], tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "pwned"
    if kind == "system":
        payload = _Evil(os.system, f"touch {marker}")
    else:
        payload = _Evil(eval, f"__import__('pathlib').Path({str(marker)!r}).touch()")
    path = _resave(tiny["fairseq"], tmp_path / "evil.pt", lambda c: c.update(args=payload))
    with pytest.raises(ContentFormatError, match="refusing") as info:
        ContentEncoder.load(path)
    assert ("system" in str(info.value)) if kind == "system" else ("eval" in str(info.value))
    assert not marker.exists()


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ContentFormatError):
        ContentEncoder.load(path)
