"""Chunked vocoding joins into the offline waveform except right at the joins."""

import numpy as np
import pytest

from spark_tts.layout import SAMPLES_PER_TOKEN
from spark_tts.streaming import ChunkPlan, StreamJoiner

KERNEL = np.hanning(161).astype(np.float32)
KERNEL /= KERNEL.sum()


def fake_vocode(tokens):
    """Like a non-causal conv decoder: each output sample sees ±80 samples."""
    steps = np.repeat(np.asarray(tokens, np.float32) / 100.0, SAMPLES_PER_TOKEN)
    return np.convolve(steps, KERNEL, mode="same").astype(np.float32)


def run(tokens, plan):
    joiner = StreamJoiner(fake_vocode, plan)
    chunks = [c for c in (joiner.add(t) for t in tokens) if c is not None]
    chunks.append(joiner.finish())
    return chunks


@pytest.mark.parametrize("count", [1, 9, 10, 11, 57, 300])
def test_joined_stream_has_the_offline_length(count):
    tokens = list(np.random.default_rng(count).integers(0, 100, count))
    chunks = run(tokens, ChunkPlan())
    assert sum(len(c) for c in chunks) == count * SAMPLES_PER_TOKEN


def test_first_chunk_is_small_and_later_ones_grow():
    tokens = list(range(400))
    plan = ChunkPlan(first=10, growth=2.0, largest=80, lookahead=3)
    sizes = [len(c) for c in run(tokens, plan)][:-1]
    assert sizes[0] == 10 * SAMPLES_PER_TOKEN - plan.crossfade
    assert sizes[1] == 20 * SAMPLES_PER_TOKEN
    assert sizes[2] == 40 * SAMPLES_PER_TOKEN
    assert sizes[3] == sizes[4] == 80 * SAMPLES_PER_TOKEN


def test_joined_stream_equals_offline_away_from_the_joins():
    tokens = list(np.random.default_rng(0).integers(0, 100, 250))
    plan = ChunkPlan(first=10, growth=2.0, largest=60, context=4, lookahead=2, crossfade=320)
    joined = np.concatenate(run(tokens, plan))
    offline = fake_vocode(tokens)
    # Token counts at which chunks were cut.
    cuts, total, size = [], 0, plan.sizes()
    while True:
        total += next(size)
        if total + plan.lookahead > len(tokens):
            break
        cuts.append(total * SAMPLES_PER_TOKEN)
    near = np.zeros(len(offline), bool)
    for cut in cuts:
        near[max(0, cut - plan.crossfade - 80): cut + 80] = True
    assert np.max(np.abs(joined[~near] - offline[~near])) < 1e-5
    # Near the joins the blend stays between the two renderings, with no clicks.
    assert np.max(np.abs(np.diff(joined))) <= np.max(np.abs(np.diff(offline))) + 1e-3


def test_crossfade_must_fit_in_the_context():
    with pytest.raises(ValueError):
        ChunkPlan(context=1, crossfade=640)


@pytest.fixture(scope="module")
def bicodec_vocoder(tmp_path_factory):
    from spark_tts.tiny_models import write_bicodec
    from spark_tts.vocoder import Vocoder

    root = tmp_path_factory.mktemp("tiny")
    write_bicodec(root, seed=0)
    vocoder = Vocoder(root)
    voice = list(range(32))
    return lambda tokens: vocoder(voice, tokens)


def test_with_full_receptive_field_bicodec_joins_are_exact(bicodec_vocoder):
    tokens = list(np.random.default_rng(1).integers(0, 8192, 125))
    offline = bicodec_vocoder(tokens)
    joiner = StreamJoiner(bicodec_vocoder, ChunkPlan(context=20, lookahead=20))
    chunks = [c for c in (joiner.add(t) for t in tokens) if c is not None]
    chunks.append(joiner.finish())
    assert len(chunks) >= 3
    np.testing.assert_allclose(np.concatenate(chunks), offline, atol=1e-6)


def test_default_plan_stays_within_the_documented_error(bicodec_vocoder):
    tokens = list(np.random.default_rng(2).integers(0, 8192, 125))
    offline = bicodec_vocoder(tokens)
    joiner = StreamJoiner(bicodec_vocoder, ChunkPlan())
    chunks = [c for c in (joiner.add(t) for t in tokens) if c is not None]
    joined = np.concatenate([*chunks, joiner.finish()])
    assert joined.shape == offline.shape
    error = joined - offline
    assert np.sqrt(np.mean(error**2)) <= 0.005 * np.sqrt(np.mean(offline**2))
    assert np.max(np.abs(error)) <= 0.02 * np.max(np.abs(offline))
