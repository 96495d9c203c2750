"""Converting one clip the way the RVC WebUI (main branch, ``infer/vc/pipeline.py``) does.

16 kHz audio in, audio at the voice's rate (or ``resample_sr``) out: high-pass,
reflect padding, long inputs split at their quietest points, content features,
pitch (unvoiced frames filled in), index retrieval, ``protect``, synthesis, then
the loudness envelope on the joined pieces, and last the length fit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import soxr
import torch
import torch.nn.functional as F
from scipy import signal

from services.rvc.dsp import f0 as pitch
from services.rvc.dsp.retrieval import FeatureIndex
from services.rvc.framing import RATE, WINDOW
from services.rvc.models.checkpoint import VoiceInfo
from services.rvc.models.content import ContentEncoder
from services.rvc.models.rmvpe import Rmvpe
from services.rvc.params import ConversionParams

# The WebUI removes rumble below 48 Hz before anything else.
_HIGH_PASS = signal.butter(N=5, Wn=48, btype="high", fs=RATE)


@dataclass(frozen=True)
class Segmenting:
    """The WebUI's x_pad / x_query / x_center / x_max, in seconds."""

    pad: float
    query: float
    center: float
    longest: float

    @classmethod
    def for_precision(cls, half: bool) -> "Segmenting":
        # Longer pieces on GPUs (fp16), shorter ones where memory is plain RAM and time is CPU.
        return cls(3, 10, 60, 65) if half else cls(1, 6, 38, 41)


@dataclass
class Voice:
    """A voice ready to convert into: its synthesizer and, when it has one, its index."""

    name: str
    info: VoiceInfo
    synthesizer: torch.nn.Module
    index: FeatureIndex | None


def split_points(audio: np.ndarray, segmenting: Segmenting) -> list[int]:
    """Where a long clip is cut: the quietest 10 ms near every ``center`` seconds."""
    if audio.shape[0] + WINDOW <= segmenting.longest * RATE:
        return []
    query, center = int(segmenting.query * RATE), int(segmenting.center * RATE)
    padded = np.abs(np.pad(audio, (WINDOW // 2, WINDOW // 2), mode="reflect"))
    # A running 10 ms sum, added up one offset at a time as the WebUI does: another
    # summation order rounds differently and can pick another sample on a near tie.
    loudness = np.zeros(audio.shape[0], dtype=padded.dtype)
    for offset in range(WINDOW):
        loudness += padded[offset : offset + audio.shape[0]]
    points = []
    for t in range(center, audio.shape[0], center):
        low = max(t - query, 0)
        around = loudness[low : t + query]
        points.append(low + int(np.argmin(around)))
    return points


def rms_frames(x: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """RMS of ``frame``-sample windows every ``hop`` samples, centred, zero-padded, in float32.

    Bit for bit what ``librosa.feature.rms(y=x, frame_length=frame, hop_length=hop)[0]``
    returns (the WebUI's envelope), without importing librosa, which would load numba
    into every worker.
    """
    padded = np.pad(x, (frame // 2, frame // 2))
    # The same strided view librosa's frame() builds: [sample in window, window].
    windows = np.lib.stride_tricks.sliding_window_view(padded, frame)[::hop].T
    return np.sqrt(np.mean(np.square(windows, dtype=np.float32), axis=0))


def mix_loudness(source: np.ndarray, converted: np.ndarray, out_rate: int, rate: float) -> np.ndarray:
    """Blend the converted audio's loudness envelope with the source's (``rms_mix_rate``).

    ``source`` is the high-passed 16 kHz input and ``converted`` the joined pieces before
    any length fit: both envelopes are stretched over ``converted``'s own length.
    """
    if rate >= 1.0:
        return converted

    def envelope(x: np.ndarray, sr: int) -> torch.Tensor:
        # RMS over 1 s windows every 0.5 s, stretched linearly to one value per sample.
        rms = torch.from_numpy(rms_frames(x, sr // 2 * 2, sr // 2))
        return F.interpolate(rms[None, None], size=converted.shape[0], mode="linear")[0, 0]

    source_rms = envelope(source, RATE)
    converted_rms = torch.clamp(envelope(converted, out_rate), min=1e-6)
    # Tensor exponents, as the WebUI passes them: a float exponent of 0.5 would take torch's
    # sqrt shortcut, which can round differently.
    gain = torch.pow(source_rms, torch.tensor(1 - rate)) * torch.pow(
        converted_rms, torch.tensor(rate - 1)
    )
    return (np.asarray(converted, dtype=np.float32) * gain.numpy()).astype(np.float32)


class ConversionPipeline:
    """Everything one worker needs to convert: the content encoder, pitch models, device."""

    def __init__(
        self,
        content: ContentEncoder,
        device: torch.device,
        half: bool,
        rmvpe: Callable[[], Rmvpe | None],
        segmenting: Segmenting | None = None,
    ) -> None:
        self.content = content
        self.device = device
        self.half = half
        self._rmvpe = rmvpe
        self.segmenting = segmenting or Segmenting.for_precision(half)

    def convert(
        self,
        voice: Voice,
        audio: np.ndarray,
        params: ConversionParams,
        *,
        seed: int = 0,
        pad_seconds: float | None = None,
    ) -> np.ndarray:
        """``audio``: mono float32 at 16 kHz. Returns float32 at the output rate, same duration."""
        info = voice.info
        audio = np.asarray(audio, dtype=np.float32)
        peak = float(np.abs(audio).max(initial=0.0)) / 0.95
        if peak > 1:
            audio = audio / peak
        # float64 from here on, as filtfilt returns it: pitch, cut points and the loudness
        # envelope all read these samples; the content encoder gets them as float32.
        audio = signal.filtfilt(*_HIGH_PASS, audio)
        segmenting = self.segmenting
        if pad_seconds is not None:
            segmenting = replace(segmenting, pad=pad_seconds)
        pad = int(segmenting.pad * RATE)
        pad_out = pad // WINDOW * info.hop_length
        # numpy reflects again and again when the pad is longer than the clip.
        padded = np.pad(audio, (pad, pad), mode="reflect" if audio.shape[0] > 1 else "constant")
        frames = padded.shape[0] // WINDOW

        coarse = hz = None
        if info.pitch_guided:
            with torch.inference_mode():
                bins, track = pitch.track_pitch(
                    padded, params.f0_method.value, frames, params.pitch_shift,
                    filter_radius=params.filter_radius, rmvpe=self._rmvpe_for(params),
                    device=str(self.device),
                )
            coarse = torch.from_numpy(bins).long()
            hz = torch.from_numpy(track)

        # One noise stream for the whole clip, piece after piece, as the WebUI draws every
        # piece's noise from torch's global generator after a single seed.
        generator = torch.Generator(device=self.device).manual_seed(seed)
        pieces = []
        start = 0
        for point in [*split_points(audio, segmenting), None]:
            end = padded.shape[0] if point is None else point // WINDOW * WINDOW + 2 * pad + WINDOW
            window = slice(start // WINDOW, None if point is None else (end - WINDOW) // WINDOW)
            out = self._convert_piece(
                voice, padded[start:end], params,
                None if coarse is None else coarse[window], None if hz is None else hz[window],
                generator,
            )
            out = out[pad_out : out.shape[0] - pad_out]
            if point is not None:
                # Keep exactly the audio this piece owns; the next piece starts here.
                next_start = point // WINDOW * WINDOW
                out = out[: (next_start - start) // WINDOW * info.hop_length]
                start = next_start
            pieces.append(out)
        # As in the WebUI: loudness, resampling and the peak limit act on the joined pieces as
        # they are; only then is the result fitted to the input's duration.
        converted = np.concatenate(pieces)
        converted = mix_loudness(audio, converted, info.sample_rate, params.rms_mix_rate)
        out_rate = params.resample_sr or info.sample_rate
        if out_rate != info.sample_rate:
            converted = soxr.resample(converted, info.sample_rate, out_rate, quality="HQ")
        loudest = float(np.abs(converted).max(initial=0.0)) / 0.99
        if loudest > 1:
            converted = converted / loudest
        converted = _fit(converted, round(audio.shape[0] * out_rate / RATE))
        return converted.astype(np.float32, copy=False)

    def _rmvpe_for(self, params: ConversionParams) -> Rmvpe | None:
        return self._rmvpe() if params.f0_method.value == "rmvpe" else None

    @torch.inference_mode()
    def _convert_piece(
        self,
        voice: Voice,
        audio: np.ndarray,
        params: ConversionParams,
        coarse: torch.Tensor | None,
        hz: torch.Tensor | None,
        generator: torch.Generator,
    ) -> np.ndarray:
        dtype = torch.float16 if self.half else torch.float32
        wav = torch.from_numpy(np.ascontiguousarray(audio)).to(self.device, dtype)[None]
        feats = self.content.extract(wav, voice.info.version)
        protecting = params.protect < 0.5 and coarse is not None
        original = feats.clone() if protecting else None
        if voice.index is not None and params.index_rate > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                blended = voice.index.blend(feats[0].float().cpu().numpy(), params.index_rate)
            feats = torch.from_numpy(blended)[None].to(self.device, dtype)
        # Content frames are 20 ms; pitch and synthesis run on 10 ms frames.
        feats = F.interpolate(feats.transpose(1, 2), scale_factor=2).transpose(1, 2)
        frames = min(audio.shape[0] // WINDOW, feats.shape[1])
        feats = feats[:, :frames]
        if coarse is not None and hz is not None:
            frames = min(frames, coarse.shape[0])
            feats = feats[:, :frames]
            coarse = coarse[:frames][None].to(self.device)
            hz = hz[:frames][None].to(self.device)
            if original is not None:
                original = F.interpolate(original.transpose(1, 2), scale_factor=2).transpose(1, 2)
                # Frames under 1 Hz keep more of the raw features so consonants stay crisp.
                # The unvoiced fill leaves none such unless nothing at all was voiced.
                keep = torch.where(hz < 1, params.protect, 1.0).to(dtype)[..., None]
                feats = feats * keep + original[:, :frames] * (1 - keep)
            # Hz stays float32: fp16 would round the pitch by about a cent.
            coarse_in, hz_in = coarse, hz
        else:
            coarse_in = hz_in = None
        out = voice.synthesizer.infer(feats, coarse_in, hz_in, speaker=0, generator=generator)
        return out.float().cpu().numpy().reshape(-1)


def _fit(audio: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad to ``length``; rounding in framing moves the end by under a hop."""
    if audio.shape[0] >= length:
        return audio[:length]
    return np.pad(audio, (0, length - audio.shape[0]))
