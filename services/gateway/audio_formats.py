"""The audio encodings of the public HTTP edge: WAV, raw PCM, FLAC, MP3, Ogg Opus and AAC.

``encode`` turns one whole answer into a file. Answers streamed sentence by
sentence go through a ``StreamEncoder``, whose ``write`` returns what may be
sent at once; everything it returns, followed by ``close()``, is one valid file:

* wav: an open-ended header (sizes 0xFFFFFFFF) first, then PCM16 as it comes.
* pcm: raw signed 16-bit little-endian mono, no header at all; the rate travels
  beside it (the X-Sample-Rate header, ``StreamEncoder.sample_rate``).
* mp3 and opus: one libsndfile encoder writing into a socket that is drained
  after every slice of audio. libsndfile treats a socket like a pipe and never
  seeks back there: MP3 then goes without the Xing/LAME header that libsndfile
  otherwise writes as a placeholder and patches at close (bytes a stream has
  already sent). That MP3 is constant-bitrate, so readers that find no header
  still work out its length from its size; without the header it keeps the
  encoder's delay (about 1100 samples of silence at the start) and the padding
  of its last frame. Ogg pages are cut every 250 ms of audio instead of
  libsndfile's default second, so each sentence leaves as it is written.
* aac: ADTS frames from FFmpeg's AAC encoder (services.gateway.aac), sent as
  each frame is muxed; libsndfile writes no AAC.
* flac: buffered until ``close``. libsndfile seeks back at the end to complete
  STREAMINFO (length, MD5); without it libsndfile, and so our own clients, read
  the stream as endless.

Output is always mono (channels are averaged) and clipped to [-1, 1]. Opus
carries only 8, 12, 16, 24 and 48 kHz, MP3 only the MPEG rates and AAC its own
(the same, within 8-48 kHz), so audio for those is resampled to the nearest rate
at or above its own (``encoded_rate``).
"""

from __future__ import annotations

import io
import socket
import struct

import numpy as np
import soundfile
import soxr

from services.common import audio as common_audio
from services.common.audio import PcmAudio, to_mono
from services.common.errors import InvalidArgument
from services.gateway.aac import RATES as AAC_RATES
from services.gateway.aac import AdtsEncoder

FORMATS: tuple[str, ...] = ("wav", "pcm", "flac", "mp3", "opus", "aac")
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 48_000

_CONTENT_TYPES = {
    "wav": "audio/wav",
    # Raw s16le mono at the rate given in X-Sample-Rate (the requested rate).
    "pcm": "audio/pcm",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg; codecs=opus",
    "aac": "audio/aac",  # ADTS
}
_CARRIED_RATES = {
    "opus": (8_000, 12_000, 16_000, 24_000, 48_000),
    "mp3": (8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000),
    "aac": AAC_RATES,
}
_LIBSNDFILE = {"flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS")}
# CBR at about 112 kbps (32-48 kHz), 56 kbps (16-24 kHz), 24 kbps (8-12 kHz): ample for mono speech.
_MP3_OPTIONS = {"compression_level": 0.7, "bitrate_mode": "CONSTANT"}
_OGG_PAGE_MS = 250.0
_SFC_SET_OGG_PAGE_LATENCY = 0x1303  # sndfile.h; soundfile wraps no call for it
# Audio handed to a streamed encoder at once: its bytes (at most a few KB) must fit
# the socket's buffer, since nothing reads the other end while libsndfile writes.
_SLICE_SECONDS = 0.25
_RECV_BYTES = 65_536


def parse_format(name: str) -> str:
    """The canonical name of an audio format, given in any case."""
    fmt = name.strip().lower()
    if fmt not in FORMATS:
        raise InvalidArgument(
            f"audio format {name[:40]!r} is unknown: use one of {', '.join(FORMATS)}"
        )
    return fmt


def content_type(fmt: str) -> str:
    """The HTTP Content-Type of ``fmt`` (pcm: raw s16le mono at X-Sample-Rate)."""
    return _CONTENT_TYPES[parse_format(fmt)]


def check_sample_rate(rate: int) -> int:
    """A requested output rate: 0 (keep the audio's rate) or 8000..48000 Hz."""
    if rate != 0 and not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise InvalidArgument(
            f"sample_rate {rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz "
            "(0 keeps the voice's own rate)"
        )
    return rate


def resample(audio: PcmAudio, rate: int) -> PcmAudio:
    """``audio`` at ``rate`` (soxr, high quality); rate 0 or its own returns it unchanged."""
    if rate in (0, audio.sample_rate):
        return audio
    return common_audio.resample(audio, rate)


def encoded_rate(fmt: str, rate: int) -> int:
    """The rate ``fmt`` carries audio at ``rate`` in: the nearest supported one at or above."""
    carried = _CARRIED_RATES.get(parse_format(fmt))
    if carried is None:
        return rate
    return next((option for option in carried if option >= rate), carried[-1])


def encode(audio: PcmAudio, fmt: str) -> bytes:
    """``audio`` as one whole mono file in ``fmt``, resampled if the container needs it."""
    fmt = parse_format(fmt)
    mono = to_mono(audio)
    mono = resample(mono, encoded_rate(fmt, mono.sample_rate))
    if fmt == "wav":
        return wav_bytes(mono)
    if fmt == "pcm":
        return pcm16(mono)
    if fmt == "aac":
        return AdtsEncoder(mono.sample_rate).close(_clipped(mono.samples))
    buffer = io.BytesIO()
    with _sound_file(buffer, fmt, mono.sample_rate) as out:
        out.write(_clipped(mono.samples))
    return buffer.getvalue()


def wav_bytes(audio: PcmAudio) -> bytes:
    """A mono 16-bit PCM WAV file, as the old server answered."""
    pcm = pcm16(audio)
    return wav_header(audio.sample_rate, len(pcm)) + pcm


def pcm16(audio: PcmAudio) -> bytes:
    """Mono signed 16-bit little-endian samples, clipped to full scale."""
    return _s16le(to_mono(audio).samples)


def wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """A mono PCM16 WAV header; ``None`` for a stream of unknown length (sizes set to max)."""
    data = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    return (
        b"RIFF" + struct.pack("<I", riff) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data" + struct.pack("<I", data)
    )


class StreamEncoder:
    """One file in ``fmt`` written piece by piece; see the module notes on what streams.

    ``sample_rate`` is the rate of the audio to come; the bytes carry
    ``self.sample_rate`` (``encoded_rate``), and pieces at any other rate are
    resampled to it seamlessly.
    """

    def __init__(self, fmt: str, sample_rate: int) -> None:
        self.format = parse_format(fmt)
        common_audio.check_sample_rate(sample_rate)
        self.content_type = _CONTENT_TYPES[self.format]
        self.sample_rate = encoded_rate(self.format, sample_rate)
        self._resampler = _Resampler(self.sample_rate)
        self._sink = _sink(self.format, self.sample_rate)

    def write(self, audio: PcmAudio) -> bytes:
        """The bytes that can be sent now (maybe none while the codec holds them)."""
        return self._sink.write(self._resampler.push(audio))

    def close(self) -> bytes:
        """The remaining bytes, which complete the file."""
        return self._sink.close(self._resampler.flush())


class _Resampler:
    """Pieces at any rate as one mono float32 stream at ``rate``, clipped to [-1, 1].

    A run of pieces at one foreign rate goes through one soxr stream, so piece
    boundaries stay seamless; its tail comes out when the rate changes or at flush.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._source_rate = rate
        self._stream: soxr.ResampleStream | None = None

    def push(self, audio: PcmAudio) -> np.ndarray:
        parts = []
        if audio.sample_rate != self._source_rate:
            parts.append(self.flush())
            if audio.sample_rate != self.rate:
                self._source_rate = audio.sample_rate
                self._stream = soxr.ResampleStream(
                    audio.sample_rate, self.rate, 1, dtype="float32", quality="HQ"
                )
        samples = np.ascontiguousarray(to_mono(audio).samples, dtype=np.float32)
        parts.append(samples if self._stream is None else self._stream.resample_chunk(samples))
        return _clipped(np.concatenate(parts))

    def flush(self) -> np.ndarray:
        """What the resampler still holds of the pieces pushed so far."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        tail = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self._stream, self._source_rate = None, self.rate
        return _clipped(tail)


class _PcmSink:
    """wav and pcm: PCM16 as it comes, after ``header`` (an open-ended WAV header, or none)."""

    def __init__(self, header: bytes) -> None:
        self._header = header

    def write(self, samples: np.ndarray) -> bytes:
        data, self._header = self._header + _s16le(samples), b""
        return data

    def close(self, samples: np.ndarray) -> bytes:
        return self.write(samples)


class _BufferedSink:
    """flac: libsndfile completes the header only at close, so everything waits until then."""

    def __init__(self, fmt: str, rate: int) -> None:
        self._buffer = io.BytesIO()
        self._file = _sound_file(self._buffer, fmt, rate)

    def write(self, samples: np.ndarray) -> bytes:
        self._file.write(samples)
        return b""

    def close(self, samples: np.ndarray) -> bytes:
        self._file.write(samples)
        self._file.close()
        return self._buffer.getvalue()


class _SocketSink:
    """mp3 and opus: libsndfile writes into one end of a socket pair, we drain the other.

    A socket rather than a pipe: its buffer (~200 KB) is larger and is not cut to
    one page when the process holds many pipes. Both ends are non-blocking: a
    burst that does not fit makes libsndfile's write fail loudly instead of
    hanging the request.
    """

    def __init__(self, fmt: str, rate: int) -> None:
        self._ours, theirs = socket.socketpair()
        self._ours.setblocking(False)
        theirs.setblocking(False)
        self._slice = max(1, int(rate * _SLICE_SECONDS))
        # libsndfile owns (and closes) its end from here on.
        self._file = _sound_file(theirs.detach(), fmt, rate)
        if fmt == "opus":
            _set_ogg_page_latency(self._file, _OGG_PAGE_MS)

    def write(self, samples: np.ndarray) -> bytes:
        chunks = []
        for start in range(0, len(samples), self._slice):
            self._file.write(samples[start : start + self._slice])
            chunks.append(self._drain())
        return b"".join(chunks)

    def close(self, samples: np.ndarray) -> bytes:
        data = self.write(samples)
        self._file.close()
        data += self._drain()
        self._ours.close()
        return data

    def _drain(self) -> bytes:
        chunks = []
        while True:
            try:
                chunk = self._ours.recv(_RECV_BYTES)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def _sink(fmt: str, rate: int) -> _PcmSink | _BufferedSink | _SocketSink | AdtsEncoder:
    if fmt == "wav":
        return _PcmSink(wav_header(rate, None))
    if fmt == "pcm":
        return _PcmSink(b"")
    if fmt == "flac":
        return _BufferedSink(fmt, rate)
    if fmt == "aac":
        return AdtsEncoder(rate)
    return _SocketSink(fmt, rate)


def _sound_file(file: io.BytesIO | int, fmt: str, rate: int) -> soundfile.SoundFile:
    """A mono libsndfile encoder for ``fmt`` writing to a buffer or a file descriptor."""
    major, subtype = _LIBSNDFILE[fmt]
    options = _MP3_OPTIONS if fmt == "mp3" else {}
    return soundfile.SoundFile(
        file, "w", samplerate=rate, channels=1, subtype=subtype, format=major, **options
    )


def _set_ogg_page_latency(sound_file: soundfile.SoundFile, milliseconds: float) -> None:
    """Cut an Ogg page after ``milliseconds`` of audio.

    soundfile has no call for this command, so it goes through soundfile's own
    (private) libsndfile handle; the streaming test notices if that ever breaks.
    """
    value = soundfile._ffi.new("double[1]", [milliseconds])
    soundfile._snd.sf_command(
        sound_file._file, _SFC_SET_OGG_PAGE_LATENCY, value, soundfile._ffi.sizeof(value)
    )


def _clipped(samples: np.ndarray) -> np.ndarray:
    return np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)


def _s16le(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
