"""RMVPE pitch estimator: log-mel front end, U-Net + BiGRU salience network, salience decoding.

Module and parameter names follow the public ``rmvpe.pt`` so that file loads strictly.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SAMPLE_RATE = 16000
HOP = 160
N_FFT = 1024
N_MELS = 128
MEL_FMIN, MEL_FMAX = 30.0, 8000.0
N_BINS = 360
# Bin i of the salience sits at CENTS_OFFSET + 20 * i cents above 10 Hz.
CENTS_OFFSET = 1997.3794084376191
CENTS_PER_BIN = 20.0
LOG_FLOOR = 1e-5
_DECODE_RADIUS = 4
_CNN_CHANNELS = 3


class RmvpeFormatError(ValueError):
    """The checkpoint is not an RMVPE state dict this module can load."""


def htk_mel_filterbank(
    sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
    fmin: float = MEL_FMIN, fmax: float = MEL_FMAX,
) -> np.ndarray:
    """Triangular HTK-scale filters with Slaney area normalisation, shape (n_mels, n_fft//2+1)."""
    to_mel = lambda hz: 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)  # noqa: E731
    edges_mel = np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2)
    edges = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    bins = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lo) / (mid - lo)
    falling = (hi - bins[None, :]) / (hi - mid)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # Equal area per filter, so wide high-frequency bands are not louder.
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def decode_salience(salience: np.ndarray, threshold: float = 0.03) -> np.ndarray:
    """(frames, 360) salience -> Hz per frame; weighted mean of 9 bins around the peak, 0 if weak.

    Float64, as the WebUI leaves it: its key shift and coarse bins work on these values,
    and rounding them to float32 first can move a bin at its edge.
    """
    sal = np.asarray(salience, dtype=np.float32)
    peak = sal.argmax(axis=1)
    # Zero-padding both the salience and the cent grid keeps edge windows 9 wide.
    padded = np.pad(sal, ((0, 0), (_DECODE_RADIUS, _DECODE_RADIUS)))
    cents_grid = np.pad(CENTS_OFFSET + CENTS_PER_BIN * np.arange(N_BINS), _DECODE_RADIUS)
    idx = peak[:, None] + np.arange(2 * _DECODE_RADIUS + 1)[None, :]
    window = np.take_along_axis(padded, idx, axis=1)
    weight = window.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cents = (window * cents_grid[idx]).sum(axis=1) / weight
    voiced = (sal.max(axis=1) > threshold) & (weight > 0)
    return np.where(voiced, 10.0 * 2.0 ** (cents / 1200.0), 0.0)


class ConvBlockRes(nn.Module):
    """Two 3x3 conv-BN-ReLU layers plus a residual (1x1 projection when widths differ)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
        )
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.conv(x) + skip


class ResEncoderBlock(nn.Module):
    """A stack of residual blocks; `pool` halves time and mel when the block is a U-Net level."""

    def __init__(self, cin: int, cout: int, n_blocks: int, pool: bool) -> None:
        super().__init__()
        self.conv = nn.ModuleList(
            [ConvBlockRes(cin if i == 0 else cout, cout) for i in range(n_blocks)]
        )
        self.pool = nn.AvgPool2d(2) if pool else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.conv:
            x = block(x)
        return x


class Encoder(nn.Module):
    def __init__(self, in_channels: int, widths: list[int], n_blocks: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        ins = [in_channels, *widths[:-1]]
        self.layers = nn.ModuleList(
            [ResEncoderBlock(i, o, n_blocks, pool=True) for i, o in zip(ins, widths, strict=True)]
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.bn(x)
        skips = []
        for layer in self.layers:
            x = layer(x)
            skips.append(x)
            x = layer.pool(x)
        return x, skips


class Intermediate(nn.Module):
    def __init__(self, cin: int, cout: int, n_layers: int, n_blocks: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [ResEncoderBlock(cin if i == 0 else cout, cout, n_blocks, pool=False)
             for i in range(n_layers)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class ResDecoderBlock(nn.Module):
    """Upsample x2 (time and mel), concatenate the skip, then residual blocks."""

    def __init__(self, cin: int, cout: int, n_blocks: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(),
        )
        self.conv2 = nn.ModuleList(
            [ConvBlockRes(2 * cout if i == 0 else cout, cout) for i in range(n_blocks)]
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat((self.conv1(x), skip), dim=1)
        for block in self.conv2:
            x = block(x)
        return x


class Decoder(nn.Module):
    def __init__(self, cin: int, widths: list[int], n_blocks: int) -> None:
        super().__init__()
        outs = widths[::-1]
        ins = [cin, *outs[:-1]]
        self.layers = nn.ModuleList(
            [ResDecoderBlock(i, o, n_blocks) for i, o in zip(ins, outs, strict=True)]
        )

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for layer, skip in zip(self.layers, reversed(skips), strict=True):
            x = layer(x, skip)
        return x


class DeepUnet(nn.Module):
    def __init__(self, in_channels: int, widths: list[int], mid: int, n_inter: int,
                 n_blocks: int) -> None:
        super().__init__()
        self.encoder = Encoder(in_channels, widths, n_blocks)
        self.intermediate = Intermediate(widths[-1], mid, n_inter, n_blocks)
        self.decoder = Decoder(mid, widths, n_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, skips = self.encoder(x)
        return self.decoder(self.intermediate(x), skips)


class BiGRU(nn.Module):
    def __init__(self, n_in: int, hidden: int, n_layers: int) -> None:
        super().__init__()
        self.gru = nn.GRU(n_in, hidden, num_layers=n_layers, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0]


class Rmvpe(nn.Module):
    """RMVPE: log-mel (B, 128, T) -> per-frame pitch salience (B, T, 360) in [0, 1].

    The public checkpoint is widths=(16, 32, 64, 128, 256), mid=512, 4 intermediate layers,
    4 residual blocks per stage, one BiGRU layer of 256 units.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128, 256), mid: int = 512,
                 n_inter: int = 4, n_blocks: int = 4, gru_hidden: int = 256, n_gru: int = 1,
                 in_channels: int = 1) -> None:
        super().__init__()
        if N_MELS % 2 ** len(widths):
            raise ValueError(f"{len(widths)} pooling levels do not divide {N_MELS} mel bins")
        self.levels = len(widths)
        self.unet = DeepUnet(in_channels, list(widths), mid, n_inter, n_blocks)
        self.cnn = nn.Conv2d(widths[0], _CNN_CHANNELS, 3, padding=1)
        self.fc = nn.Sequential(
            BiGRU(_CNN_CHANNELS * N_MELS, gru_hidden, n_gru),
            nn.Linear(2 * gru_hidden, N_BINS),
            nn.Dropout(0.25),
            nn.Sigmoid(),
        )
        # Front-end constants are derived, not learned: keep them out of the state dict.
        self.register_buffer("mel_basis", torch.from_numpy(htk_mel_filterbank()), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT, device="cpu"), persistent=False)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.unet(mel.transpose(1, 2).unsqueeze(1))
        x = self.cnn(x).transpose(1, 2).flatten(2)
        return self.fc(x)

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, samples) float32 -> (B, 128, samples // 160 + 1) natural-log mel magnitudes."""
        spec = torch.stft(audio.float(), N_FFT, hop_length=HOP, win_length=N_FFT,
                          window=self.window.float(), center=True, return_complex=True)
        mel = torch.matmul(self.mel_basis.float(), spec.abs())
        return torch.log(torch.clamp(mel, min=LOG_FLOOR))

    def salience(self, mel: torch.Tensor) -> torch.Tensor:
        """Run the network on a log-mel of any length (padded to whole U-Net strides)."""
        frames = mel.shape[-1]
        stride = 2**self.levels
        mel = F.pad(mel, (0, -frames % stride))
        out = self(mel.to(self.cnn.weight.dtype))
        return out[:, :frames].float()

    @torch.inference_mode()
    def f0(self, audio16k: np.ndarray, threshold: float = 0.03) -> np.ndarray:
        """Mono float32 16 kHz -> Hz per 10 ms frame (0 = unvoiced), len(audio) // 160 + 1 frames."""
        audio = np.asarray(audio16k, dtype=np.float32).reshape(-1)
        frames = audio.shape[0] // HOP + 1
        # Reflect padding in the STFT needs more than n_fft/2 samples.
        if audio.shape[0] <= N_FFT // 2:
            audio = np.pad(audio, (0, N_FFT // 2 + 1 - audio.shape[0]))
        x = torch.from_numpy(audio).to(self.mel_basis.device)[None]
        sal = self.salience(self.log_mel(x))[0, :frames]
        return decode_salience(sal.cpu().numpy(), threshold)

    @classmethod
    def load(cls, path: Path, device: torch.device | str = "cpu", half: bool = False) -> Rmvpe:
        """Load a plain state dict (weights_only); widths come from tensor shapes; strict.

        `half` applies only off CPU, as in the WebUI.
        """
        try:
            state = torch.load(Path(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # an unpickling refusal is the usual cause
            raise RmvpeFormatError(f"{path}: not a weights-only RMVPE checkpoint: {exc}") from exc
        if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
        ):
            raise RmvpeFormatError(f"{path}: expected a flat state dict of tensors")
        try:
            model = cls(**_infer_config(state))
        except ValueError as exc:
            raise RmvpeFormatError(f"{path}: {exc}") from exc
        expected, given = set(model.state_dict()), set(state)
        problems = [f"missing key {k!r}" for k in sorted(expected - given)]
        problems += [f"unexpected key {k!r}" for k in sorted(given - expected)]
        if problems:
            raise RmvpeFormatError(f"{path}: " + "; ".join(problems))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise RmvpeFormatError(f"{path}: {exc}") from exc
        model = model.to(device).eval()
        if half and torch.device(device).type != "cpu":
            for part in (model.unet, model.cnn, model.fc):
                part.half()
        return model


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in state if (m := rx.fullmatch(k))}
    return max(found) + 1 if found else 0


def _shape(state: dict[str, torch.Tensor], key: str) -> torch.Size:
    if key not in state:
        raise RmvpeFormatError(f"missing key {key!r}")
    return state[key].shape


def _infer_config(state: dict[str, torch.Tensor]) -> dict[str, object]:
    """Read the architecture hyper-parameters back from parameter shapes and key indices."""
    enc = "unet.encoder.layers.{}.conv.0.conv.0.weight"
    levels = _count(state, r"unet\.encoder\.layers\.(\d+)\.conv\.0\.conv\.0\.weight")
    if levels == 0:
        raise RmvpeFormatError(f"missing key {enc.format(0)!r}")
    widths = tuple(int(_shape(state, enc.format(i))[0]) for i in range(levels))
    gru = _shape(state, "fc.0.gru.weight_hh_l0")
    return {
        "widths": widths,
        "mid": int(_shape(state, "unet.intermediate.layers.0.conv.0.conv.0.weight")[0]),
        "n_inter": _count(state, r"unet\.intermediate\.layers\.(\d+)\.conv\.0\.conv\.0\.weight"),
        "n_blocks": _count(state, r"unet\.encoder\.layers\.0\.conv\.(\d+)\.conv\.0\.weight"),
        "gru_hidden": int(gru[1]),
        "n_gru": _count(state, r"fc\.0\.gru\.weight_hh_l(\d+)"),
        "in_channels": int(_shape(state, "unet.encoder.bn.weight")[0]),
    }
