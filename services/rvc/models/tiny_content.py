"""A tiny random HuBERT-shaped content encoder, written in both supported formats, for tests."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import HubertConfig, HubertModel

# Real hop (kernels/strides give 320 samples per frame) and real widths where RVC
# depends on them (768 hidden, 12 layers, 256 projection); everything else minimal.
_CONV_DIM = (32,) * 7
_CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
_CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)
_HEADS = 4
_FFN = 64
_POS_KERNEL = 16
_POS_GROUPS = 16

_TO_FAIRSEQ: tuple[tuple[str, str], ...] = (
    (
        r"feature_extractor\.conv_layers\.(\d+)\.conv\.(\w+)",
        r"feature_extractor.conv_layers.\1.0.\2",
    ),
    (
        r"feature_extractor\.conv_layers\.0\.layer_norm\.(\w+)",
        r"feature_extractor.conv_layers.0.2.\1",
    ),
    (r"feature_projection\.layer_norm\.(\w+)", r"layer_norm.\1"),
    (r"feature_projection\.projection\.(\w+)", r"post_extract_proj.\1"),
    (
        r"encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original0",
        "encoder.pos_conv.0.weight_g",
    ),
    (
        r"encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original1",
        "encoder.pos_conv.0.weight_v",
    ),
    (r"encoder\.pos_conv_embed\.conv\.bias", "encoder.pos_conv.0.bias"),
    (r"encoder\.layer_norm\.(\w+)", r"encoder.layer_norm.\1"),
    (
        r"encoder\.layers\.(\d+)\.attention\.(\w+)_proj\.(\w+)",
        r"encoder.layers.\1.self_attn.\2_proj.\3",
    ),
    (r"encoder\.layers\.(\d+)\.layer_norm\.(\w+)", r"encoder.layers.\1.self_attn_layer_norm.\2"),
    (
        r"encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(\w+)",
        r"encoder.layers.\1.fc1.\2",
    ),
    (r"encoder\.layers\.(\d+)\.feed_forward\.output_dense\.(\w+)", r"encoder.layers.\1.fc2.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(\w+)", r"encoder.layers.\1.final_layer_norm.\2"),
    (r"final_proj\.(\w+)", r"final_proj.\1"),
)


# HuBERT base as RVC ships it (hubert_base.pt / a transformers hubert_base/ folder):
# 12 post-LN layers of width 768, 12 heads, FFN 3072, GELU; a 7-layer conv feature
# extractor of 512 channels without bias, group norm on its first layer only;
# positional conv of kernel 128 in 16 groups; final_proj 768 -> 256 (read by v1 voices).
# Source: the HuBERT paper's BASE setup and fairseq's hubert_base.pt metadata
# (conv_feature_layers "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2", conv_pos 128,
# conv_pos_groups 16, final_dim 256); 94,567,808 parameters (+768 masked_spec_embed in
# the real file), which at fp16 fits the 189,206,711-byte hubert_base/pytorch_model.bin.
_FULL_CONV_DIM = (512,) * 7
_FULL_HEADS = 12
_FULL_FFN = 3072
_FULL_POS_KERNEL = 128
_FULL_POS_GROUPS = 16

SIZES = ("tiny", "full")


def _config(heads: int, ffn: int, conv_dim: tuple[int, ...], pos_kernel: int,
            pos_groups: int) -> HubertConfig:
    # HubertConfig's defaults are HuBERT base's: GELU, group norm on the first conv
    # layer only, no conv bias, post-LN layers.
    return HubertConfig(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=heads,
        intermediate_size=ffn,
        conv_dim=conv_dim,
        conv_kernel=_CONV_KERNEL,
        conv_stride=_CONV_STRIDE,
        num_conv_pos_embeddings=pos_kernel,
        num_conv_pos_embedding_groups=pos_groups,
        classifier_proj_size=256,
        mask_time_prob=0.0,
    )


def full_hubert_config() -> HubertConfig:
    """The real HuBERT-base layout (random weights), as RVC's content encoder reads it."""
    return _config(_FULL_HEADS, _FULL_FFN, _FULL_CONV_DIM, _FULL_POS_KERNEL, _FULL_POS_GROUPS)


def hubert_config(size: str = "tiny") -> HubertConfig:
    """The HubertConfig the writer uses for ``size`` ("tiny" or "full")."""
    if size == "tiny":
        return tiny_hubert_config()
    if size == "full":
        return full_hubert_config()
    raise ValueError(f"unknown model size {size!r}, expected one of {SIZES}")


def tiny_hubert_config() -> HubertConfig:
    """The tiny model's HubertConfig."""
    return _config(_HEADS, _FFN, _CONV_DIM, _POS_KERNEL, _POS_GROUPS)


def _tiny_weights(seed: int, size: str = "tiny") -> dict[str, torch.Tensor]:
    """HubertModel weights plus final_proj, named as the WebUI's transformers export, fp16."""
    config = hubert_config(size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = HubertModel(config)
        proj = nn.Linear(config.hidden_size, config.classifier_proj_size)
    weights = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    weights.update({f"final_proj.{k}": v.detach().half() for k, v in proj.state_dict().items()})
    return weights


def write_tiny_hubert(directory: Path, seed: int = 0, size: str = "tiny") -> None:
    """Write a transformers-format HuBERT (config, preprocessor config, safetensors).

    ``size="full"`` writes the real HuBERT-base shapes (about 189 MB at fp16)."""
    config = hubert_config(size)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config.architectures = ["HubertModelWithFinalProj"]
    (directory / "config.json").write_text(config.to_json_string())
    preprocessor = {
        "do_normalize": False,
        "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1,
        "padding_side": "right",
        "padding_value": 0.0,
        "return_attention_mask": False,
        "sampling_rate": 16000,
    }
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    save_file(
        _tiny_weights(seed, size), str(directory / "model.safetensors"), metadata={"format": "pt"}
    )


def _fairseq_name(name: str) -> str:
    for pattern, target in _TO_FAIRSEQ:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, target, name)
    raise KeyError(name)


def write_tiny_fairseq_hubert(path: Path, seed: int = 0) -> None:
    """Write the same tiny model as a fairseq hubert_base.pt (model, args Namespace, cfg)."""
    model = {_fairseq_name(k): v for k, v in _tiny_weights(seed).items()}
    gen = torch.Generator().manual_seed(seed)
    # Pre-training-only tensors a real file carries; the loader must skip them.
    model["mask_emb"] = torch.rand(768, generator=gen).half()
    model["label_embs_concat"] = torch.randn(504, 256, generator=gen).half()
    conv_spec = "[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2"
    hyper = {
        "_name": "hubert",
        "extractor_mode": "default",
        "encoder_layers": 12,
        "encoder_embed_dim": 768,
        "encoder_ffn_embed_dim": _FFN,
        "encoder_attention_heads": _HEADS,
        "activation_fn": "gelu",
        "conv_feature_layers": conv_spec,
        "conv_bias": False,
        "conv_pos": _POS_KERNEL,
        "conv_pos_groups": _POS_GROUPS,
        "layer_norm_first": False,
        "final_dim": 256,
        "untie_final_proj": False,
        "dropout": 0.1,
        "layerdrop": 0.05,
        "mask_prob": 0.8,
    }
    task = {
        "_name": "hubert_pretraining",
        "sample_rate": 16000,
        "normalize": False,
        "label_rate": 50,
    }
    args = argparse.Namespace(
        arch="hubert",
        task="hubert_pretraining",
        normalize=False,
        **{k: v for k, v in hyper.items() if k != "_name"},
    )
    checkpoint = {
        "args": args,
        "cfg": {"_name": None, "model": hyper, "task": task},
        "model": model,
        "optimizer_history": [],
        "extra_state": {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
