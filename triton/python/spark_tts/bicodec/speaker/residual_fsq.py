"""Residual FSQ: a stack of FSQ layers, each quantizing what the previous ones left over."""

from __future__ import annotations

import torch
from torch import nn

from spark_tts.bicodec.speaker.fsq import FSQ


class ResidualFSQ(nn.Module):
    """Shared projection to ``len(levels)`` axes, then ``num_quantizers`` FSQ stages.

    Stage q sees the residual scaled by ``(levels - 1) ** q`` so finer stages cover smaller steps.
    Quantizer dropout (a training-only trick) is accepted for config parity but not applied.
    """

    def __init__(
        self,
        *,
        levels: list[int],
        num_quantizers: int,
        dim: int | None = None,
        is_channel_first: bool = False,
        quantize_dropout: bool = False,
        quantize_dropout_cutoff_index: int = 0,
        quantize_dropout_multiple_of: int = 1,
        **fsq_kwargs: object,
    ) -> None:
        super().__init__()
        codebook_dim = len(levels)
        dim = dim if dim is not None else codebook_dim
        self.has_projections = codebook_dim != dim
        self.project_in: nn.Module = (
            nn.Linear(dim, codebook_dim) if self.has_projections else nn.Identity()
        )
        self.project_out: nn.Module = (
            nn.Linear(codebook_dim, dim) if self.has_projections else nn.Identity()
        )
        self.is_channel_first = is_channel_first
        self.num_quantizers = num_quantizers
        self.levels = list(levels)
        self.layers = nn.ModuleList(
            FSQ(levels=self.levels, dim=codebook_dim, **fsq_kwargs)  # type: ignore[arg-type]
            for _ in range(num_quantizers)
        )
        self.codebook_size = self.layers[0].codebook_size
        base = torch.tensor(self.levels, dtype=torch.float32) - 1
        scales = torch.stack([base**-q for q in range(num_quantizers)])
        self.register_buffer("scales", scales, persistent=False)
        self.quantize_dropout = quantize_dropout and num_quantizers > 1
        self.quantize_dropout_cutoff_index = quantize_dropout_cutoff_index
        self.quantize_dropout_multiple_of = quantize_dropout_multiple_of

    @property
    def codebooks(self) -> torch.Tensor:
        """(num_quantizers, codebook_size, codebook_dim) implicit codebooks."""
        return torch.stack([layer.implicit_codebook for layer in self.layers])

    def get_codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, ..., Q) indices -> (Q, B, ..., codebook_dim) scaled codes; index -1 gives zeros."""
        q_given = indices.shape[-1]
        if q_given > self.num_quantizers:
            raise ValueError(f"got {q_given} quantizer indices, model has {self.num_quantizers}")
        lead = indices.shape[:-1]
        flat = indices.reshape(-1, q_given).long()
        dropped = flat < 0
        flat = flat.masked_fill(dropped, 0)
        books = self.codebooks[:q_given]
        # codes[q, r] = books[q, flat[r, q]]
        codes = torch.stack([books[q][flat[:, q]] for q in range(q_given)])
        codes = codes.masked_fill(dropped.t().unsqueeze(-1), 0.0)
        codes = codes * self.scales[:q_given].unsqueeze(1)
        return codes.reshape(q_given, *lead, codes.shape[-1])

    def get_output_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, ..., Q) indices -> (B, ..., dim) dequantized, projected output (channel-last)."""
        return self.project_out(self.get_codes_from_indices(indices).sum(dim=0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantize x; returns (quantized like x, indices).

        Channel-first (B, dim, *S) gives indices (B, Q, *S); channel-last (B, N, dim) gives (B, N, Q).
        """
        spatial = None
        if self.is_channel_first:
            spatial = x.shape[2:]
            x = x.flatten(2).transpose(1, 2)
        x = self.project_in(x)

        residual = x
        quantized_sum: torch.Tensor | float = 0.0
        all_indices = []
        for layer, scale in zip(self.layers, self.scales, strict=True):
            quantized, idx = layer(residual / scale)
            quantized = quantized * scale
            residual = residual - quantized.detach()
            quantized_sum = quantized_sum + quantized
            all_indices.append(idx)

        out = self.project_out(quantized_sum)
        indices = torch.stack(all_indices, dim=-1)
        if spatial is not None:
            b = out.shape[0]
            out = out.transpose(1, 2).reshape(b, out.shape[-1], *spatial)
            indices = indices.transpose(1, 2).reshape(b, indices.shape[-1], *spatial)
        return out, indices
