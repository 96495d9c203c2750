"""DAC-style waveform generator: transposed-conv upsampling with Snake residual units."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .layers import ResidualUnit, Snake1d, init_conv_weights, wn_conv1d, wn_conv_transpose1d


class DecoderBlock(nn.Module):
    """Snake, strided transposed conv, then residual units with dilations 1, 3 and 9."""

    def __init__(
        self, input_dim: int = 16, output_dim: int = 8, kernel_size: int = 2, stride: int = 1
    ) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(input_dim),
            wn_conv_transpose1d(
                input_dim,
                output_dim,
                kernel_size=kernel_size,
                stride=stride,
                padding=(kernel_size - stride) // 2,
            ),
            *(ResidualUnit(output_dim, dilation=d) for d in (1, 3, 9)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class WaveGenerator(nn.Module):
    """(B, input_channel, T) -> (B, d_out, T * prod(rates)) waveform in [-1, 1]."""

    def __init__(
        self,
        input_channel: int,
        channels: int,
        rates: Sequence[int],
        kernel_sizes: Sequence[int],
        d_out: int = 1,
        **_: Any,
    ) -> None:
        super().__init__()
        stages: list[nn.Module] = [wn_conv1d(input_channel, channels, kernel_size=7, padding=3)]
        width = channels
        # Each stage halves the channel count while upsampling time by its rate.
        for depth, (kernel, stride) in enumerate(zip(kernel_sizes, rates, strict=True)):
            width = channels // 2 ** (depth + 1)
            stages.append(DecoderBlock(channels // 2**depth, width, kernel, stride))
        stages += [Snake1d(width), wn_conv1d(width, d_out, kernel_size=7, padding=3), nn.Tanh()]
        self.model = nn.Sequential(*stages)
        self.apply(init_conv_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
