"""WaveNet-style gated conv stack (WN) and the mean-only residual coupling flow of RVC.

Only the inverse direction (prior sample -> decoder latent) is implemented: that is all
inference runs. Module and parameter names match the RVC WebUI.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class WN(nn.Module):
    """Dilated gated convolutions with a speaker-conditioning 1x1 conv and skip sums."""

    def __init__(
        self,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"WN kernel_size must be odd, got {kernel_size}")
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        if gin_channels:
            self.cond_layer = weight_norm(
                nn.Conv1d(gin_channels, 2 * hidden_channels * n_layers, 1)
            )
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            dilation = dilation_rate**i
            self.in_layers.append(
                weight_norm(
                    nn.Conv1d(
                        hidden_channels,
                        2 * hidden_channels,
                        kernel_size,
                        dilation=dilation,
                        padding=dilation * (kernel_size - 1) // 2,
                    )
                )
            )
            # The last layer feeds only the skip path, so it has half the outputs.
            out = 2 * hidden_channels if i < n_layers - 1 else hidden_channels
            self.res_skip_layers.append(weight_norm(nn.Conv1d(hidden_channels, out, 1)))

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = self.hidden_channels
        cond = self.cond_layer(g) if g is not None else None
        skip = torch.zeros_like(x)
        for i, (in_layer, res_skip) in enumerate(
            zip(self.in_layers, self.res_skip_layers, strict=True)
        ):
            pre = in_layer(x)
            if cond is not None:
                pre = pre + cond[:, 2 * h * i : 2 * h * (i + 1)]
            acts = torch.tanh(pre[:, :h]) * torch.sigmoid(pre[:, h:])
            out = res_skip(acts)
            if i < self.n_layers - 1:
                x = (x + out[:, :h]) * x_mask
                skip = skip + out[:, h:]
            else:
                skip = skip + out
        return skip * x_mask


class ResidualCouplingLayer(nn.Module):
    """Affine coupling with shift only: the second half of the channels moves by f(first half)."""

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"coupling channels must be even, got {channels}")
        self.half_channels = channels // 2
        self.pre = nn.Conv1d(self.half_channels, hidden_channels, 1)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels)
        self.post = nn.Conv1d(hidden_channels, self.half_channels, 1)

    def inverse(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None
    ) -> torch.Tensor:
        x0, x1 = torch.split(x, [self.half_channels, self.half_channels], dim=1)
        h = self.enc(self.pre(x0) * x_mask, x_mask, g=g)
        shift = self.post(h) * x_mask
        return torch.cat([x0, (x1 - shift) * x_mask], dim=1)


class Flip(nn.Module):
    """Reverses the channel order so the next coupling transforms the other half."""

    def inverse(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None
    ) -> torch.Tensor:
        return torch.flip(x, [1])


class ResidualCouplingBlock(nn.Module):
    """Stack of (coupling, flip) pairs; parameters sit at even indices of ``flows``."""

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int = 5,
        dilation_rate: int = 1,
        n_layers: int = 3,
        n_flows: int = 4,
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(
                ResidualCouplingLayer(
                    channels, hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels
                )
            )
            self.flows.append(Flip())

    def inverse(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None
    ) -> torch.Tensor:
        for layer in reversed(self.flows):
            x = layer.inverse(x, x_mask, g=g)
        return x
