"""Chunked conversion without seams: blocks with left context, joined SOLA-style.

Input arrives in whatever pieces the caller sends; it is cut into fixed blocks
of 16 kHz audio. Each block is converted together with the audio just before
it, so the model sees context; the converted context is thrown away except for
a short stretch used to cross-fade into the previous block's held-back tail at
the offset (within a few ms) where the two match best. The offsets are kept
from drifting, so the stream is as long as its input.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import numpy as np

from services.rvc.framing import RATE, WINDOW
from services.rvc.settings import StreamSettings

# Converts 16 kHz audio; returns the converted samples and their rate.
BlockConvert = Callable[[np.ndarray], Awaitable[tuple[np.ndarray, int]]]


def _samples(ms: int) -> int:
    """Milliseconds of 16 kHz audio, rounded to whole 10 ms frames."""
    return ms * RATE // 1000 // WINDOW * WINDOW


def best_offset(tail: np.ndarray, region: np.ndarray, offsets: range) -> int:
    """The offset into ``region`` where it best continues ``tail`` (normalised correlation)."""
    best, best_score = offsets.start, -np.inf
    width = tail.shape[0]
    for offset in offsets:
        candidate = region[offset : offset + width]
        score = float(np.dot(candidate, tail)) / (float(np.linalg.norm(candidate)) + 1e-8)
        if score > best_score:
            best, best_score = offset, score
    return best


class StreamConverter:
    """Feed 16 kHz audio with ``push``; end with ``finish``. Both return audio ready to send."""

    def __init__(self, settings: StreamSettings, convert: BlockConvert) -> None:
        self._convert = convert
        self._block = max(_samples(settings.block_ms), WINDOW)
        self._context = _samples(settings.context_ms)
        self._crossfade_ms = settings.crossfade_ms
        self._search_ms = settings.search_ms
        self._pending = np.zeros(0, np.float32)
        self._history = np.zeros(0, np.float32)
        self._tail: np.ndarray | None = None
        self._drift = 0
        self.rate: int | None = None
        self.blocks = 0

    async def push(self, audio: np.ndarray) -> list[np.ndarray]:
        self._pending = np.concatenate([self._pending, audio.astype(np.float32, copy=False)])
        ready = []
        while self._pending.shape[0] >= self._block:
            block, self._pending = self._pending[: self._block], self._pending[self._block :]
            ready.append(await self._convert_block(block, final=False))
        return [piece for piece in ready if piece.size]

    async def finish(self) -> list[np.ndarray]:
        ready = []
        if self._pending.size:
            block, self._pending = self._pending, np.zeros(0, np.float32)
            ready.append(await self._convert_block(block, final=True))
        elif self._tail is not None:
            ready.append(self._tail)
        self._tail = None
        return [piece for piece in ready if piece.size]

    async def _convert_block(self, block: np.ndarray, final: bool) -> np.ndarray:
        context = self._history[self._history.shape[0] - min(self._context, self._history.shape[0]) :]
        out, rate = await self._convert(np.concatenate([context, block]))
        if self.rate is None:
            self.rate = rate
        self._history = np.concatenate([self._history, block])[-max(self._context, 1) :]
        self.blocks += 1
        context_out = round(context.shape[0] * rate / RATE)
        crossfade = self._crossfade_ms * rate // 1000
        tail, self._tail = self._tail, None
        if tail is None:
            joined = out[context_out:]
        else:
            joined = self._join(tail, out, context_out)
        if final or crossfade == 0:
            return joined
        keep = max(joined.shape[0] - crossfade, 0)
        self._tail = joined[keep:].copy()
        return joined[:keep]

    def _join(self, tail: np.ndarray, out: np.ndarray, context_out: int) -> np.ndarray:
        """Cross-fade ``tail`` into ``out`` where the tail's time begins, give or take the search."""
        width = tail.shape[0]
        start = context_out - width  # where the tail's first sample sits in ``out``
        search = self._search_ms * (self.rate or RATE) // 1000
        # Offsets may move the join, but never let the stream drift more than one search width.
        low = max(-search, -search - self._drift, -start)
        high = min(search, search - self._drift, out.shape[0] - start - width)
        if start < 0 or high < low:
            # Too little converted audio around the join to cross-fade: butt-join instead.
            return np.concatenate([tail, out[context_out:]])
        offset = best_offset(tail, out[start + low :], range(0, high - low + 1)) + low
        self._drift += offset
        begin = start + offset
        fade_in = np.sin(0.5 * np.pi * np.linspace(0.0, 1.0, width, dtype=np.float32)) ** 2
        head = out[begin : begin + width] * fade_in + tail * (1.0 - fade_in)
        return np.concatenate([head, out[begin + width :]]).astype(np.float32, copy=False)
