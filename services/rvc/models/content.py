"""HuBERT / ContentVec content features for RVC, on transformers' HubertModel."""

from __future__ import annotations

import ast
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import HubertConfig, HubertModel

# RVC v1 voices read layer 9 through final_proj, v2 voices read layer 12 as is.
_VERSION_LAYER = {"v1": 9, "v2": 12}

# Checkpoint parts that only matter for pre-training (masking, cluster labels).
_FAIRSEQ_DROPPED = frozenset({"label_embs_concat", "label_embs", "mask_emb"})
_HF_DROPPED = frozenset({"masked_spec_embed"})

# Pickled metadata may name these plain data holders (fairseq's own classes include its
# Dictionary and config enums); they load as inert stubs and are never imported.
_INERT_EXACT = frozenset(
    {
        "argparse.Namespace",
        "typing.Any",
        "numpy.dtype",
        "numpy.ndarray",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
    }
)
_INERT_PREFIXES = ("fairseq.", "omegaconf.", "numpy.dtypes.")

# fairseq activation names -> transformers ACT2FN names (gelu_fast is fairseq's alias
# for the tanh approximation).
_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_accurate": "gelu_pytorch_tanh",
    "gelu_fast": "gelu_pytorch_tanh",
    "relu": "relu",
    "tanh": "tanh",
    "linear": "linear",
}

_WN_G = "hubert.encoder.pos_conv_embed.conv.parametrizations.weight.original0"
_WN_V = "hubert.encoder.pos_conv_embed.conv.parametrizations.weight.original1"
_L = r"encoder\.layers\.(\d+)\."
_H = r"hubert.encoder.layers.\1."
_FAIRSEQ_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(src), dst)
    for src, dst in (
        (
            r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)",
            r"hubert.feature_extractor.conv_layers.\1.conv.\2",
        ),
        (
            r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)",
            r"hubert.feature_extractor.conv_layers.0.layer_norm.\1",
        ),
        (
            r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)",
            r"hubert.feature_extractor.conv_layers.\1.layer_norm.\2",
        ),
        (r"layer_norm\.(weight|bias)", r"hubert.feature_projection.layer_norm.\1"),
        (r"post_extract_proj\.(weight|bias)", r"hubert.feature_projection.projection.\1"),
        (r"encoder\.pos_conv\.0\.weight_g", _WN_G),
        (r"encoder\.pos_conv\.0\.weight_v", _WN_V),
        (r"encoder\.pos_conv\.0\.bias", "hubert.encoder.pos_conv_embed.conv.bias"),
        (r"encoder\.layer_norm\.(weight|bias)", r"hubert.encoder.layer_norm.\1"),
        (_L + r"self_attn\.(k|v|q|out)_proj\.(weight|bias)", _H + r"attention.\2_proj.\3"),
        (_L + r"self_attn_layer_norm\.(weight|bias)", _H + r"layer_norm.\2"),
        (_L + r"fc1\.(weight|bias)", _H + r"feed_forward.intermediate_dense.\2"),
        (_L + r"fc2\.(weight|bias)", _H + r"feed_forward.output_dense.\2"),
        (_L + r"final_layer_norm\.(weight|bias)", _H + r"final_layer_norm.\2"),
        (r"final_proj\.(weight|bias)", r"final_proj.\1"),
    )
)


class ContentFormatError(ValueError):
    """A content-encoder checkpoint is missing, unsafe, or not a HuBERT-base layout."""


class _InertRecord:
    """Stands in for a pickled data-holder class; it only stores what it is given."""

    qualified_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> _InertRecord:
        obj = super().__new__(cls)
        obj.args = args
        obj.fields = {}
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        # Kept as data only: setattr from a pickle could shadow our own attributes.
        self.fields = dict(state) if isinstance(state, dict) else {"state": state}

    def __repr__(self) -> str:
        return f"<inert {self.qualified_name}>"


def _is_inert_name(name: str) -> bool:
    return name in _INERT_EXACT or name.startswith(_INERT_PREFIXES)


def _safe_torch_load(path: Path) -> Any:
    """torch.load with weights_only; allowlisted metadata classes load as inert stubs."""
    names: list[str] = []
    try:
        if zipfile.is_zipfile(path):
            names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception as exc:
        raise ContentFormatError(f"{path}: not a readable torch checkpoint ({exc})") from exc
    refused = [n for n in names if not _is_inert_name(n)]
    if refused:
        raise ContentFormatError(
            f"{path}: refusing to load, the pickle references code outside the allowlist: "
            + ", ".join(refused)
        )
    stubs = [(type(n.rsplit(".", 1)[-1], (_InertRecord,), {"qualified_name": n}), n) for n in names]
    try:
        with torch.serialization.safe_globals(stubs):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ContentFormatError(f"{path}: cannot be loaded safely ({exc})") from exc


def _plain(value: Any) -> Any:
    # A stubbed enum member was rebuilt as Stub(value); its value is what we need.
    if isinstance(value, _InertRecord):
        return value.args[0] if len(value.args) == 1 else value.fields.get("_value_")
    return value


def _meta(ckpt: dict, key: str, default: Any = None) -> Any:
    """First value of ``key`` in cfg.model, cfg.task, then the legacy args namespace."""
    cfg = ckpt.get("cfg")
    sections: list[Any] = []
    if isinstance(cfg, dict):
        sections += [cfg.get("model"), cfg.get("task")]
    args = ckpt.get("args")
    sections.append(args.fields if isinstance(args, _InertRecord) else args)
    for section in sections:
        if isinstance(section, dict) and section.get(key) is not None:
            return _plain(section[key])
    return default


def _eval_int_expr(node: ast.AST) -> Any:
    """Evaluate list/tuple/int literals joined by + and *, as fairseq's conv spec strings are."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_eval_int_expr(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = _eval_int_expr(node.left), _eval_int_expr(node.right)
        if isinstance(node.op, ast.Mult) and not (isinstance(right, int) and 0 <= right <= 64):
            raise ValueError("only list * small int repeats are allowed")
        result = left + right if isinstance(node.op, ast.Add) else left * right
        if isinstance(result, list) and len(result) > 64:
            raise ValueError("too many conv layers")
        return result
    raise ValueError(f"unsupported syntax {type(node).__name__}")


def _conv_strides(ckpt: dict, kernels: list[int], path: Path) -> list[int]:
    spec = _meta(ckpt, "conv_feature_layers")
    if spec is None:
        if kernels == [10, 3, 3, 3, 3, 2, 2]:
            return [5, 2, 2, 2, 2, 2, 2]
        raise ContentFormatError(f"{path}: no conv_feature_layers in the metadata")
    try:
        layers = _eval_int_expr(ast.parse(str(spec), mode="eval").body)
        strides = [int(s) for (_, _, s) in layers]
        spec_kernels = [int(k) for (_, k, _) in layers]
    except (ValueError, TypeError, SyntaxError) as exc:
        raise ContentFormatError(f"{path}: bad conv_feature_layers {spec!r} ({exc})") from exc
    if spec_kernels != kernels:
        raise ContentFormatError(f"{path}: conv_feature_layers {spec!r} disagree with the weights")
    return strides


def _rename_fairseq(weights: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in weights.items():
        if key in _FAIRSEQ_DROPPED:
            continue
        if not isinstance(tensor, torch.Tensor):
            raise ContentFormatError(f"{path}: model entry {key!r} is not a tensor")
        for pattern, target in _FAIRSEQ_RULES:
            if pattern.fullmatch(key):
                renamed[pattern.sub(target, key)] = tensor
                break
        else:
            raise ContentFormatError(f"{path}: unexpected fairseq key {key!r}")
    return renamed


def _conv_ln(i: int) -> str:
    return f"hubert.feature_extractor.conv_layers.{i}.layer_norm"


def _fairseq_config(ckpt: dict, sd: dict[str, torch.Tensor], path: Path) -> HubertConfig:
    """Rebuild the HubertConfig from tensor shapes plus the few facts shapes cannot tell."""
    if _meta(ckpt, "layer_norm_first", False):
        raise ContentFormatError(f"{path}: layer_norm_first models are not HuBERT-base")
    try:
        n_conv = 1 + max(int(k.split(".")[3]) for k in sd if ".conv_layers." in k)
        convs = [sd[f"hubert.feature_extractor.conv_layers.{i}.conv.weight"] for i in range(n_conv)]
        n_layers = 1 + max(int(k.split(".")[3]) for k in sd if ".encoder.layers." in k)
        hidden = sd["hubert.feature_projection.projection.weight"].shape[0]
        pos_v = sd[_WN_V]
        config = HubertConfig(
            hidden_size=hidden,
            num_hidden_layers=n_layers,
            num_attention_heads=int(_meta(ckpt, "encoder_attention_heads", 12)),
            intermediate_size=sd[
                "hubert.encoder.layers.0.feed_forward.intermediate_dense.weight"
            ].shape[0],
            hidden_act=_ACTIVATIONS[str(_meta(ckpt, "activation_fn", "gelu"))],
            feat_extract_norm="group" if f"{_conv_ln(0)}.weight" in sd else "layer",
            conv_dim=[int(w.shape[0]) for w in convs],
            conv_kernel=[int(w.shape[2]) for w in convs],
            conv_stride=_conv_strides(ckpt, [int(w.shape[2]) for w in convs], path),
            conv_bias="hubert.feature_extractor.conv_layers.0.conv.bias" in sd,
            num_conv_pos_embeddings=int(pos_v.shape[2]),
            num_conv_pos_embedding_groups=hidden // int(pos_v.shape[1]),
            classifier_proj_size=sd["final_proj.weight"].shape[0],
        )
    except Exception as exc:  # shape lookups, int() and HubertConfig's own validation
        raise ContentFormatError(f"{path}: not a HuBERT-base layout ({exc!r})") from exc
    return config


def _read_transformers_dir(path: Path) -> tuple[HubertConfig, dict[str, torch.Tensor]]:
    try:
        config = HubertConfig.from_dict(json.loads((path / "config.json").read_text()))
    except Exception as exc:  # I/O, JSON, or HubertConfig's own validation
        raise ContentFormatError(f"{path}: unreadable config.json ({exc})") from exc
    if (path / "model.safetensors").is_file():
        from safetensors.torch import load_file

        try:
            raw = load_file(str(path / "model.safetensors"))
        except Exception as exc:
            raise ContentFormatError(f"{path}: unreadable model.safetensors ({exc})") from exc
    elif (path / "pytorch_model.bin").is_file():
        raw = _safe_torch_load(path / "pytorch_model.bin")
    else:
        raise ContentFormatError(f"{path}: no model.safetensors or pytorch_model.bin")
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ContentFormatError(f"{path}: the weights file does not hold a state dict")
    sd: dict[str, torch.Tensor] = {}
    for key, tensor in raw.items():
        name = key[len("hubert.") :] if key.startswith("hubert.") else key
        if name in _HF_DROPPED:
            continue
        # Older transformers saved the weight-normed conv as weight_g / weight_v.
        name = name.replace(
            "pos_conv_embed.conv.weight_g", "pos_conv_embed.conv.parametrizations.weight.original0"
        )
        name = name.replace(
            "pos_conv_embed.conv.weight_v", "pos_conv_embed.conv.parametrizations.weight.original1"
        )
        sd[name if name.startswith("final_proj.") else "hubert." + name] = tensor
    # preprocessor_config.json is not read: its do_normalize (true in the WebUI's converted
    # hubert_base/) is ignored by the WebUI too, whose extract_hubert_features feeds the
    # waveform as it is.
    return config, sd


def _read_fairseq(path: Path) -> tuple[HubertConfig, dict[str, torch.Tensor]]:
    ckpt = _safe_torch_load(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise ContentFormatError(f"{path}: expected a fairseq checkpoint with a 'model' dict")
    sd = _rename_fairseq(ckpt["model"], path)
    # The task's `normalize` flag is ignored, as the WebUI main branch ignores it.
    return _fairseq_config(ckpt, sd, path), sd


class ContentEncoder(nn.Module):
    """HuBERT-base / ContentVec with final_proj: 20 ms content frames for RVC v1/v2.

    The waveform goes in as it is, never standardised, as in the WebUI main branch's
    ``extract_hubert_features``, whatever the checkpoint's metadata says.
    """

    def __init__(self, config: HubertConfig) -> None:
        super().__init__()
        self.hubert = HubertModel(config)
        self.final_proj = nn.Linear(config.hidden_size, config.classifier_proj_size)

    @classmethod
    def load(
        cls, path: Path, device: torch.device | str = "cpu", half: bool = False
    ) -> ContentEncoder:
        """Load a transformers-format directory or a fairseq hubert_base.pt, strictly."""
        path = Path(path)
        if path.is_dir():
            config, sd = _read_transformers_dir(path)
        elif path.is_file():
            config, sd = _read_fairseq(path)
        else:
            raise ContentFormatError(f"{path}: no such file or directory")
        if config.do_stable_layer_norm:
            raise ContentFormatError(f"{path}: stable-layer-norm (large) HuBERT is not supported")
        # Inference only: no SpecAugment embedding, no layer drop.
        config.mask_time_prob = config.mask_feature_prob = config.layerdrop = 0.0
        with torch.device("meta"):
            model = cls(config)
        _check_keys(model, sd, path)
        sd = {k: v.to(torch.float32) for k, v in sd.items()}
        try:
            model.load_state_dict(sd, strict=True, assign=True)
        except RuntimeError as exc:
            raise ContentFormatError(f"{path}: weights do not fit the config ({exc})") from exc
        # Fold weight norm once in fp32; recomputing the norm in fp16 each call loses precision.
        torch.nn.utils.parametrize.remove_parametrizations(
            model.hubert.encoder.pos_conv_embed.conv, "weight", leave_parametrized=True
        )
        model = model.to(
            device=torch.device(device), dtype=torch.float16 if half else torch.float32
        )
        model.requires_grad_(False)
        return model.eval()

    def num_frames(self, n_samples: int) -> int:
        """Frames the conv stack yields for ``n_samples`` input samples (0 when too short)."""
        length = n_samples
        config = self.hubert.config
        for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
            length = (length - kernel) // stride + 1
            if length < 1:
                return 0
        return length

    def feature_dim(self, version: str) -> int:
        """Width of the features ``extract`` returns for ``version``."""
        if version not in _VERSION_LAYER:
            raise ValueError(f"unknown RVC version {version!r}, expected 'v1' or 'v2'")
        config = self.hubert.config
        return config.classifier_proj_size if version == "v1" else config.hidden_size

    def _hidden(self, wav: torch.Tensor, n_layers: int) -> torch.Tensor:
        # Same path as HubertModel.forward without a mask; stopping after n_layers is
        # what fairseq's output_layer=n returns for post-LN HuBERT (no final norm).
        hubert = self.hubert
        x = hubert.feature_projection(hubert.feature_extractor(wav).transpose(1, 2))
        encoder = hubert.encoder
        x = encoder.layer_norm(x + encoder.pos_conv_embed(x))
        for layer in encoder.layers[:n_layers]:
            x = layer(x, attention_mask=None)
            if isinstance(x, tuple):
                x = x[0]
        return x

    @torch.inference_mode()
    def extract(self, wav16k: torch.Tensor, version: str) -> torch.Tensor:
        """[1, N] 16 kHz mono -> [1, T, 256] (v1) or [1, T, 768] (v2), T = num_frames(N)."""
        if version not in _VERSION_LAYER:
            raise ValueError(f"unknown RVC version {version!r}, expected 'v1' or 'v2'")
        if wav16k.dim() != 2:
            raise ValueError(
                f"expected a [batch, samples] waveform, got shape {tuple(wav16k.shape)}"
            )
        if self.num_frames(wav16k.shape[-1]) < 1:
            raise ValueError(f"{wav16k.shape[-1]} samples are too short for one content frame")
        wav = wav16k.to(self.final_proj.weight.dtype)
        feats = self._hidden(wav, _VERSION_LAYER[version])
        return self.final_proj(feats) if version == "v1" else feats


def _check_keys(model: nn.Module, sd: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    unknown = sorted(set(sd) - set(expected))
    missing = sorted(set(expected) - set(sd))
    if unknown:
        raise ContentFormatError(f"{path}: unexpected weight(s): {', '.join(unknown[:8])}")
    if missing:
        raise ContentFormatError(f"{path}: missing weight(s): {', '.join(missing[:8])}")
    for key, tensor in sd.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ContentFormatError(
                f"{path}: {key} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(expected[key].shape)}"
            )
