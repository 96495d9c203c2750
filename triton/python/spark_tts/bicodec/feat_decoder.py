"""Latent decoder used as BiCodec's prenet (speaker-conditioned) and postnet."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .feat_encoder import _resample_stage
from .vocos import VocosBackbone


class Decoder(nn.Module):
    """(B, input_channels, T) -> (B, out_channels, T'), optionally conditioned on (B, condition_dim)."""

    def __init__(
        self,
        input_channels: int,
        vocos_dim: int,
        vocos_intermediate_dim: int,
        vocos_num_layers: int,
        out_channels: int,
        condition_dim: int | None = None,
        sample_ratios: Sequence[int] | None = None,
        use_tanh_at_final: bool = False,
        **_: Any,
    ) -> None:
        super().__init__()
        ratios = [1, 1] if sample_ratios is None else list(sample_ratios)
        self.linear_pre = nn.Linear(input_channels, vocos_dim)
        # Named "downsample" in the checkpoint although these stages upsample.
        self.downsample = nn.Sequential(
            *(_resample_stage(vocos_dim, vocos_intermediate_dim, up=r) for r in ratios)
        )
        self.vocos_backbone = VocosBackbone(
            input_channels=vocos_dim,
            dim=vocos_dim,
            intermediate_dim=vocos_intermediate_dim,
            num_layers=vocos_num_layers,
            condition_dim=condition_dim,
        )
        self.linear = nn.Linear(vocos_dim, out_channels)
        self.use_tanh_at_final = use_tanh_at_final

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.linear_pre(x.transpose(1, 2))
        h = self.downsample(h).transpose(1, 2)
        h = self.vocos_backbone(h, condition=c)
        out = self.linear(h).transpose(1, 2)
        return torch.tanh(out) if self.use_tanh_at_final else out
