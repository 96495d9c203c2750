"""BiCodec: wav2vec2 features + reference audio <-> semantic and global tokens <-> waveform."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file
from torch import nn

from spark_tts.bicodec.speaker.speaker_encoder import SpeakerEncoder

from .factorized_vq import FactorizedVectorQuantize
from .feat_decoder import Decoder
from .feat_encoder import Encoder
from .layers import strip_weight_norm
from .mel import MelSpectrogram
from .wave_generator import WaveGenerator


class BiCodec(nn.Module):
    """Feature encoder, VQ, speaker encoder, conditioned prenet and waveform generator."""

    def __init__(
        self,
        mel_params: Mapping[str, Any],
        encoder: nn.Module,
        decoder: nn.Module,
        quantizer: nn.Module,
        speaker_encoder: nn.Module,
        prenet: nn.Module,
        postnet: nn.Module,
        **_: Any,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.quantizer = quantizer
        self.speaker_encoder = speaker_encoder
        self.prenet = prenet
        # Only used in training to predict features; kept because the checkpoint holds its weights.
        self.postnet = postnet
        self.mel_transformer = MelSpectrogram.from_mel_params(mel_params)

    def reference_mel(self, ref_wav: torch.Tensor) -> torch.Tensor:
        """(B, T) or (B, 1, T) reference audio -> (B, frames, n_mels) for the speaker encoder."""
        if ref_wav.dim() == 2:
            ref_wav = ref_wav.unsqueeze(1)
        return self.mel_transformer(ref_wav).squeeze(1).transpose(1, 2)

    @torch.no_grad()
    def tokenize(
        self, feat: torch.Tensor, ref_wav: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, feat_dim) features and reference audio -> (semantic (B, T'), global (B, Q, N)) tokens."""
        latents = self.encoder(feat.transpose(1, 2))
        semantic_tokens = self.quantizer.tokenize(latents)
        global_tokens = self.speaker_encoder.tokenize(self.reference_mel(ref_wav))
        return semantic_tokens, global_tokens

    @torch.no_grad()
    def detokenize(
        self, semantic_tokens: torch.Tensor, global_tokens: torch.Tensor
    ) -> torch.Tensor:
        """Semantic (B, T') and global (B, Q, N) tokens -> (B, 1, T' * hop) waveform."""
        z_q = self.quantizer.detokenize(semantic_tokens)
        d_vector = self.speaker_encoder.detokenize(global_tokens)
        hidden = self.prenet(z_q, d_vector)
        # The speaker vector is also added as a per-channel bias before waveform generation.
        return self.decoder(hidden + d_vector.unsqueeze(-1))

    def remove_weight_norm(self) -> None:
        """Fold every weight-norm reparametrisation into a plain weight."""
        strip_weight_norm(self)


def build_bicodec(config: Mapping[str, Any]) -> BiCodec:
    """Randomly initialised BiCodec from an ``audio_tokenizer`` config block."""
    return BiCodec(
        mel_params=config["mel_params"],
        encoder=Encoder(**config["encoder"]),
        decoder=WaveGenerator(**config["decoder"]),
        quantizer=FactorizedVectorQuantize(**config["quantizer"]),
        speaker_encoder=SpeakerEncoder(**config["speaker_encoder"]),
        prenet=Decoder(**config["prenet"]),
        postnet=Decoder(**config["postnet"]),
    )


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Raise ValueError naming every missing, unexpected or mis-shaped tensor."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{name}: checkpoint {tuple(state[name].shape)} vs model {tuple(expected[name].shape)}"
        for name in set(expected) & set(state)
        if state[name].shape != expected[name].shape
    )
    problems = []
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected keys: " + ", ".join(unexpected))
    if misshaped:
        problems.append("shape mismatches: " + "; ".join(misshaped))
    if problems:
        raise ValueError("BiCodec checkpoint does not match the model: " + " | ".join(problems))


def load_bicodec(model_dir: str | Path, device: str | torch.device = "cpu") -> BiCodec:
    """Build BiCodec from ``<model_dir>/config.yaml``, strictly load ``model.safetensors``, fold weight norm."""
    root = Path(model_dir)
    with open(root / "config.yaml", encoding="utf-8") as handle:
        config = yaml.safe_load(handle)["audio_tokenizer"]
    model = build_bicodec(config)
    state = load_file(str(root / "model.safetensors"), device="cpu")
    check_state_dict(model, state)
    model.load_state_dict(state, strict=True)
    model.remove_weight_norm()
    return model.eval().to(device)
