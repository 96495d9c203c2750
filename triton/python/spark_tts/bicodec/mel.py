"""Magnitude mel spectrogram in plain torch, matching torchaudio's MelSpectrogram as BiCodec configures it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

# Slaney mel scale: linear below 1 kHz, logarithmic above.
_LINEAR_HZ_PER_MEL = 200.0 / 3
_BREAK_HZ = 1000.0
_BREAK_MEL = _BREAK_HZ / _LINEAR_HZ_PER_MEL
_LOG_STEP = math.log(6.4) / 27.0


def hz_to_slaney_mel(freq: float) -> float:
    """Convert one frequency in Hz to the Slaney mel scale."""
    if freq >= _BREAK_HZ:
        return _BREAK_MEL + math.log(freq / _BREAK_HZ) / _LOG_STEP
    return freq / _LINEAR_HZ_PER_MEL


def slaney_mel_to_hz(mels: torch.Tensor) -> torch.Tensor:
    """Convert Slaney mels back to Hz, elementwise."""
    linear = mels * _LINEAR_HZ_PER_MEL
    logarithmic = _BREAK_HZ * torch.exp(_LOG_STEP * (mels - _BREAK_MEL))
    return torch.where(mels >= _BREAK_MEL, logarithmic, linear)


def slaney_mel_filterbank(
    n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int
) -> torch.Tensor:
    """Area-normalised triangular filters on the Slaney scale, shape (n_freqs, n_mels)."""
    # Integer Nyquist on purpose: that is how torchaudio spaces the FFT bins.
    bin_hz = torch.linspace(0, sample_rate // 2, n_freqs)
    edges_mel = torch.linspace(hz_to_slaney_mel(f_min), hz_to_slaney_mel(f_max), n_mels + 2)
    edges_hz = slaney_mel_to_hz(edges_mel)
    widths = edges_hz[1:] - edges_hz[:-1]
    offsets = edges_hz.unsqueeze(0) - bin_hz.unsqueeze(1)
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    tri = torch.clamp(torch.minimum(rising, falling), min=0.0)
    # Divide by band width so every filter carries roughly equal energy.
    return tri * (2.0 / (edges_hz[2:] - edges_hz[:-2])).unsqueeze(0)


class _Spectrogram(nn.Module):
    """Centred, reflect-padded STFT magnitude with a periodic Hann window of ``win_length``."""

    def __init__(self, n_fft: int, win_length: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        # Not persistent: the official checkpoint omits this derived tensor.
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """(..., T) -> (..., n_fft // 2 + 1, 1 + T // hop_length)."""
        lead = wav.shape[:-1]
        spec = torch.stft(
            wav.reshape(-1, wav.shape[-1]),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        return spec.abs().reshape(*lead, *spec.shape[-2:])


class _MelScale(nn.Module):
    """Project linear-frequency magnitudes onto the mel filterbank."""

    def __init__(self, fb: torch.Tensor) -> None:
        super().__init__()
        # Not persistent: the official checkpoint omits this derived tensor.
        self.register_buffer("fb", fb, persistent=False)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """(..., n_freqs, frames) -> (..., n_mels, frames)."""
        return torch.matmul(spec.transpose(-1, -2), self.fb).transpose(-1, -2)


class MelSpectrogram(nn.Module):
    """Power-1 (magnitude) mel spectrogram, Slaney scale and Slaney normalisation, no log."""

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 1024,
        win_length: int | None = None,
        hop_length: int | None = None,
        f_min: float = 0.0,
        f_max: float | None = None,
        n_mels: int = 128,
    ) -> None:
        super().__init__()
        win = win_length or n_fft
        hop = hop_length or win // 2
        top = f_max if f_max is not None else float(sample_rate // 2)
        self.sample_rate = sample_rate
        # Submodule and buffer names mirror torchaudio's for a like-for-like module tree.
        self.spectrogram = _Spectrogram(n_fft, win, hop)
        self.mel_scale = _MelScale(
            slaney_mel_filterbank(n_fft // 2 + 1, float(f_min), top, n_mels, sample_rate)
        )

    @classmethod
    def from_mel_params(cls, params: Mapping[str, Any]) -> "MelSpectrogram":
        """Build from BiCodec's ``mel_params`` config block."""
        return cls(
            sample_rate=params["sample_rate"],
            n_fft=params["n_fft"],
            win_length=params["win_length"],
            hop_length=params["hop_length"],
            f_min=params["mel_fmin"],
            f_max=params.get("mel_fmax"),
            n_mels=params["num_mels"],
        )

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """(..., T) waveform -> (..., n_mels, 1 + T // hop_length)."""
        return self.mel_scale(self.spectrogram(wav))
