"""BiCodec speaker encoder: mel -> x-vector, and mel -> fixed-length global tokens -> d-vector."""

from __future__ import annotations

import torch
from torch import nn

from spark_tts.bicodec.speaker.ecapa_tdnn import ECAPA_TDNN, ecapa_tdnn_glob_c512
from spark_tts.bicodec.speaker.perceiver import PerceiverResampler
from spark_tts.bicodec.speaker.residual_fsq import ResidualFSQ


class SpeakerEncoder(nn.Module):
    """ECAPA-TDNN frame latents, resampled to ``token_num`` latents, residual-FSQ quantized.

    ``tokenize`` gives (B, fsq_num_quantizers, token_num) int32 indices; ``detokenize`` maps
    them to a (B, out_dim) d-vector.
    """

    def __init__(
        self,
        input_dim: int = 100,
        out_dim: int = 512,
        latent_dim: int = 128,
        token_num: int = 32,
        fsq_levels: list[int] | tuple[int, ...] = (4, 4, 4, 4, 4, 4),
        fsq_num_quantizers: int = 1,
    ) -> None:
        super().__init__()
        self.token_num = token_num
        self.latent_dim = latent_dim
        self.speaker_encoder: ECAPA_TDNN = ecapa_tdnn_glob_c512(
            feat_dim=input_dim, embed_dim=out_dim
        )
        self.perceiver_sampler = PerceiverResampler(
            dim=latent_dim, dim_context=self.speaker_encoder.latent_dim, num_latents=token_num
        )
        self.quantizer = ResidualFSQ(
            levels=list(fsq_levels),
            num_quantizers=fsq_num_quantizers,
            dim=latent_dim,
            is_channel_first=True,
            quantize_dropout=False,
        )
        self.project = nn.Linear(latent_dim * token_num, out_dim)

    @property
    def codebook_size(self) -> int:
        """Number of distinct values a single global token can take."""
        return self.quantizer.codebook_size

    def _latents(self, mels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, n_mels) -> x-vector (B, out_dim) and channel-first latents (B, latent_dim, token_num)."""
        x_vector, frames = self.speaker_encoder(mels, True)
        latents = self.perceiver_sampler(frames.transpose(1, 2)).transpose(1, 2)
        return x_vector, latents

    def _project(self, zq: torch.Tensor) -> torch.Tensor:
        # Flatten channel-major (latent_dim, token_num) as the trained projection expects.
        return self.project(zq.reshape(zq.shape[0], -1))

    def get_codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, Q, token_num) indices -> (Q, B, codebook_dim, token_num) per-stage scaled codes."""
        return self.quantizer.get_codes_from_indices(indices.transpose(1, 2)).transpose(-1, -2)

    def tokenize(self, mels: torch.Tensor) -> torch.Tensor:
        """(B, T, n_mels) mel -> (B, fsq_num_quantizers, token_num) int32 global tokens."""
        _, latents = self._latents(mels)
        _, indices = self.quantizer(latents)
        return indices

    def detokenize(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, fsq_num_quantizers, token_num) global tokens -> (B, out_dim) d-vector."""
        zq = self.quantizer.get_output_from_indices(indices.transpose(1, 2)).transpose(1, 2)
        return self._project(zq)

    def forward(self, mels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, n_mels) mel -> (x_vector, d_vector), each (B, out_dim)."""
        x_vector, latents = self._latents(mels)
        zq, _ = self.quantizer(latents)
        return x_vector, self._project(zq)
