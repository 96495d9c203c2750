"""Transformer encoder with windowed relative-position self-attention (VITS style).

Used by the RVC content encoder. Parameter names follow the RVC WebUI so that
voice files load strictly.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

# Relative positions further apart than this share no embedding (their term is zero).
REL_WINDOW = 10


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a [B, C, T] tensor."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.transpose(1, 2), (self.channels,), self.gamma, self.beta, self.eps)
        return y.transpose(1, 2)


def _band_index(
    length: int, window: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each (query i, key j): the embedding slot j - i + window, and whether it is in range."""
    pos = torch.arange(length, device=device)
    offset = pos[None, :] - pos[:, None]
    inside = offset.abs() <= window
    return (offset + window).clamp(0, 2 * window), inside


class RelativeSelfAttention(nn.Module):
    """Multi-head self-attention whose logits and values get a learned term per relative offset."""

    def __init__(self, channels: int, n_heads: int, window: int = REL_WINDOW) -> None:
        super().__init__()
        if channels % n_heads:
            raise ValueError(f"channels {channels} not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.head_dim = channels // n_heads
        self.window = window
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, channels, 1)
        # One table shared by all heads (the WebUI's heads_share=True layout: leading dim 1).
        scale = self.head_dim**-0.5
        self.emb_rel_k = nn.Parameter(torch.randn(1, 2 * window + 1, self.head_dim) * scale)
        self.emb_rel_v = nn.Parameter(torch.randn(1, 2 * window + 1, self.head_dim) * scale)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t = x.shape
        return x.view(b, self.n_heads, self.head_dim, t).transpose(2, 3)  # [B, H, T, D]

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        q = self._heads(self.conv_q(x)) / math.sqrt(self.head_dim)
        k = self._heads(self.conv_k(x))
        v = self._heads(self.conv_v(x))

        slot, inside = _band_index(t, self.window, x.device)
        slot_b = slot.expand(b, self.n_heads, t, t)
        # Logit against every relative embedding, then pick each key's offset out of the band.
        rel_logits = torch.matmul(q, self.emb_rel_k.transpose(1, 2).unsqueeze(0))  # [B,H,T,2W+1]
        local = torch.gather(rel_logits, 3, slot_b) * inside.to(q.dtype)
        scores = torch.matmul(q, k.transpose(2, 3)) + local
        scores = scores.masked_fill(attn_mask == 0, -1e4)
        probs = torch.softmax(scores, dim=-1)

        out = torch.matmul(probs, v)
        # Regroup the attention weights by relative offset: rel[i, s] = probs[i, i + s - W].
        pos = torch.arange(t, device=x.device)
        rel_cols = pos[:, None] + torch.arange(2 * self.window + 1, device=x.device) - self.window
        valid = (rel_cols >= 0) & (rel_cols < t)
        rel_cols = rel_cols.clamp(0, t - 1).expand(b, self.n_heads, t, 2 * self.window + 1)
        rel_probs = torch.gather(probs, 3, rel_cols) * valid.to(probs.dtype)
        out = out + torch.matmul(rel_probs, self.emb_rel_v.unsqueeze(0))
        out = out.transpose(2, 3).reshape(b, c, t)
        return self.conv_o(out)


class FeedForward(nn.Module):
    """Two 'same'-padded convolutions with a ReLU between, masked on both inputs."""

    def __init__(self, channels: int, filter_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel_size)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        # Even kernels put the extra frame on the right, as the WebUI does.
        k = self.kernel_size
        return F.pad(x, ((k - 1) // 2, k // 2)) if k > 1 else x

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv_1(self._pad(x * x_mask)))
        return self.conv_2(self._pad(x * x_mask)) * x_mask


class Encoder(nn.Module):
    """Post-norm transformer encoder: attention and feed-forward, each residual then LayerNorm."""

    def __init__(
        self,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
    ) -> None:
        super().__init__()
        self.attn_layers = nn.ModuleList(
            RelativeSelfAttention(hidden_channels, n_heads) for _ in range(n_layers)
        )
        self.norm_layers_1 = nn.ModuleList(
            ChannelLayerNorm(hidden_channels) for _ in range(n_layers)
        )
        self.ffn_layers = nn.ModuleList(
            FeedForward(hidden_channels, filter_channels, kernel_size) for _ in range(n_layers)
        )
        self.norm_layers_2 = nn.ModuleList(
            ChannelLayerNorm(hidden_channels) for _ in range(n_layers)
        )

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        attn_mask = x_mask.unsqueeze(2) * x_mask.unsqueeze(3)  # [B, 1, T, T]
        x = x * x_mask
        for attn, norm1, ffn, norm2 in zip(
            self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2, strict=True
        ):
            x = norm1(x + attn(x, attn_mask))
            x = norm2(x + ffn(x, x_mask))
        return x * x_mask
