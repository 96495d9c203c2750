"""Semantic feature encoder: ConvNeXt backbone, resampling stages, linear projection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .sampling import SamplingBlock
from .vocos import VocosBackbone


def _resample_stage(
    dim: int, intermediate_dim: int, *, up: int = 1, down: int = 1
) -> nn.Sequential:
    """One resampling block followed by a two-layer backbone at the same width."""
    return nn.Sequential(
        SamplingBlock(dim=dim, groups=dim, upsample_scale=up, downsample_scale=down),
        VocosBackbone(
            input_channels=dim,
            dim=dim,
            intermediate_dim=intermediate_dim,
            num_layers=2,
            condition_dim=None,
        ),
    )


class Encoder(nn.Module):
    """(B, input_channels, T) features -> (B, out_channels, T') latents."""

    def __init__(
        self,
        input_channels: int,
        vocos_dim: int,
        vocos_intermediate_dim: int,
        vocos_num_layers: int,
        out_channels: int,
        sample_ratios: Sequence[int] | None = None,
        **_: Any,
    ) -> None:
        super().__init__()
        ratios = [1, 1] if sample_ratios is None else list(sample_ratios)
        self.encoder = VocosBackbone(
            input_channels=input_channels,
            dim=vocos_dim,
            intermediate_dim=vocos_intermediate_dim,
            num_layers=vocos_num_layers,
            condition_dim=None,
        )
        self.downsample = nn.Sequential(
            *(_resample_stage(vocos_dim, vocos_intermediate_dim, down=r) for r in ratios)
        )
        self.project = nn.Linear(vocos_dim, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.downsample(self.encoder(x))
        return self.project(h).transpose(1, 2)
