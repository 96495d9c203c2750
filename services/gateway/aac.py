"""AAC in ADTS frames (``audio/aac``, what OpenAI's speech API returns), encoded by FFmpeg.

PyAV's wheels bundle FFmpeg, whose native AAC-LC encoder and ADTS muxer do the
work. ADTS is a bare run of frames, each with its own header: nothing to patch
at the end, so bytes can leave as soon as the muxer writes them, and any prefix
that ends on a frame is a playable file. What ADTS cannot say is the encoder's
delay: decoders play 1024 samples of priming (and the last frame's padding) as
silence, as with every AAC stream.
"""

from __future__ import annotations

import av
import numpy as np

# AAC-LC's sampling frequencies (ISO 14496-3) within the edge's 8-48 kHz.
RATES = (8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)
# About two bits a sample, at most 64 kbps: 48 kbps at 24 kHz, ample for mono speech.
_MAX_BIT_RATE = 64_000


class _Collector:
    """The write-only file the muxer writes into; ``take`` hands over what it wrote."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self._chunks = b"".join(self._chunks), []
        return data


class AdtsEncoder:
    """Mono float32 samples in, ADTS bytes out as soon as whole frames are ready."""

    def __init__(self, rate: int) -> None:
        self._rate = rate
        self._out = _Collector()
        # flush_packets: every frame goes to _out as it is muxed, not when an I/O
        # buffer (32 KB, seconds of speech) happens to fill.
        self._container = av.open(self._out, "w", format="adts", options={"flush_packets": "1"})
        self._stream = self._container.add_stream("aac", rate=rate, layout="mono")
        self._stream.bit_rate = min(_MAX_BIT_RATE, 2 * rate)
        self._closed = False

    def write(self, samples: np.ndarray) -> bytes:
        """The frames ``samples`` completed (the encoder holds back the rest of a frame)."""
        if len(samples):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples, dtype=np.float32)[np.newaxis, :],
                format="fltp", layout="mono",
            )
            frame.sample_rate = self._rate
            self._mux(self._stream.encode(frame))
        return self._out.take()

    def close(self, samples: np.ndarray) -> bytes:
        """``samples``, then everything the encoder still holds; the file is complete."""
        if self._closed:
            return b""
        data = self.write(samples)
        self._closed = True
        self._mux(self._stream.encode(None))
        self._container.close()
        return data + self._out.take()

    def _mux(self, packets) -> None:
        for packet in packets:
            self._container.mux(packet)
