"""Weight-normalised convolutions, the Snake activation and dilated residual units."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn
from torch.nn.utils import weight_norm


def _legacy_weight_norm(module: nn.Module) -> nn.Module:
    """Apply the old hook-based weight norm, whose ``weight_g``/``weight_v`` names the checkpoint uses."""
    # The parametrization API would rename the tensors and break checkpoint loading.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return weight_norm(module)


def wn_conv1d(*args: Any, **kwargs: Any) -> nn.Conv1d:
    """A ``Conv1d`` wrapped in weight normalisation."""
    return _legacy_weight_norm(nn.Conv1d(*args, **kwargs))


def wn_conv_transpose1d(*args: Any, **kwargs: Any) -> nn.ConvTranspose1d:
    """A ``ConvTranspose1d`` wrapped in weight normalisation."""
    return _legacy_weight_norm(nn.ConvTranspose1d(*args, **kwargs))


def strip_weight_norm(module: nn.Module) -> None:
    """Fold weight norm into plain weights on every submodule that carries it."""
    for sub in module.modules():
        try:
            torch.nn.utils.remove_weight_norm(sub)
        except ValueError:
            continue


def snake(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Snake activation ``x + sin(alpha*x)^2 / alpha`` over the channel axis."""
    orig_shape = x.shape
    flat = x.reshape(orig_shape[0], orig_shape[1], -1)
    # The epsilon keeps a zero-valued alpha from dividing by zero.
    flat = flat + torch.sin(alpha * flat).pow(2) * (alpha + 1e-9).reciprocal()
    return flat.reshape(orig_shape)


class Snake1d(nn.Module):
    """Snake activation with one learnable frequency per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return snake(x, self.alpha)


class ResidualUnit(nn.Module):
    """Snake -> dilated conv(7) -> Snake -> conv(1), added to the input."""

    def __init__(self, dim: int = 16, dilation: int = 1) -> None:
        super().__init__()
        same_pad = (6 * dilation) // 2
        self.block = nn.Sequential(
            Snake1d(dim),
            wn_conv1d(dim, dim, kernel_size=7, dilation=dilation, padding=same_pad),
            Snake1d(dim),
            wn_conv1d(dim, dim, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        trim = (x.shape[-1] - out.shape[-1]) // 2
        if trim > 0:
            x = x[..., trim:-trim]
        return x + out


def init_conv_weights(module: nn.Module) -> None:
    """Truncated-normal init for Conv1d weights, zero bias."""
    if isinstance(module, nn.Conv1d):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.constant_(module.bias, 0)
