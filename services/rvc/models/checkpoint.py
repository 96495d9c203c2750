"""Reads RVC WebUI voice files (``.pth``) safely and builds their synthesizer.

A voice file is a pickled dict: ``weight`` (state dict without ``enc_q.*``, usually fp16),
``config`` (the 18-entry list of SynthesizerConfig), ``f0`` (1/0), ``version``
("v1"/"v2", absent in old v1 files), ``sr`` ("40k", ...) and ``info``. It is only ever
opened with ``weights_only=True``: a voice file must never run code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from services.rvc.models.synthesizer import (
    FEATURE_DIMS,
    SAMPLE_RATE_NAMES,
    Synthesizer,
    SynthesizerConfig,
    synthesizer_class,
)

# Weight norm is stored either by the old torch API (weight_g / weight_v) or by the
# parametrize API; our modules use the latter, so file keys are mapped onto it.
_OLD_SUFFIXES = (".weight_g", ".weight_v")
_NEW_SUFFIXES = (".parametrizations.weight.original0", ".parametrizations.weight.original1")
_SR_NAME = re.compile(r"^(\d+)k$")
_SPEAKER_KEY = "emb_g.weight"
_PITCH_KEY = "enc_p.emb_pitch.weight"
_SHOWN = 10


class VoiceFormatError(ValueError):
    """The file is not a loadable RVC voice; the message says exactly what is wrong."""


class UnsafeVoiceError(VoiceFormatError):
    """Unpickling the file would import code a voice never holds (a pickle bomb, or a foreign file)."""


@dataclass(frozen=True)
class VoiceInfo:
    version: str
    sample_rate: int
    pitch_guided: bool
    feature_dim: int
    hop_length: int
    speakers: int
    info: str


def to_parametrized_keys(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Renames ``X.weight_g``/``X.weight_v`` to the parametrize API's names; others pass."""
    out: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        new = key
        for old_suffix, new_suffix in zip(_OLD_SUFFIXES, _NEW_SUFFIXES, strict=True):
            if key.endswith(old_suffix):
                new = key[: -len(old_suffix)] + new_suffix
        if new in out:
            raise VoiceFormatError(f"weight {key!r} duplicates another key's weight-norm tensor")
        out[new] = value
    return out


def to_weight_norm_keys(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse rename: parametrize API names to the ``weight_g``/``weight_v`` form."""
    out: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        for old_suffix, new_suffix in zip(_OLD_SUFFIXES, _NEW_SUFFIXES, strict=True):
            if key.endswith(new_suffix):
                key = key[: -len(new_suffix)] + old_suffix
        out[key] = value
    return out


def _listing(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    more = f", ... ({len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return f"{len(keys)}: " + ", ".join(keys[:_SHOWN]) + more


def _load_pickle(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise VoiceFormatError(f"cannot read voice file {path}: {exc}") from exc
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        text = str(exc)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        # Skip torch's generic weights_only preamble; keep the line that names the problem.
        detail = next(
            (line for line in lines if "GLOBAL" in line or "Unsupported" in line),
            lines[0] if lines else "",
        )
        # torch's advice to allowlist the global is never right for a voice file.
        detail = detail.split(" Please use `torch.serialization")[0]
        detail = f"{type(exc).__name__}: {detail[:300]}".rstrip(": ")
        if "GLOBAL" in text:
            raise UnsafeVoiceError(
                f"voice file {path} refused: unpickling it would import Python objects that a "
                f"voice file never contains (unsafe or foreign file): {detail}"
            ) from exc
        raise VoiceFormatError(
            f"voice file {path} is not a readable PyTorch checkpoint: {detail}"
        ) from exc


def _check_weights(path: Path, weights: Any) -> dict[str, torch.Tensor]:
    if not isinstance(weights, Mapping) or not weights:
        raise VoiceFormatError(f"voice file {path}: 'weight' must be a non-empty dict of tensors")
    bad = [
        str(k)
        for k, v in weights.items()
        if not isinstance(k, str) or not isinstance(v, torch.Tensor) or not v.is_floating_point()
    ]
    if bad:
        raise VoiceFormatError(
            f"voice file {path}: weight entries that are not float tensors ({_listing(bad)})"
        )
    # The posterior encoder is training-only; some tools leave it in, harmlessly.
    return {k: v for k, v in weights.items() if not k.startswith("enc_q.")}


def read_voice(path: Path) -> tuple[VoiceInfo, dict[str, torch.Tensor], list]:
    """Opens a voice file with ``weights_only=True`` and validates its fields.

    Returns the info, the ``weight`` dict (``enc_q.*`` dropped) and the ``config`` list with
    spk_embed_dim set to ``emb_g`` rows, as the WebUI does. Raises VoiceFormatError."""
    path = Path(path)
    ckpt = _load_pickle(path)
    if not isinstance(ckpt, Mapping):
        raise VoiceFormatError(f"voice file {path} holds a {type(ckpt).__name__}, not a dict")
    if "weight" not in ckpt:
        hint = (
            " (it looks like a training checkpoint G_*.pth: extract a small model from it)"
            if "model" in ckpt
            else ""
        )
        raise VoiceFormatError(f"voice file {path} has no 'weight' entry{hint}")
    weights = _check_weights(path, ckpt["weight"])

    version = ckpt.get("version", "v1")  # files from before v2 existed carry no version
    if version not in FEATURE_DIMS:
        raise VoiceFormatError(f"voice file {path}: version {version!r} is not 'v1' or 'v2'")

    if "f0" in ckpt:
        f0 = ckpt["f0"]
        if isinstance(f0, bool):
            f0 = int(f0)
        if not isinstance(f0, int) or f0 not in (0, 1):
            raise VoiceFormatError(f"voice file {path}: f0 must be 1 or 0, got {f0!r}")
        pitch_guided = f0 == 1
    else:
        pitch_guided = _PITCH_KEY in weights

    speaker_table = weights.get(_SPEAKER_KEY)
    if speaker_table is None or speaker_table.ndim != 2 or speaker_table.shape[0] < 1:
        raise VoiceFormatError(f"voice file {path}: missing or malformed {_SPEAKER_KEY!r}")

    config = ckpt.get("config")
    if not isinstance(config, (list, tuple)):
        raise VoiceFormatError(f"voice file {path}: 'config' must be a list, got {config!r:.100}")
    config = list(config)
    if len(config) >= 3:
        config[-3] = int(speaker_table.shape[0])
    try:
        parsed = SynthesizerConfig.from_list(config)
    except ValueError as exc:
        raise VoiceFormatError(f"voice file {path}: {exc}") from exc

    sr_name = ckpt.get("sr")
    if sr_name is not None:
        match = _SR_NAME.match(sr_name) if isinstance(sr_name, str) else None
        rate = SAMPLE_RATE_NAMES.get(sr_name) if match else None
        if rate is None and match:
            rate = int(match.group(1)) * 1000
        if rate != parsed.sample_rate:
            raise VoiceFormatError(
                f"voice file {path}: sr {sr_name!r} disagrees with the config's sample rate "
                f"{parsed.sample_rate}"
            )

    info_text = ckpt.get("info", "")
    info = VoiceInfo(
        version=version,
        sample_rate=parsed.sample_rate,
        pitch_guided=pitch_guided,
        feature_dim=FEATURE_DIMS[version],
        hop_length=parsed.hop_length,
        speakers=int(speaker_table.shape[0]),
        info=info_text if isinstance(info_text, str) else str(info_text),
    )
    return info, weights, config


def _match_state(
    path: Path, model: Synthesizer, weights: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Maps file keys onto the model's names; any key or shape difference is an error."""
    mapped = to_parametrized_keys(weights)
    expected = model.state_dict()
    missing = expected.keys() - mapped.keys()
    unexpected = mapped.keys() - expected.keys()
    # Errors name keys as the file spells them (either weight-norm style).
    file_name = {internal: key for key, internal in zip(weights, mapped, strict=True)}
    if missing or unexpected:
        old_style = any(k.endswith(_OLD_SUFFIXES) for k in weights)
        shown_missing = to_weight_norm_keys(dict.fromkeys(missing)) if old_style else missing
        shown_unexpected = [file_name[k] for k in unexpected]
        parts = []
        if missing:
            parts.append(f"missing keys ({_listing(shown_missing)})")
        if unexpected:
            parts.append(f"unexpected keys ({_listing(shown_unexpected)})")
        raise VoiceFormatError(
            f"voice file {path} does not match {type(model).__name__} for its config: "
            + "; ".join(parts)
        )
    bad = [
        f"{file_name[k]} file {list(v.shape)} vs model {list(expected[k].shape)}"
        for k, v in mapped.items()
        if v.shape != expected[k].shape
    ]
    if bad:
        raise VoiceFormatError(f"voice file {path}: shape mismatches ({_listing(bad)})")
    nonfinite = [file_name[k] for k, v in mapped.items() if not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise VoiceFormatError(f"voice file {path}: NaN/inf in ({_listing(nonfinite)})")
    return mapped


def check_voice(path: Path) -> VoiceInfo:
    """Every check ``load_synthesizer`` makes, without allocating the model.

    The synthesizer is laid out on the meta device, so a forged config (huge widths)
    costs nothing before its shapes are compared with the file's tensors."""
    path = Path(path)
    info, weights, config = read_voice(path)
    parsed = SynthesizerConfig.from_list(config)
    # Each layer the config asks for holds at least one tensor of the file: this bounds
    # the modules built (and the time taken) by the file's size.
    blocks = len(parsed.upsample_rates) * len(parsed.resblock_kernel_sizes)
    depth = max(len(d) for d in parsed.resblock_dilation_sizes)
    layers = parsed.n_layers + len(parsed.upsample_rates) + blocks * depth
    if layers > len(weights):
        raise VoiceFormatError(
            f"voice file {path}: its config asks for {layers} layers but the file holds "
            f"{len(weights)} weight tensors"
        )
    with torch.device("meta"):
        model = synthesizer_class(info.version, info.pitch_guided)(parsed)
    _match_state(path, model, weights)
    return info


def load_synthesizer(
    path: Path, device: torch.device | str = "cpu", half: bool = False
) -> tuple[VoiceInfo, Synthesizer]:
    """Builds the voice's synthesizer, loads it strictly, folds weight norm, eval() on device.

    Parameters are fp16 if ``half`` else fp32, whatever the file stores."""
    path = Path(path)
    info, weights, config = read_voice(path)
    model = synthesizer_class(info.version, info.pitch_guided)(SynthesizerConfig.from_list(config))
    state = _match_state(path, model, weights)
    model.load_state_dict(state, strict=True)
    # Fold weight norm in fp32 before any cast, so fp16 weights come from exact products.
    model.remove_weight_norm()
    model.requires_grad_(False)
    model.eval()
    return info, model.to(device=device, dtype=torch.float16 if half else torch.float32)
