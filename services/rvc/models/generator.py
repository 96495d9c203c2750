"""HiFi-GAN vocoder of RVC, plain and with the neural-source-filter (NSF) harmonic source.

Module and parameter names match the RVC WebUI so that voice files load strictly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

LRELU_SLOPE = 0.1


def draw_normal(
    shape: Sequence[int], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Float32 N(0, 1) noise on ``device``, drawn from ``generator`` wherever that lives."""
    src = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=src).to(device)


def draw_uniform(
    shape: Sequence[int], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Float32 U[0, 1) noise on ``device``, drawn from ``generator`` wherever that lives."""
    src = generator.device if generator is not None else device
    return torch.rand(tuple(shape), generator=generator, device=src).to(device)


def _same_pad(kernel_size: int, dilation: int) -> int:
    return dilation * (kernel_size - 1) // 2


def _residual_conv(channels: int, kernel_size: int, dilation: int = 1) -> nn.Conv1d:
    """A weight-normed, length-preserving conv of a residual block."""
    return weight_norm(
        nn.Conv1d(
            channels, channels, kernel_size, dilation=dilation,
            padding=_same_pad(kernel_size, dilation),
        )
    )


class ResBlock1(nn.Module):
    """Three residual units, each a dilated conv then an undilated conv."""

    def __init__(self, channels: int, kernel_size: int, dilation: Sequence[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            _residual_conv(channels, kernel_size, d) for d in dilation[:3]
        )
        self.convs2 = nn.ModuleList(_residual_conv(channels, kernel_size) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            y = c1(F.leaky_relu(x, LRELU_SLOPE))
            x = x + c2(F.leaky_relu(y, LRELU_SLOPE))
        return x


class ResBlock2(nn.Module):
    """Two residual units of one dilated conv each."""

    def __init__(self, channels: int, kernel_size: int, dilation: Sequence[int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            _residual_conv(channels, kernel_size, d) for d in dilation[:2]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c in self.convs:
            x = x + c(F.leaky_relu(x, LRELU_SLOPE))
        return x


class Generator(nn.Module):
    """Latent frames [B, C, T] -> waveform [B, 1, T * prod(upsample_rates)] in (-1, 1)."""

    def __init__(
        self,
        initial_channel: int,
        resblock: str,
        resblock_kernel_sizes: Sequence[int],
        resblock_dilation_sizes: Sequence[Sequence[int]],
        upsample_rates: Sequence[int],
        upsample_initial_channel: int,
        upsample_kernel_sizes: Sequence[int],
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.num_kernels = len(resblock_kernel_sizes)
        self.upp = math.prod(upsample_rates)
        block = ResBlock1 if resblock == "1" else ResBlock2
        self.conv_pre = nn.Conv1d(initial_channel, upsample_initial_channel, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = upsample_initial_channel
        for i, (rate, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes, strict=True)):
            ch = upsample_initial_channel // 2 ** (i + 1)
            self.ups.append(
                weight_norm(nn.ConvTranspose1d(2 * ch, ch, k, rate, padding=(k - rate) // 2))
            )
            for rk, rd in zip(resblock_kernel_sizes, resblock_dilation_sizes, strict=True):
                self.resblocks.append(block(ch, rk, rd))
        self.conv_post = nn.Conv1d(ch, 1, 7, padding=3, bias=False)
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, upsample_initial_channel, 1)

    def _decode(
        self, x: torch.Tensor, g: torch.Tensor | None, source: torch.Tensor | None
    ) -> torch.Tensor:
        x = self.conv_pre(x)
        if g is not None:
            x = x + self.cond(g)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            if source is not None:
                x = x + self.noise_convs[i](source)
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        # The WebUI's last activation uses torch's default slope (0.01), not LRELU_SLOPE.
        x = self.conv_post(F.leaky_relu(x))
        return torch.tanh(x)

    def forward(self, x: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        return self._decode(x, g, None)


class SineGen(nn.Module):
    """F0 in Hz per frame -> sample-rate sine excitation (plus noise), voiced where f0 > 0."""

    def __init__(
        self,
        sample_rate: int,
        harmonic_num: int = 0,
        sine_amp: float = 0.1,
        noise_std: float = 0.003,
        voiced_threshold: float = 0.0,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.dim = harmonic_num + 1
        self.sine_amp = sine_amp
        self.noise_std = noise_std
        self.voiced_threshold = voiced_threshold

    def forward(
        self, f0: torch.Tensor, upp: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """f0: [B, T] Hz. Returns float32 [B, T * upp, harmonic_num + 1]."""
        b = f0.shape[0]
        device = f0.device
        # Phase is accumulated in float64: a float32 (let alone fp16) running sum over
        # minutes of audio loses enough precision to detune the excitation.
        f0 = f0.to(torch.float64)
        harmonics = torch.arange(1, self.dim + 1, device=device, dtype=torch.float64)
        step = (f0[..., None] * harmonics / self.sample_rate) % 1.0  # cycles per sample
        step = step.repeat_interleave(upp, dim=1)
        start = draw_uniform((b, self.dim), generator, device).to(torch.float64)
        start[:, 0] = 0.0  # the fundamental starts at phase 0; overtones at random phases
        phase = (torch.cumsum(step, dim=1) + start[:, None, :]) % 1.0
        sine = (torch.sin(2.0 * math.pi * phase) * self.sine_amp).to(torch.float32)

        voiced = (f0 > self.voiced_threshold).to(torch.float32)[..., None]
        voiced = voiced.repeat_interleave(upp, dim=1)
        noise_amp = voiced * self.noise_std + (1.0 - voiced) * (self.sine_amp / 3.0)
        noise = noise_amp * draw_normal(sine.shape, generator, device)
        return sine * voiced + noise


class SourceModuleHnNSF(nn.Module):
    """Harmonic-plus-noise source: sine bank merged to one excitation channel by a linear + tanh."""

    def __init__(self, sample_rate: int, harmonic_num: int = 0) -> None:
        super().__init__()
        self.l_sin_gen = SineGen(sample_rate, harmonic_num)
        self.l_linear = nn.Linear(harmonic_num + 1, 1)

    def forward(
        self, f0: torch.Tensor, upp: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """f0: [B, T] Hz. Returns [B, 1, T * upp] in the module's dtype."""
        sines = self.l_sin_gen(f0, upp, generator).to(self.l_linear.weight.dtype)
        return torch.tanh(self.l_linear(sines)).transpose(1, 2)


class GeneratorNSF(Generator):
    """HiFi-GAN whose every upsampling stage also receives the F0 excitation, downsampled."""

    def __init__(
        self,
        initial_channel: int,
        resblock: str,
        resblock_kernel_sizes: Sequence[int],
        resblock_dilation_sizes: Sequence[Sequence[int]],
        upsample_rates: Sequence[int],
        upsample_initial_channel: int,
        upsample_kernel_sizes: Sequence[int],
        gin_channels: int,
        sample_rate: int,
    ) -> None:
        super().__init__(
            initial_channel,
            resblock,
            resblock_kernel_sizes,
            resblock_dilation_sizes,
            upsample_rates,
            upsample_initial_channel,
            upsample_kernel_sizes,
            gin_channels,
        )
        self.m_source = SourceModuleHnNSF(sample_rate, harmonic_num=0)
        self.noise_convs = nn.ModuleList()
        for i in range(len(upsample_rates)):
            ch = upsample_initial_channel // 2 ** (i + 1)
            # Stride = how much the remaining stages still upsample, landing on this stage's rate.
            stride = math.prod(upsample_rates[i + 1 :])
            if i + 1 < len(upsample_rates):
                conv = nn.Conv1d(1, ch, 2 * stride, stride=stride, padding=stride // 2)
            else:
                conv = nn.Conv1d(1, ch, 1)
            self.noise_convs.append(conv)

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        f0: torch.Tensor,
        g: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        source = self.m_source(f0, self.upp, generator)
        return self._decode(x, g, source)
