"""Time-axis resampling block: learned (de)convolution plus parameter-free skip paths."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SamplingBlock(nn.Module):
    """Upsample and/or downsample a (B, T, C) sequence; returns (B, C, T')."""

    def __init__(
        self,
        dim: int,
        groups: int = 1,
        upsample_scale: int = 1,
        downsample_scale: int = 1,
    ) -> None:
        super().__init__()
        self.upsample_scale = upsample_scale
        self.downsample_scale = downsample_scale

        if upsample_scale > 1:
            up = upsample_scale
            self.de_conv_upsampler = nn.Sequential(
                nn.LeakyReLU(0.2),
                nn.ConvTranspose1d(
                    dim,
                    dim,
                    kernel_size=2 * up,
                    stride=up,
                    padding=up // 2 + up % 2,
                    output_padding=up % 2,
                    groups=groups,
                ),
            )

        if downsample_scale > 1:
            down = downsample_scale
            self.conv_downsampler = nn.Sequential(
                nn.LeakyReLU(0.2),
                nn.Conv1d(
                    dim,
                    dim,
                    kernel_size=2 * down,
                    stride=down,
                    padding=down // 2 + down % 2,
                    groups=groups,
                ),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        if self.upsample_scale > 1:
            repeated = x.repeat_interleave(self.upsample_scale, dim=2)
            merged = repeated + self.de_conv_upsampler(x)
        else:
            repeated = x
            merged = x

        if self.downsample_scale > 1:
            k = self.downsample_scale
            learned = self.conv_downsampler(merged)
            skip_merged = F.avg_pool1d(merged, kernel_size=k, stride=k)
            skip_repeated = F.avg_pool1d(repeated, kernel_size=k, stride=k)
        else:
            learned = merged
            skip_merged = merged
            skip_repeated = repeated

        return learned + skip_repeated + skip_merged
