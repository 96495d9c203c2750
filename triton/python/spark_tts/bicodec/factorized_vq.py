"""Factorized vector quantizer: project to a small code space, nearest cosine codeword, project back."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layers import wn_conv1d


class FactorizedVectorQuantize(nn.Module):
    """Single-codebook VQ over L2-normalised low-dimensional codes (inference paths only)."""

    def __init__(
        self,
        input_dim: int,
        codebook_size: int,
        codebook_dim: int,
        commitment: float,
        codebook_loss_weight: float = 1.0,
        decay: float = 0.99,
        threshold_ema_dead_code: float = 2,
        momentum: float = 0.99,
        **_: Any,
    ) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        # Training hyper-parameters, kept so a config round-trips unchanged.
        self.commitment = commitment
        self.codebook_loss_weight = codebook_loss_weight
        self.decay = decay
        self.threshold_ema_dead_code = threshold_ema_dead_code
        self.momentum = momentum

        self.in_project: nn.Module
        self.out_project: nn.Module
        if input_dim != codebook_dim:
            self.in_project = wn_conv1d(input_dim, codebook_dim, kernel_size=1)
            self.out_project = wn_conv1d(codebook_dim, input_dim, kernel_size=1)
        else:
            self.in_project = nn.Identity()
            self.out_project = nn.Identity()

        self.codebook = nn.Embedding(codebook_size, codebook_dim)
        # Code-usage statistics from training; unused at inference but part of the checkpoint.
        self.register_buffer("cluster_size", torch.zeros(codebook_size))

    def nearest_codes(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, codebook_dim, T) projected latents -> (B, T) indices of the closest normalised codeword."""
        batch = latents.shape[0]
        flat = F.normalize(latents.transpose(1, 2).reshape(-1, latents.shape[1]))
        codes = F.normalize(self.codebook.weight)
        # Full squared distance (not just the dot product) so ties break as in the original.
        sq_dist = (
            flat.pow(2).sum(1, keepdim=True)
            - 2 * flat @ codes.t()
            + codes.pow(2).sum(1, keepdim=True).t()
        )
        return sq_dist.neg().max(dim=1).indices.reshape(batch, -1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, T) indices -> (B, codebook_dim, T) raw (unnormalised) codewords."""
        return F.embedding(indices, self.codebook.weight).transpose(1, 2)

    def tokenize(self, z: torch.Tensor) -> torch.Tensor:
        """(B, input_dim, T) latents -> (B, T) code indices."""
        return self.nearest_codes(self.in_project(z))

    def detokenize(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, T) code indices -> (B, input_dim, T) quantised latents."""
        return self.out_project(self.lookup(indices))

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Quantise at inference: returns the quantised latents and their indices."""
        indices = self.tokenize(z)
        return {"z_q": self.detokenize(indices), "indices": indices}
