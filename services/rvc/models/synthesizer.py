"""RVC synthesizers (v1/v2, with and without pitch) for inference, and their config list.

Submodules are named ``enc_p``, ``dec``, ``flow`` and ``emb_g`` as in the RVC WebUI, so a
voice file's ``weight`` dict loads strictly. The posterior encoder (``enc_q``) is left out:
voice files have it stripped and inference never uses it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils import parametrize

from services.rvc.models.attentions import Encoder
from services.rvc.models.flow import ResidualCouplingBlock
from services.rvc.models.generator import Generator, GeneratorNSF, draw_normal

# The WebUI scales the prior's standard deviation by this when sampling at inference.
PRIOR_NOISE_SCALE = 0.66666

SAMPLE_RATE_NAMES = {"32k": 32000, "40k": 40000, "48k": 48000}
FEATURE_DIMS = {"v1": 256, "v2": 768}
# RVC feeds content features at 100 frames per second; each frame becomes sr/100 samples.
FRAMES_PER_SECOND = 100

_CONFIG_FIELDS = (
    "spec_channels",
    "segment_size",
    "inter_channels",
    "hidden_channels",
    "filter_channels",
    "n_heads",
    "n_layers",
    "kernel_size",
    "p_dropout",
    "resblock",
    "resblock_kernel_sizes",
    "resblock_dilation_sizes",
    "upsample_rates",
    "upsample_initial_channel",
    "upsample_kernel_sizes",
    "spk_embed_dim",
    "gin_channels",
    "sample_rate",
)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"config {name} must be a positive int, got {value!r}")
    return value


def _int_list(name: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"config {name} must be a non-empty list of ints, got {value!r}")
    return tuple(_positive_int(name, v) for v in value)


@dataclass(frozen=True)
class SynthesizerConfig:
    """The 18-entry ``config`` list of a WebUI voice file, validated, in the same order."""

    spec_channels: int
    segment_size: int
    inter_channels: int
    hidden_channels: int
    filter_channels: int
    n_heads: int
    n_layers: int
    kernel_size: int
    p_dropout: float
    resblock: str
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    upsample_rates: tuple[int, ...]
    upsample_initial_channel: int
    upsample_kernel_sizes: tuple[int, ...]
    spk_embed_dim: int
    gin_channels: int
    sample_rate: int

    @property
    def hop_length(self) -> int:
        return math.prod(self.upsample_rates)

    @classmethod
    def from_list(cls, values: Sequence[Any]) -> SynthesizerConfig:
        """Validates a config list; raises ValueError saying which entry is wrong and why."""
        if not isinstance(values, (list, tuple)) or len(values) != len(_CONFIG_FIELDS):
            n = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
            raise ValueError(f"config must be a list of {len(_CONFIG_FIELDS)} entries, got {n}")
        raw = dict(zip(_CONFIG_FIELDS, values, strict=True))
        ints = {
            name: _positive_int(name, raw[name])
            for name in _CONFIG_FIELDS
            if name
            not in (
                "p_dropout",
                "resblock",
                "resblock_kernel_sizes",
                "resblock_dilation_sizes",
                "upsample_rates",
                "upsample_kernel_sizes",
                "gin_channels",
                "sample_rate",
            )
        }
        p_dropout = raw["p_dropout"]
        if isinstance(p_dropout, bool) or not isinstance(p_dropout, (int, float)):
            raise ValueError(f"config p_dropout must be a number, got {p_dropout!r}")
        if not 0 <= p_dropout < 1:
            raise ValueError(f"config p_dropout must be in [0, 1), got {p_dropout!r}")
        resblock = raw["resblock"]
        if resblock not in ("1", "2"):
            raise ValueError(f"config resblock must be '1' or '2', got {resblock!r}")
        gin = raw["gin_channels"]
        if isinstance(gin, bool) or not isinstance(gin, int) or gin < 0:
            raise ValueError(f"config gin_channels must be a non-negative int, got {gin!r}")
        sample_rate = raw["sample_rate"]
        if isinstance(sample_rate, str):
            sample_rate = SAMPLE_RATE_NAMES.get(sample_rate, sample_rate)
        _positive_int("sample_rate", sample_rate)

        kernels = _int_list("resblock_kernel_sizes", raw["resblock_kernel_sizes"])
        dilations_raw = raw["resblock_dilation_sizes"]
        if not isinstance(dilations_raw, (list, tuple)) or len(dilations_raw) != len(kernels):
            raise ValueError(
                "config resblock_dilation_sizes must hold one list per resblock kernel "
                f"({len(kernels)}), got {dilations_raw!r}"
            )
        dilations = tuple(_int_list("resblock_dilation_sizes", d) for d in dilations_raw)
        needed = 3 if resblock == "1" else 2
        if any(len(d) < needed for d in dilations):
            raise ValueError(
                f"config resblock {resblock!r} needs {needed} dilations per kernel, "
                f"got {dilations_raw!r}"
            )
        rates = _int_list("upsample_rates", raw["upsample_rates"])
        up_kernels = _int_list("upsample_kernel_sizes", raw["upsample_kernel_sizes"])
        if len(rates) != len(up_kernels):
            raise ValueError(
                f"config upsample_rates {list(rates)} and upsample_kernel_sizes "
                f"{list(up_kernels)} differ in length"
            )
        for rate, k in zip(rates, up_kernels, strict=True):
            # Otherwise a transposed conv does not produce exactly rate x its input length.
            if k < rate or (k - rate) % 2:
                raise ValueError(
                    f"config upsample kernel {k} does not fit rate {rate} "
                    "(needs kernel >= rate with an even difference)"
                )
        for i in range(len(rates) - 1):
            # The NSF source is strided down by the remaining upsampling; odd strides misalign.
            if math.prod(rates[i + 1 :]) % 2:
                raise ValueError(f"config upsample_rates {list(rates)}: odd tail product")
        uic = ints["upsample_initial_channel"]
        if uic % 2 ** len(rates):
            raise ValueError(
                f"config upsample_initial_channel {uic} must be divisible by "
                f"2**{len(rates)} (one halving per upsampling stage)"
            )
        if ints["hidden_channels"] % ints["n_heads"]:
            raise ValueError(
                f"config hidden_channels {ints['hidden_channels']} not divisible by "
                f"n_heads {ints['n_heads']}"
            )
        if ints["inter_channels"] % 2:
            raise ValueError(f"config inter_channels {ints['inter_channels']} must be even")
        hop = math.prod(rates)
        if hop * FRAMES_PER_SECOND != sample_rate:
            raise ValueError(
                f"config upsample_rates {list(rates)} give {hop} samples per frame, but "
                f"sample rate {sample_rate} at {FRAMES_PER_SECOND} frames/s needs "
                f"{sample_rate / FRAMES_PER_SECOND:g}"
            )
        return cls(
            **ints,
            p_dropout=float(p_dropout),
            resblock=resblock,
            resblock_kernel_sizes=kernels,
            resblock_dilation_sizes=dilations,
            upsample_rates=rates,
            upsample_kernel_sizes=up_kernels,
            gin_channels=gin,
            sample_rate=sample_rate,
        )

    def to_list(self) -> list[Any]:
        """The WebUI list layout (lists, not tuples), e.g. for writing a voice file."""
        out: list[Any] = []
        for name in _CONFIG_FIELDS:
            value = getattr(self, name)
            if name == "resblock_dilation_sizes":
                value = [list(d) for d in value]
            elif isinstance(value, tuple):
                value = list(value)
            out.append(value)
        return out


class ContentEncoder(nn.Module):
    """Content features (+ coarse pitch) -> prior mean and log-std per frame (WebUI TextEncoder)."""

    def __init__(self, in_channels: int, config: SynthesizerConfig, pitch: bool) -> None:
        super().__init__()
        self.out_channels = config.inter_channels
        self.hidden_channels = config.hidden_channels
        self.emb_phone = nn.Linear(in_channels, config.hidden_channels)
        if pitch:
            self.emb_pitch = nn.Embedding(256, config.hidden_channels)
        self.encoder = Encoder(
            config.hidden_channels,
            config.filter_channels,
            config.n_heads,
            config.n_layers,
            config.kernel_size,
        )
        self.proj = nn.Conv1d(config.hidden_channels, 2 * config.inter_channels, 1)

    def forward(
        self, phone: torch.Tensor, pitch: torch.Tensor | None, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.emb_phone(phone)
        if pitch is not None:
            x = x + self.emb_pitch(pitch)
        x = nn.functional.leaky_relu(x * math.sqrt(self.hidden_channels), 0.1)
        x = x.transpose(1, 2)  # [B, H, T]
        frames = torch.arange(x.shape[2], device=x.device)
        x_mask = (frames[None, :] < lengths[:, None]).unsqueeze(1).to(x.dtype)
        x = self.encoder(x * x_mask, x_mask)
        stats = self.proj(x) * x_mask
        m, logs = torch.split(stats, self.out_channels, dim=1)
        return m, logs, x_mask


class Synthesizer(nn.Module):
    """Content encoder -> prior sample -> inverse flow -> vocoder. Inference only."""

    feature_dim: ClassVar[int]
    pitch_guided: ClassVar[bool]

    def __init__(self, config: SynthesizerConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.enc_p = ContentEncoder(self.feature_dim, c, pitch=self.pitch_guided)
        dec_args = (
            c.inter_channels,
            c.resblock,
            c.resblock_kernel_sizes,
            c.resblock_dilation_sizes,
            c.upsample_rates,
            c.upsample_initial_channel,
            c.upsample_kernel_sizes,
            c.gin_channels,
        )
        self.dec: Generator = (
            GeneratorNSF(*dec_args, sample_rate=c.sample_rate)
            if self.pitch_guided
            else Generator(*dec_args)
        )
        # The WebUI hardcodes the flow's WN shape: kernel 5, dilation rate 1, 3 layers, 4 flows.
        self.flow = ResidualCouplingBlock(
            c.inter_channels, c.hidden_channels, 5, 1, 3, gin_channels=c.gin_channels
        )
        self.emb_g = nn.Embedding(c.spk_embed_dim, c.gin_channels)

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    def remove_weight_norm(self) -> None:
        """Folds every weight-norm parametrization into a plain weight (for inference)."""
        for module in self.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)

    @torch.no_grad()
    def infer(
        self,
        phone: torch.Tensor,
        pitch: torch.Tensor | None = None,
        nsff0: torch.Tensor | None = None,
        speaker: int = 0,
        generator: torch.Generator | None = None,
        lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """phone [B, T, feature_dim]; pitch [B, T] coarse 1..255 and nsff0 [B, T] Hz when
        pitch-guided. Returns audio [T * hop_length] for B == 1, else [B, T * hop_length]."""
        weight = self.emb_g.weight
        device, dtype = weight.device, weight.dtype
        if phone.ndim != 3 or phone.shape[2] != self.feature_dim:
            raise ValueError(f"phone must be [B, T, {self.feature_dim}], got {list(phone.shape)}")
        b, t = phone.shape[:2]
        if t == 0:
            raise ValueError("phone has no frames")
        if lengths is None:
            lengths = torch.full((b,), t, device=device, dtype=torch.long)
        else:
            lengths = lengths.to(device=device, dtype=torch.long)
            if lengths.shape != (b,) or bool((lengths < 1).any()) or bool((lengths > t).any()):
                raise ValueError(f"lengths must be [B] in 1..{t}, got {lengths.tolist()}")
        if not 0 <= speaker < self.config.spk_embed_dim:
            raise ValueError(f"speaker {speaker} out of range 0..{self.config.spk_embed_dim - 1}")

        if self.pitch_guided:
            if pitch is None or nsff0 is None:
                raise ValueError("this voice is pitch-guided: pitch and nsff0 are required")
            if pitch.shape != (b, t) or nsff0.shape != (b, t):
                raise ValueError(
                    f"pitch and nsff0 must be [{b}, {t}], got {list(pitch.shape)} "
                    f"and {list(nsff0.shape)}"
                )
            pitch = pitch.to(device=device, dtype=torch.long)
            if bool((pitch < 0).any()) or bool((pitch > 255).any()):
                raise ValueError("coarse pitch must be in 0..255")
            nsff0 = nsff0.to(device=device, dtype=torch.float32)
        else:
            pitch = nsff0 = None

        sid = torch.full((b,), int(speaker), device=device, dtype=torch.long)
        g = self.emb_g(sid).unsqueeze(-1)  # [B, gin, 1]
        m, logs, x_mask = self.enc_p(phone.to(device=device, dtype=dtype), pitch, lengths)
        noise = draw_normal(m.shape, generator, device).to(dtype)
        z_p = (m + torch.exp(logs) * noise * PRIOR_NOISE_SCALE) * x_mask
        z = self.flow.inverse(z_p, x_mask, g=g) * x_mask
        if isinstance(self.dec, GeneratorNSF):
            audio = self.dec(z, nsff0, g=g, generator=generator)
        else:
            audio = self.dec(z, g=g)
        return audio[0, 0] if b == 1 else audio[:, 0]


class SynthesizerV1Pitch(Synthesizer):
    """v1 (256-dim content features), pitch-guided (WebUI SynthesizerTrnMs256NSFsid)."""

    feature_dim = 256
    pitch_guided = True


class SynthesizerV1NoPitch(Synthesizer):
    """v1 without pitch (WebUI SynthesizerTrnMs256NSFsid_nono)."""

    feature_dim = 256
    pitch_guided = False


class SynthesizerV2Pitch(Synthesizer):
    """v2 (768-dim content features), pitch-guided (WebUI SynthesizerTrnMs768NSFsid)."""

    feature_dim = 768
    pitch_guided = True


class SynthesizerV2NoPitch(Synthesizer):
    """v2 without pitch (WebUI SynthesizerTrnMs768NSFsid_nono)."""

    feature_dim = 768
    pitch_guided = False


_CLASSES: dict[tuple[str, bool], type[Synthesizer]] = {
    ("v1", True): SynthesizerV1Pitch,
    ("v1", False): SynthesizerV1NoPitch,
    ("v2", True): SynthesizerV2Pitch,
    ("v2", False): SynthesizerV2NoPitch,
}


def synthesizer_class(version: str, pitch_guided: bool) -> type[Synthesizer]:
    try:
        return _CLASSES[(version, bool(pitch_guided))]
    except KeyError:
        raise ValueError(f"unknown RVC version {version!r} (expected 'v1' or 'v2')") from None
