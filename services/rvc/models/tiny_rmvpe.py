"""Random-weight RMVPE checkpoints with the public key names: tiny for fast tests, or full size."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from services.rvc.models.rmvpe import Rmvpe

# Widths grow level by level so every 1x1 shortcut the public file has also exists here.
TINY_CONFIG: dict[str, object] = {
    "widths": (2, 3, 4, 5, 6),
    "mid": 7,
    "n_inter": 4,
    "n_blocks": 4,
    "gru_hidden": 8,
    "n_gru": 1,
}


# The public rmvpe.pt (lj1995/VoiceConversionWebUI), built upstream as E2E(4, 1, (2, 2)):
# 4 residual blocks per stage, one BiGRU layer, 2x2 pooling, 5 U-Net levels starting at
# 16 channels and doubling, 4 intermediate layers at twice the deepest width, GRU 256
# units each way (source: infer/lib/rmvpe.py of RVC-Project/Retrieval-based-Voice-
# Conversion-WebUI). That is 90,472,799 floats; the real file is 181,184,272 bytes, so
# it stores them as fp16, and the full-size writer does too.
FULL_CONFIG: dict[str, object] = {
    "widths": (16, 32, 64, 128, 256),
    "mid": 512,
    "n_inter": 4,
    "n_blocks": 4,
    "gru_hidden": 256,
    "n_gru": 1,
}

SIZES = ("tiny", "full")


def rmvpe_config(size: str = "tiny") -> dict[str, object]:
    """Constructor arguments of ``Rmvpe`` for ``size`` ("tiny" or "full")."""
    if size == "tiny":
        return dict(TINY_CONFIG)
    if size == "full":
        return dict(FULL_CONFIG)
    raise ValueError(f"unknown model size {size!r}, expected one of {SIZES}")


def _full_state(model: Rmvpe, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Fan-in scaled random weights, so 40-odd stacked layers stay finite even in fp16."""
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = value.clone()
            continue
        noise = torch.randn(value.shape, generator=gen)
        if key.endswith("running_var"):
            tensor = 1.0 + 0.1 * noise.abs()
        elif key.endswith("running_mean"):
            tensor = 0.05 * noise
        elif value.ndim == 1:
            # Batch-norm scales near one; every other vector (biases) near zero.
            is_bn_scale = key.endswith(".weight")
            tensor = (1.0 if is_bn_scale else 0.0) + 0.05 * noise
        else:
            fan_in = value[0].numel()
            if key.startswith("fc.0.gru.weight"):
                fan_in = value.shape[1]
            # Residual sums add up level by level; half the unit gain keeps them bounded.
            tensor = noise * (0.5 / math.sqrt(fan_in))
        state[key] = tensor.half()
    return state


def write_tiny_rmvpe(path: Path, seed: int = 0, size: str = "tiny") -> None:
    """Save a seeded random RMVPE state dict (same keys as rmvpe.pt) to `path`.

    ``size="tiny"`` has tiny widths (fp32); ``size="full"`` has the real file's shapes and
    fp16 storage (about 181 MB)."""
    config = rmvpe_config(size)
    gen = torch.Generator().manual_seed(seed)
    model = Rmvpe(**config)
    if size == "full":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save(_full_state(model, gen), Path(path))
        return
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = value.clone()
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(value.shape, generator=gen)
        elif key.endswith("running_mean"):
            state[key] = 0.1 * torch.randn(value.shape, generator=gen)
        else:
            state[key] = 0.3 * torch.randn(value.shape, generator=gen)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, Path(path))
