"""Audio as numbers: raw PCM in and out, containers at the edge, resampling.

Every function takes and returns ``PcmAudio`` (float32 samples in [-1, 1]);
bad input raises ``InvalidArgument`` with a message that says what is wrong.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import Enum

import numpy as np
import soundfile
import soxr

from services.common.errors import InvalidArgument

MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 8


class SampleFormat(Enum):
    S16LE = ("<i2", 2)
    F32LE = ("<f4", 4)

    @property
    def dtype(self) -> str:
        return self.value[0]

    @property
    def width(self) -> int:
        return self.value[1]


@dataclass(frozen=True)
class PcmAudio:
    """float32 samples shaped (frames,) for mono or (frames, channels)."""

    samples: np.ndarray
    sample_rate: int

    @property
    def channels(self) -> int:
        return 1 if self.samples.ndim == 1 else self.samples.shape[1]

    @property
    def frames(self) -> int:
        return self.samples.shape[0]

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def check_sample_rate(sample_rate: int) -> None:
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise InvalidArgument(
            f"sample_rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
        )


def _checked(samples: np.ndarray, sample_rate: int) -> PcmAudio:
    check_sample_rate(sample_rate)
    if not np.all(np.isfinite(samples)):
        raise InvalidArgument("audio contains NaN or infinite samples")
    return PcmAudio(samples, sample_rate)


def decode_pcm(
    data: bytes, sample_rate: int, sample_format: SampleFormat, channels: int = 1
) -> PcmAudio:
    """Interleaved little-endian PCM bytes to float32 samples."""
    if not 1 <= channels <= MAX_CHANNELS:
        raise InvalidArgument(f"channels {channels} is outside 1..{MAX_CHANNELS}")
    frame_bytes = sample_format.width * channels
    if len(data) % frame_bytes:
        raise InvalidArgument(
            f"PCM length {len(data)} bytes is not a whole number of "
            f"{frame_bytes}-byte frames ({sample_format.name}, {channels} channel(s))"
        )
    raw = np.frombuffer(data, dtype=sample_format.dtype)
    if sample_format is SampleFormat.S16LE:
        samples = raw.astype(np.float32) / 32768.0
    else:
        samples = raw.astype(np.float32)
    if channels > 1:
        samples = samples.reshape(-1, channels)
    return _checked(samples, sample_rate)


def encode_pcm(audio: PcmAudio, sample_format: SampleFormat) -> bytes:
    """float32 samples to interleaved little-endian PCM bytes."""
    samples = np.clip(audio.samples, -1.0, 1.0)
    if sample_format is SampleFormat.S16LE:
        return np.round(samples * 32767.0).astype("<i2").tobytes()
    return samples.astype("<f4").tobytes()


def to_mono(audio: PcmAudio) -> PcmAudio:
    if audio.channels == 1:
        return audio
    return PcmAudio(audio.samples.mean(axis=1, dtype=np.float32), audio.sample_rate)


def resample(audio: PcmAudio, sample_rate: int) -> PcmAudio:
    check_sample_rate(sample_rate)
    if sample_rate == audio.sample_rate or audio.frames == 0:
        return PcmAudio(audio.samples, sample_rate)
    samples = soxr.resample(audio.samples, audio.sample_rate, sample_rate, quality="HQ")
    return PcmAudio(samples.astype(np.float32, copy=False), sample_rate)


def decode_container(data: bytes, max_seconds: float | None = None, limit: str = "") -> PcmAudio:
    """A whole audio file (WAV, FLAC, OGG, ...) as uploaded at the edge.

    With ``max_seconds``, a longer file is refused naming ``limit`` (the setting)
    before its signal is allocated: from the header's length, or while decoding
    in blocks where the header gives none, so a small file that unpacks to
    hours costs no more than the limit.
    """
    if not data:
        raise InvalidArgument("audio file is empty")
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as file:
            sample_rate = int(file.samplerate)
            check_sample_rate(sample_rate)
            if not 1 <= file.channels <= MAX_CHANNELS:
                raise InvalidArgument(f"channels {file.channels} is outside 1..{MAX_CHANNELS}")
            samples = _read(file, max_seconds, limit)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        # libsndfile's own words ("Format not recognised."), not the buffer's repr.
        reason = getattr(exc, "error_string", None) or str(exc)
        raise InvalidArgument(f"not a readable audio file: {reason}") from None
    return _checked(samples, sample_rate)


_UNKNOWN_LENGTH = 2**63 - 1  # libsndfile's frame count when the header gives no length
_BLOCK_FRAMES = 1 << 16


def _read(file: soundfile.SoundFile, max_seconds: float | None, limit: str) -> np.ndarray:
    most = None if max_seconds is None else int(max_seconds * file.samplerate)
    if most is not None and most < file.frames < _UNKNOWN_LENGTH:
        raise InvalidArgument(
            f"the file is {file.frames / file.samplerate:.1f} s long; "
            f"the limit is {max_seconds:g} s ({limit})"
        )
    # The header may lie or give no length: decode in blocks, at most one past the limit.
    blocks, frames = [], 0
    while most is None or frames <= most:
        block = _read_block(file)
        if not len(block):
            break
        blocks.append(block)
        frames += len(block)
    if most is not None and frames > most:
        raise InvalidArgument(f"the file is longer than {max_seconds:g} s, the limit ({limit})")
    samples = np.concatenate(blocks) if blocks else np.zeros((0, file.channels), np.float32)
    return samples[:, 0] if file.channels == 1 else samples


def _read_block(file: soundfile.SoundFile) -> np.ndarray:
    """The next block of up to _BLOCK_FRAMES frames, as float32 (frames, channels).

    libsndfile's own sequential read, not ``SoundFile.read``: that one asks for the
    position before each block and seeks past it after, and libsndfile cannot seek
    to the end of a FLAC whose header gives no length (a streamed one), so the last
    block of every such file failed ("Internal psf_fseek() failed."), however short.
    """
    out = np.empty((_BLOCK_FRAMES, file.channels), np.float32)
    pointer = soundfile._ffi.cast("float *", out.ctypes.data)
    frames = soundfile._snd.sf_readf_float(file._file, pointer, _BLOCK_FRAMES)
    error = soundfile._snd.sf_error(file._file)
    if error:
        raise soundfile.LibsndfileError(error)
    return out[:frames]


def encode_wav(audio: PcmAudio) -> bytes:
    """16-bit PCM WAV, the format the old HTTP API returned."""
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(audio.samples, -1.0, 1.0), audio.sample_rate,
                    format="WAV", subtype="PCM_16")
    return buffer.getvalue()
