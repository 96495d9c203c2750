"""A tiny random-weight RMVPE checkpoint with the public key names, for fast tests."""

from __future__ import annotations

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


def write_tiny_rmvpe(path: Path, seed: int = 0) -> None:
    """Save a seeded random RMVPE state dict (same keys as rmvpe.pt, tiny widths) to `path`."""
    gen = torch.Generator().manual_seed(seed)
    model = Rmvpe(**TINY_CONFIG)
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
