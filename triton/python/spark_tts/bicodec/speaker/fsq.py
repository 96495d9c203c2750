"""Finite scalar quantization (Mentzer et al., 2023): each latent axis rounded to a few levels."""

from __future__ import annotations

import torch
from torch import nn


def round_ste(z: torch.Tensor) -> torch.Tensor:
    """Round, letting gradients pass straight through."""
    return z + (z.round() - z).detach()


def _to_channel_last(z: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
    """(B, D, *S) -> (B, prod(S), D), returning the spatial shape S to undo it."""
    spatial = z.shape[2:]
    return z.flatten(2).transpose(1, 2), spatial


def _to_channel_first(z: torch.Tensor, spatial: torch.Size) -> torch.Tensor:
    """Inverse of :func:`_to_channel_last` for (B, N, D) -> (B, D, *S)."""
    return z.transpose(1, 2).reshape(z.shape[0], z.shape[2], *spatial)


class FSQ(nn.Module):
    """Implicit-codebook scalar quantizer over ``len(levels)`` axes, with optional projections.

    Codes lie in [-1, 1]; an index packs the per-axis level numbers in mixed radix ``levels``.
    """

    def __init__(
        self,
        levels: list[int],
        dim: int | None = None,
        num_codebooks: int = 1,
        keep_num_codebooks_dim: bool | None = None,
        channel_first: bool = False,
        projection_has_bias: bool = True,
        force_quantization_f32: bool = True,
    ) -> None:
        super().__init__()
        levels = list(levels)
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.int32), persistent=False)
        basis = torch.cumprod(torch.tensor([1] + levels[:-1]), dim=0, dtype=torch.int32)
        self.register_buffer("_basis", basis, persistent=False)

        self.codebook_dim = len(levels)
        self.num_codebooks = num_codebooks
        self.effective_codebook_dim = self.codebook_dim * num_codebooks
        if keep_num_codebooks_dim is None:
            keep_num_codebooks_dim = num_codebooks > 1
        if num_codebooks > 1 and not keep_num_codebooks_dim:
            raise ValueError("several codebooks need keep_num_codebooks_dim")
        self.keep_num_codebooks_dim = keep_num_codebooks_dim
        self.dim = dim if dim is not None else self.effective_codebook_dim
        self.channel_first = channel_first
        self.force_quantization_f32 = force_quantization_f32

        self.has_projections = self.dim != self.effective_codebook_dim
        if self.has_projections:
            self.project_in: nn.Module = nn.Linear(
                self.dim, self.effective_codebook_dim, bias=projection_has_bias
            )
            self.project_out: nn.Module = nn.Linear(
                self.effective_codebook_dim, self.dim, bias=projection_has_bias
            )
        else:
            self.project_in = nn.Identity()
            self.project_out = nn.Identity()

        self.codebook_size = int(torch.tensor(levels).prod().item())
        codebook = self._indices_to_codes(torch.arange(self.codebook_size))
        self.register_buffer("implicit_codebook", codebook, persistent=False)

    def _half_width(self) -> torch.Tensor:
        return self._levels // 2

    def bound(self, z: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
        """Squash z with tanh so that rounding yields exactly ``levels`` values per axis."""
        half_l = (self._levels - 1) * (1 + eps) / 2
        # Even level counts need a half-step offset so the grid is symmetric after rounding.
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = (offset / half_l).atanh()
        return (z + shift).tanh() * half_l - offset

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Snap (..., codebook_dim) to the grid, scaled into [-1, 1]."""
        return round_ste(self.bound(z)) / self._half_width()

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """(..., codebook_dim) codes in [-1, 1] -> (...) int32 indices."""
        if codes.shape[-1] != self.codebook_dim:
            raise ValueError(f"expected last axis {self.codebook_dim}, got {codes.shape[-1]}")
        hw = self._half_width()
        level_idx = codes * hw + hw
        return (level_idx * self._basis).sum(dim=-1).to(torch.int32)

    def indices_to_level_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(...) indices -> (..., codebook_dim) level numbers in [0, level)."""
        return (indices.unsqueeze(-1) // self._basis) % self._levels

    def _indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        hw = self._half_width()
        return (self.indices_to_level_indices(indices) - hw) / hw

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Inverse of the quantize path: indices -> projected codes, channel-first if configured."""
        codes = self._indices_to_codes(indices)
        if self.keep_num_codebooks_dim:
            codes = codes.flatten(-2)
        codes = self.project_out(codes)
        spatial_in = indices.dim() >= 3 + int(self.keep_num_codebooks_dim)
        if spatial_in or self.channel_first:
            codes = codes.movedim(-1, 1)
        return codes

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantize (B, N, dim), or channel-first (B, dim, *S); returns (output, indices)."""
        move_channels = z.dim() >= 4 or self.channel_first
        spatial = None
        if move_channels:
            z, spatial = _to_channel_last(z)
        if z.shape[-1] != self.dim:
            raise ValueError(f"expected dimension {self.dim}, got {z.shape[-1]}")

        z = self.project_in(z)
        z = z.unflatten(-1, (self.num_codebooks, self.codebook_dim))
        orig_dtype = z.dtype
        # Rounding in half precision would move codes across level boundaries.
        if self.force_quantization_f32 and orig_dtype not in (torch.float32, torch.float64):
            z = z.float()
        codes = self.quantize(z)
        indices = self.codes_to_indices(codes)
        out = self.project_out(codes.flatten(-2).to(orig_dtype))

        if spatial is not None:
            out = _to_channel_first(out, spatial)
            indices = indices.reshape(indices.shape[0], *spatial, self.num_codebooks)
        if not self.keep_num_codebooks_dim:
            indices = indices.squeeze(-1)
        return out, indices
