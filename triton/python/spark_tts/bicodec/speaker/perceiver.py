"""Perceiver resampler: a fixed set of learned latents cross-attends to a variable-length sequence."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """RMS normalisation written as L2-normalise times sqrt(dim), with a learned gain."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise the last axis."""
        return F.normalize(x, dim=-1) * self.scale * self.gamma


class GEGLU(nn.Module):
    """Split the last axis in two halves and gate the first with GELU of the second."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., 2n) -> (..., n)."""
        value, gate = x.chunk(2, dim=-1)
        return F.gelu(gate) * value


def feed_forward(dim: int, mult: float = 4) -> nn.Sequential:
    """GEGLU MLP; hidden width is 2/3 of ``dim * mult`` so parameters match a plain GELU MLP."""
    hidden = int(dim * mult * 2 / 3)
    return nn.Sequential(nn.Linear(dim, hidden * 2), GEGLU(), nn.Linear(hidden, dim))


class Attention(nn.Module):
    """Multi-head attention without biases; queries may be prepended to the context."""

    def __init__(
        self,
        dim: int,
        *,
        dim_context: int | None = None,
        dim_head: int = 64,
        heads: int = 8,
        cross_attn_include_queries: bool = False,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.scale = dim_head**-0.5
        self.cross_attn_include_queries = cross_attn_include_queries
        inner = dim_head * heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim_context or dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, dim) attends to context (B, M, dim_context), or to itself; -> (B, N, dim)."""
        if context is None:
            context = x
        elif self.cross_attn_include_queries:
            context = torch.cat((x, context), dim=1)
        k, v = self.to_kv(context).chunk(2, dim=-1)
        q, k, v = (self._split_heads(t) for t in (self.to_q(x), k, v))
        # Explicit softmax attention (not SDPA) to stay bit-close to the reference maths.
        attn = (q @ k.transpose(-1, -2) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).flatten(2)
        return self.to_out(out)


class PerceiverResampler(nn.Module):
    """Maps (B, T, dim_context) to (B, num_latents, dim) with ``depth`` attention+MLP layers."""

    def __init__(
        self,
        *,
        dim: int,
        depth: int = 2,
        dim_context: int | None = None,
        num_latents: int = 32,
        dim_head: int = 64,
        heads: int = 8,
        ff_mult: float = 4,
    ) -> None:
        super().__init__()
        dim_context = dim_context or dim
        self.proj_context: nn.Module = (
            nn.Linear(dim_context, dim) if dim_context != dim else nn.Identity()
        )
        self.latents = nn.Parameter(torch.empty(num_latents, dim))
        nn.init.normal_(self.latents, std=0.02)
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    Attention(
                        dim=dim,
                        dim_head=dim_head,
                        heads=heads,
                        cross_attn_include_queries=True,
                    ),
                    feed_forward(dim, mult=ff_mult),
                ]
            )
            for _ in range(depth)
        )
        self.norm = RMSNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, dim_context) -> (B, num_latents, dim)."""
        x = self.proj_context(x)
        latents = self.latents.unsqueeze(0).expand(x.shape[0], -1, -1)
        for attn, ff in self.layers:
            latents = latents + attn(latents, x)
            latents = latents + ff(latents)
        return self.norm(latents)
