"""The in-process baseline on generated tiny models: every scenario, timings, determinism."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from bench.baseline import SCENARIOS, capacity, run_baseline
from bench.baseline_inputs import tiny_inputs
from bench.baseline_models import load_models, speak

THREE_SENTENCES = "The first one is here. Then a second one follows. And the third ends it."


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    # Few tokens per sentence keep the tiny LLM quick; the code path is the served one.
    return tiny_inputs(
        tmp_path_factory.mktemp("baseline-models"), (THREE_SENTENCES,),
        max_tokens=30, warmup=False,
    )


def run(scenario, concurrency, requests, inputs):
    return asyncio.run(run_baseline(scenario, concurrency, requests, inputs))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_scenario_returns_ok_samples(scenario, inputs):
    samples = run(scenario, 2, 2, inputs)
    assert len(samples) == 2
    for sample in samples:
        assert sample.ok, sample.code
        assert sample.code == "OK"
        assert sample.audio_seconds > 0
        assert 0 < sample.first_audio_seconds <= sample.total_seconds
        assert sample.started > 0
    assert capacity(samples) > 0


def test_pipeline_stream_hears_the_first_sentence_before_the_end(inputs):
    (sample,) = run("pipeline_stream", 1, 1, inputs)
    assert sample.first_audio_seconds < sample.total_seconds


def test_unstreamed_scenarios_report_first_audio_at_the_end(inputs):
    for scenario in ("rvc", "pipeline"):
        (sample,) = run(scenario, 1, 1, inputs)
        assert sample.first_audio_seconds == sample.total_seconds


def test_same_seed_gives_the_same_audio(inputs):
    first = run("tts", 1, 2, inputs)
    again = run("tts", 2, 2, inputs)
    assert {s.audio_seconds for s in first} == {s.audio_seconds for s in again}
    assert len({s.audio_seconds for s in first}) == 1

    models = load_models(inputs)
    speaker = models.tokenizer.tokenize(inputs.reference.samples)

    def audio(seed):
        return np.concatenate(list(speak(models, "Seeded.", speaker, dataclasses.replace(inputs, seed=seed))))

    np.testing.assert_array_equal(audio(7), audio(7))
    other = audio(8)
    same = audio(7)
    assert other.shape != same.shape or not np.array_equal(other, same)


def test_zero_requests_give_no_samples(inputs):
    assert run("tts", 2, 0, inputs) == []


def test_unknown_scenario_is_refused(inputs):
    with pytest.raises(ValueError, match="unknown scenario"):
        run("karaoke", 1, 1, inputs)


def test_bad_concurrency_is_refused(inputs):
    with pytest.raises(ValueError, match="concurrency"):
        run("tts", 0, 1, inputs)


def test_a_failing_request_is_a_failed_sample(inputs):
    missing = dataclasses.replace(inputs, rvc_voice="no-such-voice")
    samples = run("rvc", 1, 2, dataclasses.replace(missing, warmup=False))
    assert [(s.ok, s.code, s.audio_seconds) for s in samples] == [(False, "INTERNAL", 0.0)] * 2
