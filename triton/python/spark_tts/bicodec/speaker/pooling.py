"""Attentive statistics pooling that turns frame features into one utterance vector."""

from __future__ import annotations

import torch
from torch import nn

# Floor for variances before the square root, so silent or constant inputs stay finite.
_VAR_FLOOR = 1e-7


def _time_mean_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain per-channel mean and (unbiased) std over the last axis, keeping that axis."""
    mean = x.mean(dim=-1, keepdim=True)
    std = torch.sqrt(x.var(dim=-1, keepdim=True) + _VAR_FLOOR)
    return mean, std


class ASTP(nn.Module):
    """Attentive statistics pooling: weighted mean and std per channel, (B, C, T) -> (B, 2C).

    With ``global_context_att`` the attention also sees the utterance-level mean and std.
    """

    def __init__(
        self, in_dim: int, bottleneck_dim: int = 128, global_context_att: bool = False
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.global_context_att = global_context_att
        att_in = in_dim * 3 if global_context_att else in_dim
        # 1x1 convolutions act as per-frame linear layers without transposing.
        self.linear1 = nn.Conv1d(att_in, bottleneck_dim, kernel_size=1)
        self.linear2 = nn.Conv1d(bottleneck_dim, in_dim, kernel_size=1)

    def get_out_dim(self) -> int:
        """Width of the pooled vector."""
        return 2 * self.in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool (B, C, T), or (B, C, F, T) flattened to channels, to (B, 2C)."""
        if x.dim() == 4:
            x = x.flatten(1, 2)
        if self.global_context_att:
            mean, std = _time_mean_std(x)
            att_in = torch.cat((x, mean.expand_as(x), std.expand_as(x)), dim=1)
        else:
            att_in = x
        # tanh rather than ReLU in the bottleneck: the weights were trained that way.
        weights = torch.softmax(self.linear2(torch.tanh(self.linear1(att_in))), dim=2)
        w_mean = (weights * x).sum(dim=2)
        w_var = (weights * x.pow(2)).sum(dim=2) - w_mean.pow(2)
        w_std = torch.sqrt(w_var.clamp(min=_VAR_FLOOR))
        return torch.cat((w_mean, w_std), dim=1)
