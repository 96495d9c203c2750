"""Writes random-weight RVC voices in the real WebUI file format, for tests and benchmarks.

Tiny voices have tiny widths, but the upsampling layout (hence hop length) is the real one
for the version and sample rate, and the file has every field and key name a real voice
has. Full-size voices have the real config list, hence the real shapes and parameter count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from services.rvc.models.checkpoint import to_weight_norm_keys
from services.rvc.models.synthesizer import SynthesizerConfig, synthesizer_class

# (upsample_rates, upsample_kernel_sizes) per version and sample rate, from the WebUI's
# configs/v1/*.json and configs/v2/*.json; v2 at 40k trains with the v1 40k layout.
_LAYOUTS: dict[tuple[str, int], tuple[list[int], list[int]]] = {
    ("v1", 32000): ([10, 4, 2, 2, 2], [16, 16, 4, 4, 4]),
    ("v1", 40000): ([10, 10, 2, 2], [16, 16, 4, 4]),
    ("v1", 48000): ([10, 6, 2, 2, 2], [16, 16, 4, 4, 4]),
    ("v2", 32000): ([10, 8, 2, 2], [20, 16, 4, 4]),
    ("v2", 40000): ([10, 10, 2, 2], [16, 16, 4, 4]),
    ("v2", 48000): ([12, 10, 2, 2], [24, 20, 4, 4]),
}

TINY_INFO = "untrained generated test voice (random weights, tiny widths); not a real voice"
FULL_INFO = "untrained generated benchmark voice (random weights, real sizes); not a real voice"

SIZES = ("tiny", "full")
# Real speaker-table rows and speaker-conditioning width of every WebUI voice.
_FULL_SPEAKERS = 109
_FULL_GIN = 256


@dataclass(frozen=True)
class _Widths:
    inter: int  # inter_channels (and hidden_channels)
    filter: int  # filter_channels
    layers: int  # n_layers of the text encoder
    upsample_initial: int
    gin: int  # speaker-conditioning width


_TINY = _Widths(inter=16, filter=32, layers=2, upsample_initial=64, gin=16)
# The real list (the WebUI's extract_small_model in infer/lib/train/process_ckpt.py,
# which agrees with the "model" sections of configs/v1/*.json and configs/v2/*.json).
_FULL = _Widths(inter=192, filter=768, layers=6, upsample_initial=512, gin=_FULL_GIN)


def _config(version: str, sample_rate: int, widths: _Widths, speakers: int) -> SynthesizerConfig:
    """The config list a voice file stores, with the real layout for version and rate."""
    if (version, sample_rate) not in _LAYOUTS:
        raise ValueError(f"no RVC layout for version {version!r} at {sample_rate} Hz")
    rates, kernels = _LAYOUTS[(version, sample_rate)]
    spec_channels = 513 if sample_rate == 32000 else 1025  # filter_length // 2 + 1
    return SynthesizerConfig.from_list(
        [
            spec_channels,
            32,  # segment_size, as the WebUI writes it
            widths.inter,  # inter_channels
            widths.inter,  # hidden_channels
            widths.filter,  # filter_channels
            2,  # n_heads
            widths.layers,  # n_layers
            3,  # kernel_size
            0,  # p_dropout, as written to the file
            "1",
            [3, 7, 11],
            [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
            rates,
            widths.upsample_initial,
            kernels,
            speakers,
            widths.gin,
            sample_rate,
        ]
    )


def tiny_config(version: str, sample_rate: int, speakers: int = 4) -> SynthesizerConfig:
    """A valid config with tiny widths and the real upsampling layout."""
    return _config(version, sample_rate, _TINY, speakers)


def full_config(version: str, sample_rate: int) -> SynthesizerConfig:
    """The config list the WebUI writes into a real voice of this version and rate."""
    return _config(version, sample_rate, _FULL, _FULL_SPEAKERS)


def voice_config(version: str, sample_rate: int, size: str = "tiny") -> SynthesizerConfig:
    """The config the writer uses for ``size`` ("tiny" or "full")."""
    if size == "tiny":
        return tiny_config(version, sample_rate)
    if size == "full":
        return full_config(version, sample_rate)
    raise ValueError(f"unknown model size {size!r}, expected one of {SIZES}")


def _randomize(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Scaled random init that keeps activations O(1), so random voices give sane audio."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("original0"):
                continue  # set from the direction below, so the effective weight is v itself
            if p.ndim == 1:
                base = torch.ones_like(p) if name.endswith("gamma") else torch.zeros_like(p)
                p.copy_(base + 0.02 * torch.randn(p.shape, generator=gen))
                continue
            fan_in = p[0].numel() if not name.startswith("emb_g") else 1
            gain = 0.5 if ("proj" in name or "post" in name) else 1.0
            p.copy_(torch.randn(p.shape, generator=gen) * gain / math.sqrt(fan_in))
        for name, p in model.named_parameters():
            if name.endswith("original0"):
                direction = model.get_parameter(name[: -len("0")] + "1")
                norms = direction.flatten(1).norm(dim=1)
                p.copy_(norms.view(p.shape))


def write_tiny_voice(
    path: Path,
    version: str,
    pitch_guided: bool,
    sample_rate: int = 40000,
    seed: int = 0,
    size: str = "tiny",
) -> None:
    """Writes a real-format voice file (fp16 weights, weight_g/weight_v keys) at ``path``.

    ``size="full"`` uses the real WebUI config (about 55-58 MB per file)."""
    config = voice_config(version, sample_rate, size)
    gen = torch.Generator().manual_seed(seed)
    model = synthesizer_class(version, pitch_guided)(config)
    _randomize(model, gen)
    weights = {k: v.detach().half() for k, v in to_weight_norm_keys(model.state_dict()).items()}
    ckpt = {
        "weight": weights,
        "config": config.to_list(),
        "info": TINY_INFO if size == "tiny" else FULL_INFO,
        "sr": f"{sample_rate // 1000}k",
        "f0": int(pitch_guided),
        "version": version,
    }
    torch.save(ckpt, Path(path))
