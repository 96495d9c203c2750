"""Rendering the Triton model repository with instance counts and device."""

from pathlib import Path

import pytest

from localstack.prepare.model_repo import parse_instances, render

SOURCE = Path(__file__).resolve().parents[3] / "triton" / "model_repo"


def test_defaults_keep_one_cpu_instance_per_model(tmp_path):
    out = render(SOURCE, tmp_path / "repo", {}, gpu=False)
    configs = sorted(p.parent.name for p in out.glob("*/config.pbtxt"))
    assert configs == ["audio_tokenizer", "llm", "piper", "spark_tts", "vocoder"]
    for config in out.glob("*/config.pbtxt"):
        assert "instance_group [ { kind: KIND_CPU count: 1 } ]" in config.read_text()
    assert (out / "llm" / "1" / "model.py").read_text() == (
        SOURCE / "llm" / "1" / "model.py"
    ).read_text()


def test_counts_and_gpu_placement_are_rendered(tmp_path):
    out = render(SOURCE, tmp_path / "repo", parse_instances("llm=3, vocoder=2"), gpu=True)
    assert "kind: KIND_GPU count: 3" in (out / "llm" / "config.pbtxt").read_text()
    assert "kind: KIND_GPU count: 2" in (out / "vocoder" / "config.pbtxt").read_text()
    assert "kind: KIND_GPU count: 1" in (out / "spark_tts" / "config.pbtxt").read_text()
    # The source stays as it was.
    assert "KIND_GPU" not in (SOURCE / "llm" / "config.pbtxt").read_text()


def test_rendering_again_replaces_the_previous_copy(tmp_path):
    render(SOURCE, tmp_path / "repo", {"llm": 2}, gpu=False)
    out = render(SOURCE, tmp_path / "repo", {}, gpu=False)
    assert "count: 1" in (out / "llm" / "config.pbtxt").read_text()


@pytest.mark.parametrize("spec", ["llm", "llm=0", "llm=x", "=2"])
def test_bad_instance_specs_are_rejected(spec):
    with pytest.raises(ValueError, match="NAME=N"):
        parse_instances(spec)


def test_unknown_model_names_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="no model named"):
        render(SOURCE, tmp_path / "repo", {"gpt": 1}, gpu=False)


def test_spark_tts_concurrency_is_the_same_on_the_cpu_and_a_gpu(tmp_path):
    # vLLM batches every stream continuously: no static cap of 2 (CPU) / 8 (GPU) remains.
    key = 'key: "spark_tts_max_concurrency" value: { string_value: "%s" }'
    for gpu in (False, True):
        out = render(SOURCE, tmp_path / str(gpu), {}, gpu=gpu)
        assert key % 64 in (out / "spark_tts" / "config.pbtxt").read_text()
