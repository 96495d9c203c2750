"""bench.models.full_size lays its models out as a models/ folder the stack serves.

The real writers produce GBs; here they are replaced by ones that write the
marker files the stack's model resolution looks for, so what is tested is the
layout, the reuse of current copies, and that the stack resolves it."""

import json

import pytest

from bench import models as bench_models
from localstack.prepare import models as stack_models
from services.rvc import tiny_models as rvc_models
from spark_tts import tiny_models as spark_models


@pytest.fixture
def writers(monkeypatch):
    calls = []

    def spark(root, seed=0, size="tiny"):
        calls.append(("spark", size))
        root.mkdir(parents=True)
        (root / "config.yaml").write_text("sample_rate: 16000\n")
        (root / "marker").write_text(size)

    def rvc(root, seed=0, size="tiny"):
        calls.append(("rvc", size))
        (root / "voices" / "untrained-v2-f0-48k").mkdir(parents=True)
        (root / "voices" / "untrained-v2-f0-48k" / "untrained-v2-f0-48k.pth").write_bytes(b"x")
        (root / "assets" / "hubert_base").mkdir(parents=True)
        (root / "assets" / "hubert_base" / "config.json").write_text("{}")
        (root / "marker").write_text(size)

    def current(root, seed=0, size="tiny"):
        marker = root / "marker"
        return marker.is_file() and marker.read_text() == size

    monkeypatch.setattr(spark_models, "write_tiny_model", spark)
    monkeypatch.setattr(spark_models, "is_current", current)
    monkeypatch.setattr(rvc_models, "write_tiny_models", rvc)
    monkeypatch.setattr(rvc_models, "is_current", current)
    return calls


def test_full_size_is_a_models_folder_the_stack_serves(tmp_path, writers):
    dirs = bench_models.full_size(tmp_path / "cache")
    assert writers == [("spark", "full"), ("rvc", "full")]
    run_dir = tmp_path / "run"
    assert stack_models.spark_model_dir(dirs.models_dir, run_dir, {}) == dirs.spark.resolve()
    voices, assets = stack_models.rvc_model_dirs(dirs.models_dir, run_dir, {})
    assert voices == dirs.rvc_voices.resolve() and assets == dirs.rvc_assets.resolve()
    profiles, generated = stack_models.voices_dir(dirs.models_dir, run_dir, generated_rvc=False)
    assert not generated  # the bench folder's own profiles
    demo = json.loads((profiles / "demo.json").read_text())
    assert demo["rvc_model"] == stack_models.DEMO_RVC_MODEL
    assert (profiles / demo["reference_audio"]).is_file()
    assert not run_dir.exists()  # nothing was generated for the stack instead


def test_a_current_copy_is_kept_and_a_foreign_folder_is_not_overwritten(tmp_path, writers):
    bench_models.full_size(tmp_path)
    bench_models.full_size(tmp_path)
    assert len(writers) == 2  # the second call found both current
    (tmp_path / "rvc").unlink()
    (tmp_path / "rvc").mkdir()
    with pytest.raises(FileExistsError, match="not a link"):
        bench_models.full_size(tmp_path)
