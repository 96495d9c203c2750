"""ECAPA-TDNN speaker network: SE-Res2 blocks over mel frames, attentive pooling, x-vector."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spark_tts.bicodec.speaker.pooling import ASTP

# The channel count after the aggregation conv is fixed by the checkpoint, not by `channels`.
_AGG_CHANNELS = 512 * 3


class Conv1dReluBn(nn.Module):
    """Conv1d, then ReLU, then BatchNorm (this order matches the trained weights)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride, padding, dilation, bias=bias
        )
        self.bn = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T) -> (B, C_out, T')."""
        return self.bn(F.relu(self.conv(x)))


class Res2Conv1dReluBn(nn.Module):
    """Res2Net-style multi-scale conv: channel groups processed hierarchically, last group passed through."""

    def __init__(
        self,
        channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        bias: bool = True,
        scale: int = 4,
    ) -> None:
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels {channels} not divisible by scale {scale}")
        self.scale = scale
        self.width = channels // scale
        n_branches = 1 if scale == 1 else scale - 1
        self.convs = nn.ModuleList(
            nn.Conv1d(self.width, self.width, kernel_size, stride, padding, dilation, bias=bias)
            for _ in range(n_branches)
        )
        self.bns = nn.ModuleList(nn.BatchNorm1d(self.width) for _ in range(n_branches))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        groups = torch.split(x, self.width, dim=1)
        outs: list[torch.Tensor] = []
        carry = groups[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            if i > 0:
                carry = carry + groups[i]
            carry = bn(F.relu(conv(carry)))
            outs.append(carry)
        if self.scale != 1:
            outs.append(groups[len(self.convs)])
        return torch.cat(outs, dim=1)


class SE_Connect(nn.Module):  # noqa: N801 - name fixed by checkpoint module layout
    """Squeeze-and-excitation gate over channels using the time-averaged activation."""

    def __init__(self, channels: int, se_bottleneck_dim: int = 128) -> None:
        super().__init__()
        self.linear1 = nn.Linear(channels, se_bottleneck_dim)
        self.linear2 = nn.Linear(se_bottleneck_dim, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T), each channel scaled by a gate in (0, 1)."""
        gate = torch.sigmoid(self.linear2(F.relu(self.linear1(x.mean(dim=2)))))
        return x * gate.unsqueeze(2)


class SE_Res2Block(nn.Module):  # noqa: N801 - name fixed by checkpoint module layout
    """Residual block: 1x1 conv, dilated Res2 conv, 1x1 conv, SE gate."""

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        stride: int,
        padding: int,
        dilation: int,
        scale: int,
    ) -> None:
        super().__init__()
        self.se_res2block = nn.Sequential(
            Conv1dReluBn(channels, channels, kernel_size=1),
            Res2Conv1dReluBn(channels, kernel_size, stride, padding, dilation, scale=scale),
            Conv1dReluBn(channels, channels, kernel_size=1),
            SE_Connect(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        return x + self.se_res2block(x)


class ECAPA_TDNN(nn.Module):  # noqa: N801 - name fixed by checkpoint module layout
    """ECAPA-TDNN over (B, T, feat_dim) features, giving an x-vector and frame-level latents."""

    def __init__(
        self,
        channels: int = 512,
        feat_dim: int = 80,
        embed_dim: int = 192,
        global_context_att: bool = False,
        emb_bn: bool = False,
    ) -> None:
        super().__init__()
        self.layer1 = Conv1dReluBn(feat_dim, channels, kernel_size=5, padding=2)
        # Dilation grows 2, 3, 4 with padding equal to dilation so T is preserved.
        self.layer2 = SE_Res2Block(
            channels, kernel_size=3, stride=1, padding=2, dilation=2, scale=8
        )
        self.layer3 = SE_Res2Block(
            channels, kernel_size=3, stride=1, padding=3, dilation=3, scale=8
        )
        self.layer4 = SE_Res2Block(
            channels, kernel_size=3, stride=1, padding=4, dilation=4, scale=8
        )
        self.conv = nn.Conv1d(channels * 3, _AGG_CHANNELS, kernel_size=1)
        self.pool = ASTP(in_dim=_AGG_CHANNELS, global_context_att=global_context_att)
        self.pool_out_dim = self.pool.get_out_dim()
        self.bn = nn.BatchNorm1d(self.pool_out_dim)
        self.linear = nn.Linear(self.pool_out_dim, embed_dim)
        self.emb_bn = emb_bn
        self.bn2: nn.Module = nn.BatchNorm1d(embed_dim) if emb_bn else nn.Identity()

    @property
    def latent_dim(self) -> int:
        """Channel count of the frame-level latents returned with ``return_latent``."""
        return _AGG_CHANNELS

    def forward(
        self, x: torch.Tensor, return_latent: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, T, F) -> x-vector (B, embed_dim), plus latents (B, 1536, T) if ``return_latent``."""
        h1 = self.layer1(x.transpose(1, 2))
        h2 = self.layer2(h1)
        h3 = self.layer3(h2)
        h4 = self.layer4(h3)
        latent = F.relu(self.conv(torch.cat((h2, h3, h4), dim=1)))
        emb = self.bn2(self.linear(self.bn(self.pool(latent))))
        if return_latent:
            return emb, latent
        return emb


def ecapa_tdnn_glob_c512(feat_dim: int, embed_dim: int, emb_bn: bool = False) -> ECAPA_TDNN:
    """The 512-channel ECAPA-TDNN with global-context attentive pooling used by BiCodec."""
    return ECAPA_TDNN(
        channels=512,
        feat_dim=feat_dim,
        embed_dim=embed_dim,
        global_context_att=True,
        emb_bn=emb_bn,
    )
