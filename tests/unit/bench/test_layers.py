"""bench.layers.breakdown: what each layer adds over the next one inward."""

import pytest

from bench import stats
from bench.layers import LAYERS, breakdown
from bench.samples import Sample


def row(operation, layer, seconds, audio=2.0, failures=0):
    samples = [Sample(True, "OK", seconds / 2, seconds, audio, float(i)) for i in range(3)]
    samples += [Sample(False, "UNAVAILABLE", 0.1, 0.1, 0.0, 9.0)] * failures
    summary = stats.summarize(operation, 1, samples, 10.0)
    return {**summary, "operation": operation, "layer": layer}


def baseline(scenario, seconds, concurrency=1):
    samples = [Sample(True, "OK", seconds / 2, seconds, 2.0, float(i)) for i in range(3)]
    return stats.summarize(scenario, concurrency, samples, 10.0)


def test_each_layer_adds_its_difference_to_the_next_inward():
    measured = [row("tts", "edge", 1.5), row("tts", "gateway", 1.4),
                row("tts", "tts_service", 1.3, failures=1), row("tts", "triton", 1.25)]
    out = breakdown(measured, [baseline("tts", 1.0), baseline("tts", 0.5, concurrency=4)])
    assert [r["layer"] for r in out] == list(LAYERS["tts"])
    adds = {r["layer"]: r["adds"] for r in out}
    assert adds["edge"] == pytest.approx(0.1) and adds["gateway"] == pytest.approx(0.1)
    assert adds["tts_service"] == pytest.approx(0.05)
    assert adds["triton"] == pytest.approx(0.25)  # over the baseline at concurrency 1
    assert adds["in_process"] is None
    assert {r["layer"]: r["errors"] for r in out}["tts_service"] == 1
    assert out[0]["ratio"] == pytest.approx(1.5 / 1.4)


def test_streams_compare_first_audio_and_a_missing_baseline_leaves_no_addition():
    measured = [row("pipeline_stream", "edge", 4.0), row("pipeline_stream", "gateway", 3.0)]
    out = breakdown(measured, [])
    assert [(r["layer"], r["metric"]) for r in out] == [("edge", "ttfa"), ("gateway", "ttfa")]
    assert out[0]["adds"] == pytest.approx(0.5)  # first audio: half of each total here
    assert out[1]["adds"] is None and out[1]["p50"] == pytest.approx(1.5)


def test_the_http_baseline_row_is_not_taken_for_an_operation():
    out = breakdown([row("pipeline_stream", "gateway", 3.0)], [baseline("http_stream", 1.0)])
    assert out[0]["adds"] is None


class _Triton:
    """A stand-in for the TTS service's Triton client: records what it is asked."""

    def __init__(self):
        self.calls = []

    async def stream(self, model, tensors, outputs, timeout=None):
        import numpy as np

        self.calls.append((model, sorted(tensors), outputs))
        yield {"waveform": np.zeros(16000, np.float32), "sample_rate": np.array([16000])}


async def test_the_triton_layer_asks_spark_tts_for_its_outputs():
    from types import SimpleNamespace

    import numpy as np

    from bench.layers import _triton
    from services.common.audio import PcmAudio

    inputs = SimpleNamespace(short="Hello there.", reference_transcript="A clip.", seed=7,
                             reference=PcmAudio(np.zeros(16000, np.float32), 16000),
                             max_tokens=None)
    client = _Triton()
    sample = await _triton(client, inputs)
    assert sample.ok and sample.audio_seconds == 1.0
    model, tensors, outputs = client.calls[0]
    assert model == "spark_tts" and "reference_wav" in tensors
    assert outputs == ["waveform", "sample_rate", "speaker_id", "semantic_tokens", "final",
                       "speaker_global_ids", "speaker_semantic_ids", "speaker_codec"]
