"""Vocos-style ConvNeXt backbone, optionally conditioned through adaptive layer norm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AdaLayerNorm(nn.Module):
    """Layer norm whose scale and shift are linear functions of a conditioning vector."""

    def __init__(self, condition_dim: int, embedding_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.dim = embedding_dim
        self.scale = nn.Linear(condition_dim, embedding_dim)
        self.shift = nn.Linear(condition_dim, embedding_dim)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C); cond: (B, condition_dim)."""
        gain = self.scale(cond).unsqueeze(1)
        bias = self.shift(cond).unsqueeze(1)
        return F.layer_norm(x, (self.dim,), eps=self.eps) * gain + bias


def _make_norm(dim: int, condition_dim: int | None) -> nn.Module:
    if condition_dim:
        return AdaLayerNorm(condition_dim, dim, eps=1e-6)
    return nn.LayerNorm(dim, eps=1e-6)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv, (adaptive) layer norm, GELU MLP and layer scale, with a residual."""

    def __init__(
        self,
        dim: int,
        intermediate_dim: int,
        layer_scale_init_value: float,
        condition_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.adanorm = condition_dim is not None
        self.norm = _make_norm(dim, condition_dim)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        if layer_scale_init_value > 0:
            self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
        else:
            self.gamma = None

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, T) -> (B, C, T)."""
        h = self.dwconv(x).transpose(1, 2)
        if self.adanorm:
            if cond is None:
                raise ValueError("this block is conditioned; pass a condition vector")
            h = self.norm(h, cond)
        else:
            h = self.norm(h)
        h = self.pwconv2(self.act(self.pwconv1(h)))
        if self.gamma is not None:
            h = h * self.gamma
        return x + h.transpose(1, 2)


class VocosBackbone(nn.Module):
    """Stack of ConvNeXt blocks: (B, C_in, T) -> (B, T, dim), length preserved."""

    def __init__(
        self,
        input_channels: int,
        dim: int,
        intermediate_dim: int,
        num_layers: int,
        layer_scale_init_value: float | None = None,
        condition_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.input_channels = input_channels
        self.embed = nn.Conv1d(input_channels, dim, kernel_size=7, padding=3)
        self.adanorm = condition_dim is not None
        self.norm = _make_norm(dim, condition_dim)
        scale = layer_scale_init_value or 1 / num_layers
        self.convnext = nn.ModuleList(
            ConvNeXtBlock(
                dim=dim,
                intermediate_dim=intermediate_dim,
                layer_scale_init_value=scale,
                condition_dim=condition_dim,
            )
            for _ in range(num_layers)
        )
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.constant_(module.bias, 0)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        h = self.embed(x).transpose(1, 2)
        if self.adanorm:
            if condition is None:
                raise ValueError("this backbone is conditioned; pass a condition vector")
            h = self.norm(h, condition)
        else:
            h = self.norm(h)
        h = h.transpose(1, 2)
        for block in self.convnext:
            h = block(h, condition)
        return self.final_layer_norm(h.transpose(1, 2))
