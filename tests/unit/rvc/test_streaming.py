"""Block-wise stream conversion: lengths, context, and joins without seams."""

import numpy as np
import pytest
import soxr

from services.rvc.framing import RATE
from services.rvc.settings import StreamSettings
from services.rvc.streaming import StreamConverter, best_offset

OUT_RATE = 40_000


def tone(seconds: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * hz * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t))).astype(
        np.float32
    )


class Recorder:
    """A stand-in conversion: resamples to 40 kHz and remembers what it was given."""

    def __init__(self, jitter: int = 0) -> None:
        self.inputs: list[int] = []
        self.jitter = jitter

    async def __call__(self, audio: np.ndarray) -> tuple[np.ndarray, int]:
        self.inputs.append(audio.shape[0])
        out = soxr.resample(audio, RATE, OUT_RATE).astype(np.float32)
        if self.jitter:
            # Shift the whole conversion by a few samples, like a model with a different phase.
            out = np.concatenate([np.zeros(self.jitter, np.float32), out[: -self.jitter]])
        return out, OUT_RATE


async def stream(audio: np.ndarray, pieces: list[int], settings: StreamSettings, convert):
    converter = StreamConverter(settings, convert)
    out, start = [], 0
    for size in pieces:
        out += await converter.push(audio[start : start + size])
        start += size
    out += await converter.push(audio[start:])
    out += await converter.finish()
    return np.concatenate(out), converter


@pytest.mark.parametrize("pieces", [[1234] * 40, [16_000] * 3, [300, 50_000, 7]])
async def test_streamed_audio_is_as_long_as_its_input_and_matches_the_whole(pieces):
    audio = tone(3.3)
    settings = StreamSettings(block_ms=500, context_ms=300, crossfade_ms=20, search_ms=5)
    streamed, converter = await stream(audio, pieces, settings, Recorder())
    whole = soxr.resample(audio, RATE, OUT_RATE)
    search = settings.search_ms * OUT_RATE // 1000
    assert abs(streamed.shape[0] - whole.shape[0]) <= search
    n = min(streamed.shape[0], whole.shape[0])
    # Away from the very ends the join is exact for a deterministic conversion.
    error = np.abs(streamed[2000 : n - 2000] - whole[2000 : n - 2000])
    assert error.max() < 0.02
    assert converter.blocks == int(np.ceil(audio.shape[0] / (500 * 16)))


async def test_each_block_is_converted_with_its_left_context():
    recorder = Recorder()
    settings = StreamSettings(block_ms=500, context_ms=300, crossfade_ms=20, search_ms=5)
    await stream(tone(2.0), [32_000], settings, recorder)
    block, context = 8000, 4800
    assert recorder.inputs == [block, block + context, block + context, block + context]


async def test_a_shifted_conversion_is_joined_where_it_matches_without_a_click():
    audio = tone(2.0)
    settings = StreamSettings(block_ms=400, context_ms=400, crossfade_ms=30, search_ms=10)
    calls = 0

    async def shifting(x):
        nonlocal calls
        calls += 1
        # Every other block comes back 37 samples late: a butt join would click.
        return await Recorder(jitter=37 if calls % 2 == 0 else 0)(x)

    streamed, _ = await stream(audio, [6400] * 5, settings, shifting)
    steps = np.abs(np.diff(streamed))
    # The largest sample-to-sample step stays that of the tone itself (no discontinuity).
    whole_steps = np.abs(np.diff(soxr.resample(audio, RATE, OUT_RATE)))
    assert steps.max() < 1.2 * whole_steps.max()


def test_best_offset_finds_where_a_signal_continues():
    rng = np.random.default_rng(1)
    region = rng.standard_normal(500).astype(np.float32)
    assert best_offset(region[123:223], region, range(0, 300)) == 123


async def test_a_stream_shorter_than_a_frame_still_converts():
    settings = StreamSettings(block_ms=500, context_ms=300, crossfade_ms=20, search_ms=5)
    streamed, _ = await stream(tone(0.005), [], settings, Recorder())
    assert abs(streamed.shape[0] - 0.005 * OUT_RATE) <= 2
