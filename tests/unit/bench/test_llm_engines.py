"""The LLM measurements and the vLLM-vs-transformers-loop comparison: bench.llm's
summaries and metric parsing, bench.targets' comparison and targets, bench.report's
tables, the runner's options and merging, and the model repository that serves the
old loop."""

import json
from pathlib import Path

import pytest

from bench import stats
from bench.__main__ import merge_engine, parse_args, primary_engine
from bench.legacy_llm.repo import legacy_model_repo
from bench.llm import LlmSample, metric_total, prefix_hit_rate, summarize
from bench.report import markdown, write_report
from bench.samples import Sample
from bench.targets import engine_comparison, evaluate_targets

REPO = Path(__file__).resolve().parents[3]
MODEL_REPO = REPO / "triton" / "model_repo"
LEGACY = REPO / "bench" / "legacy_llm"


# -- bench.llm ------------------------------------------------------------------


def test_llm_summary_counts_successful_tokens_over_the_wall_time():
    samples = [LlmSample(True, "OK", 0.1 * (i + 1), 2.0, 100, float(i)) for i in range(3)]
    samples.append(LlmSample(False, "NO_TOKENS", 0.0, 1.0, 0, 3.0))
    row = summarize("vllm", 4, samples, wall_seconds=5.0, max_tokens=100)
    assert (row["requests"], row["ok"], row["tokens"]) == (4, 3, 300)
    assert row["tokens_per_second"] == pytest.approx(60.0)
    assert row["ttft"]["p50"] == pytest.approx(0.2)
    assert row["errors"] == {"NO_TOKENS": 1} and row["engine"] == "vllm"
    failed = summarize("vllm", 1, samples[-1:], wall_seconds=1.0, max_tokens=100)
    assert failed["tokens_per_second"] is None and failed["ttft"]["p50"] is None


METRICS = """\
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="spark-llm"} 320.0
vllm:prefix_cache_hits_total{engine="1",model_name="spark-llm"} 64.0
vllm:prefix_cache_hits_created{engine="0",model_name="spark-llm"} 1.7e+09
vllm:prefix_cache_queries_total{engine="0",model_name="spark-llm"} 512.0
vllm:prefix_cache_queries_totally_else 7
plain_metric 3.5 1700000000
"""


def test_metric_total_sums_every_label_set_of_exactly_that_name():
    assert metric_total(METRICS, "vllm:prefix_cache_hits_total") == 384.0
    assert metric_total(METRICS, "vllm:prefix_cache_queries_total") == 512.0
    assert metric_total(METRICS, "plain_metric") == 3.5  # a timestamp after the value
    assert metric_total(METRICS, "vllm:num_requests_running") is None


def test_prefix_hit_rate_is_the_share_of_the_load_not_of_all_time():
    rate = prefix_hit_rate({"hits": 100.0, "queries": 400.0}, {"hits": 400.0, "queries": 800.0})
    assert rate["hits"] == 300.0 and rate["queries"] == 400.0
    assert rate["rate"] == pytest.approx(0.75)
    idle = prefix_hit_rate({"hits": 1.0, "queries": 2.0}, {"hits": 1.0, "queries": 2.0})
    assert idle["rate"] is None and "no prompt tokens" in idle["note"]
    assert prefix_hit_rate(None, {"hits": 1.0, "queries": 2.0})["rate"] is None


# -- bench.targets and bench.report: the engines compared ------------------------


def llm_row(engine, c, tokens_per_second, ttft=0.1):
    samples = [LlmSample(True, "OK", ttft, 1.0, 100, float(i)) for i in range(c)]
    return summarize(engine, c, samples, wall_seconds=100 * c / tokens_per_second,
                     max_tokens=100)


def stream_row(engine, c, ttfa, errors=0):
    ok = [Sample(True, "OK", ttfa, 4 * ttfa, 5.0, float(i)) for i in range(4)]
    bad = [Sample(False, "UNAVAILABLE", 0.1, 0.1, 0.0, 9.0)] * errors
    return {**stats.summarize("pipeline_stream", c, ok + bad, 10.0), "engine": engine}


def two_engines(speedup_1=2.5, speedup_4=3.5, ttfa_ratio=0.4):
    return {
        "environment": {"cpu_count": 2, "python": "3.x", "torch": None, "git_commit": "abc"},
        "texts_version": "bench-texts-v2", "target": "local stack", "llm_engine": "vllm",
        "settings": {"llm_engines": ["vllm", "transformers"], "llm_max_tokens": 100},
        "runs": [stream_row("vllm", 1, 0.3), stream_row("vllm", 4, 1.0 * ttfa_ratio),
                 stream_row("transformers", 1, 0.5), stream_row("transformers", 4, 1.0)],
        "llm": [llm_row("vllm", 1, 20.0 * speedup_1), llm_row("vllm", 4, 40.0 * speedup_4),
                llm_row("vllm", 16, 400.0),
                llm_row("transformers", 1, 20.0), llm_row("transformers", 4, 40.0),
                llm_row("transformers", 16, 80.0)],
        "llm_notes": {"vllm": "measured", "transformers": "measured"},
        "prefix_cache": [{"engine": "vllm", "load": "scenarios", "hits": 960.0,
                          "queries": 1280.0, "rate": 0.75, "note": "measured"},
                         {"engine": "vllm", "load": "llm", "hits": 0.0, "queries": 0.0,
                          "rate": None, "note": "no prompt tokens were looked up"}],
        "rvc_workers": [], "baseline": {"available": False, "note": "skipped"}, "overhead": [],
    }


def engine_statuses(results):
    return {t["target"]: t["status"] for t in evaluate_targets(results)
            if t["target"].startswith("vLLM:")}


def test_engine_targets_pass_and_miss_on_the_ratios():
    assert list(engine_statuses(two_engines()).values()) == ["PASS", "PASS", "PASS"]
    missed = engine_statuses(two_engines(speedup_1=1.9, speedup_4=2.9, ttfa_ratio=0.6))
    assert list(missed.values()) == ["MISS", "MISS", "MISS"]
    names = list(missed)
    assert "tokens/s >= 2x" in names[0] and "(c=1)" in names[0]
    assert "tokens/s >= 3x" in names[1] and "(c=4)" in names[1]
    assert "TTFA p50 <= 0.5x" in names[2] and "(c=4)" in names[2]


def test_engine_targets_at_exactly_the_limits_pass():
    assert set(engine_statuses(two_engines(2.0, 3.0, 0.5)).values()) == {"PASS"}


def test_comparison_rows_and_ratios():
    rows = {(r["measure"], r["concurrency"]): r for r in engine_comparison(two_engines())}
    assert rows[("LLM tokens/s", 1)]["ratio"] == pytest.approx(2.5)
    assert rows[("LLM tokens/s", 16)]["ratio"] == pytest.approx(5.0)
    assert rows[("LLM tokens/s", 16)]["status"] is None  # no target at c = 16
    assert rows[("LLM TTFT p50", 4)]["ratio"] == pytest.approx(1.0)
    assert rows[("pipeline_stream TTFA p50", 4)]["ratio"] == pytest.approx(0.4)
    assert rows[("pipeline_stream TTFA p50", 1)]["status"] is None


def test_engine_targets_need_both_engines_and_the_level():
    one = two_engines()
    one["runs"] = [r for r in one["runs"] if r["engine"] == "vllm"]
    one["llm"] = [r for r in one["llm"] if r["engine"] == "vllm"]
    assert engine_comparison(one) == []
    na = [t for t in evaluate_targets(one) if t["target"].startswith("vLLM:")]
    assert {t["status"] for t in na} == {"N/A"}
    assert all("--llm-engine vllm,transformers" in t["detail"] for t in na)
    no_c4 = two_engines()
    no_c4["llm"] = [r for r in no_c4["llm"] if r["concurrency"] != 4]
    statuses = engine_statuses(no_c4)
    assert list(statuses.values()) == ["PASS", "N/A", "PASS"]


def test_a_failed_level_is_not_a_pass():
    results = two_engines()
    results["llm"][0] = summarize("vllm", 1, [LlmSample(False, "MODEL_ERROR", 0, 1, 0)], 1.0, 100)
    assert list(engine_statuses(results).values())[0] == "N/A"


def test_other_targets_judge_the_primary_engine_only():
    results = two_engines()
    results["runs"].append(stream_row("transformers", 16, 2.0, errors=3))
    zero = next(t for t in evaluate_targets(results) if "zero errors" in t["target"])
    assert zero["status"] == "N/A"  # vLLM was not measured at 16; the loop's errors don't count
    results["runs"].append(stream_row("vllm", 16, 1.5))
    zero = next(t for t in evaluate_targets(results) if "zero errors" in t["target"])
    assert zero["status"] == "PASS" and "0 errors in 4 requests" in zero["detail"]
    share = next(t for t in evaluate_targets(results) if "TTFA <=" in t["target"])
    assert "c=1: TTFA p50 300 ms" in share["detail"]  # vLLM's row at c = 1, not the loop's


def test_markdown_shows_both_engines_the_llm_table_prefix_cache_and_comparison():
    text = markdown(two_engines())
    assert "LLM engines: `vllm`, `transformers`" in text
    assert "| engine | scenario | c |" in text
    assert "| transformers | pipeline_stream | 4 | 4 | 4 | 0 |" in text
    assert "## LLM alone" in text
    assert "| vllm | 1 | 1 | 1 | 0 | 100 | 50.0 | 100 |" in text
    assert "| transformers | 16 | 16 | 16 | 0 | 1600 | 80.0 |" in text
    assert "| vllm | the scenarios | 960 | 1280 | 75.0% |" in text
    assert "| vllm | LLM alone | 0 | 0 | – (no prompt tokens were looked up) |" in text
    assert "| LLM tokens/s | 1 | 50.0 | 20.0 | 2.50x | >= 2x: PASS |" in text
    assert "| pipeline_stream TTFA p50 | 4 | 400 ms | 1000 ms | 0.40x | <= 0.5x: PASS |" in text


def test_markdown_of_one_engine_keeps_the_old_table():
    one = two_engines()
    one["settings"]["llm_engines"] = ["vllm"]
    one["runs"] = [r for r in one["runs"] if r["engine"] == "vllm"]
    one["llm"] = [r for r in one["llm"] if r["engine"] == "vllm"]
    text = markdown(one)
    assert "LLM engine: `vllm`" in text and "| scenario | c |" in text
    assert "| engine | scenario |" not in text and "vLLM vs the transformers loop" not in text


def test_report_files_hold_the_comparison(tmp_path):
    paths = write_report(two_engines(), tmp_path, "x")
    saved = json.loads(paths["json"].read_text())
    assert saved["llm_engine"] == "vllm" and len(saved["llm"]) == 6
    assert any(t["target"].startswith("vLLM:") and t["status"] == "PASS"
               for t in saved["targets"])
    if paths["charts"]:
        assert "x-llm.png" in {p.name for p in paths["charts"]}


# -- the runner ---------------------------------------------------------------------


def test_llm_engine_option():
    assert parse_args([]).llm_engines == ["vllm"]
    both = parse_args(["--llm-engine", "vllm,transformers"])
    assert both.llm_engines == ["vllm", "transformers"]
    assert primary_engine(both.llm_engines) == "vllm"
    assert primary_engine(["transformers", "vllm"]) == "vllm"
    assert primary_engine(["transformers"]) == "transformers"
    assert parse_args(["--api", "h:1"]).llm_engines == []
    for bad in (["--llm-engine", "tensorrt"], ["--llm-engine", "vllm,vllm"],
                ["--llm-engine", ","], ["--api", "h:1", "--llm-engine", "vllm"],
                ["--llm-concurrency", "0"], ["--llm-concurrency", "a"],
                ["--llm-requests", "-1"], ["--llm-max-tokens", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_llm_measurement_defaults():
    args = parse_args([])
    assert (args.llm_concurrency, args.llm_requests, args.llm_max_tokens) == ([1, 4, 16], 16, 100)
    quick = parse_args(["--quick", "--max-tokens", "40"])
    assert (quick.llm_concurrency, quick.llm_requests, quick.llm_max_tokens) == ([1, 4], 4, 40)
    assert parse_args(["--llm-max-tokens", "64"]).llm_max_tokens == 64


def test_merge_labels_each_engines_figures():
    results = {"llm_engine": "vllm", "runs": [], "llm": [], "prefix_cache": [],
               "llm_notes": {}, "procstats": {}, "stages": {}, "restarts": {}, "layers": [],
               "layers_note": "not measured"}
    for engine in ("vllm", "transformers"):
        merge_engine(results, {
            "runs": [{"scenario": "tts", "engine": engine}], "llm": [{"engine": engine}],
            "prefix_cache": [], "llm_note": "measured",
            "procstats": {"tts@4": {"triton": {}}}, "stages": {"tts": {"total": 1.0}},
            "restarts": {"triton": 1}, "layers": [{"engine": engine}],
            "layers_note": "measured"}, engine, labelled=True)
    assert [r["engine"] for r in results["runs"]] == ["vllm", "transformers"]
    assert set(results["procstats"]) == {"tts [vllm]@4", "tts [transformers]@4"}
    assert set(results["stages"]) == {"tts [vllm]", "tts [transformers]"}
    assert set(results["restarts"]) == {"triton [vllm]", "triton [transformers]"}
    assert results["layers"] == [{"engine": "vllm"}]  # the primary engine's only


# -- the model repository of the old engine ------------------------------------------


def test_legacy_repository_serves_the_old_llm_beside_its_loop(tmp_path):
    out = legacy_model_repo(MODEL_REPO, tmp_path / "repo")
    llm = out / "llm"
    config = (llm / "config.pbtxt").read_text()
    assert "max_batch_size: 8" in config and "dynamic_batching" in config
    assert "spark_tts_llm_url" not in config
    model = (llm / "1" / "model.py").read_text()
    assert "from loop import Job, SparkLlm" in model and "vllm_client" not in model
    assert (llm / "1" / "loop.py").read_bytes() == (LEGACY / "loop.py").read_bytes()
    assert sorted(p.name for p in (llm / "1").iterdir()) == ["loop.py", "model.py"]
    spark = (out / "spark_tts" / "config.pbtxt").read_text()
    assert 'key: "spark_tts_max_concurrency" value: { string_value: "2" }' in spark
    # Every other model is the repository's own, and the source is left alone.
    for config_path in MODEL_REPO.glob("*/config.pbtxt"):
        if config_path.parent.name not in ("llm", "spark_tts"):
            copied = out / config_path.parent.name / "config.pbtxt"
            assert copied.read_text() == config_path.read_text()
    assert "spark_tts_llm_url" in (MODEL_REPO / "llm" / "config.pbtxt").read_text()
    assert '"2"' not in (MODEL_REPO / "spark_tts" / "config.pbtxt").read_text().split(
        "spark_tts_max_concurrency")[1].splitlines()[0]


def test_legacy_repository_sets_the_gpu_cap_and_replaces_an_old_copy(tmp_path):
    dst = tmp_path / "repo"
    (dst / "stale").mkdir(parents=True)
    legacy_model_repo(MODEL_REPO, dst, max_concurrency=8)
    assert not (dst / "stale").exists()
    assert 'string_value: "8" }' in (dst / "spark_tts" / "config.pbtxt").read_text()
    with pytest.raises(ValueError):
        legacy_model_repo(MODEL_REPO, tmp_path / "zero", max_concurrency=0)


def test_legacy_repository_refuses_a_spark_tts_without_the_cap(tmp_path):
    src = tmp_path / "src"
    for model in ("llm", "spark_tts"):
        (src / model).mkdir(parents=True)
        (src / model / "config.pbtxt").write_text('backend: "python"\n')
    with pytest.raises(ValueError, match="spark_tts_max_concurrency"):
        legacy_model_repo(src, tmp_path / "dst")


class _Sender:
    def __init__(self):
        self.sent = []

    def send(self, response=None, flags=0):
        self.sent.append((response, flags))


class _Request:
    def __init__(self, request_id, **inputs):
        import numpy as np

        self.inputs = {name: np.array([[value]], dtype=object if name == "prompt" else np.int32)
                       for name, value in inputs.items()}
        self.id = request_id
        self.sender = _Sender()

    def get_response_sender(self):
        return self.sender

    def request_id(self):
        return self.id

    def is_cancelled(self):
        return False


def _fake_pb_utils():
    import types

    fake = types.ModuleType("triton_python_backend_utils")
    fake.TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1

    class Tensor:
        def __init__(self, name, array):
            self.name, self.array = name, array

    class TritonError(Exception):
        INTERNAL, INVALID_ARG = "INTERNAL", "INVALID_ARG"

        def __init__(self, message, code="INTERNAL"):
            super().__init__(message)
            self.code = code

    fake.Tensor, fake.TritonError = Tensor, TritonError
    fake.InferenceResponse = lambda output_tensors=(), error=None: types.SimpleNamespace(
        tensors={t.name: t.array for t in output_tensors}, error=error)
    fake.get_input_tensor_by_name = lambda request, name: (
        None if name not in request.inputs else
        types.SimpleNamespace(as_numpy=lambda: request.inputs[name]))
    fake.Logger = types.SimpleNamespace(log_info=lambda message: None)
    return fake


def test_the_copied_old_llm_model_imports_its_loop_from_its_folder_and_streams(
        tmp_path, monkeypatch):
    """The legacy model.py as Triton's stub runs it (its version folder on sys.path, not
    the repository root's bench/), with a stand-in for Triton's module: one batch of two
    requests streams each one's tokens in groups, then a final flag."""
    import importlib.util
    import sys

    from spark_tts import prompts
    from spark_tts.tiny_models import write_llm

    write_llm(tmp_path / "spark", seed=0)
    version = legacy_model_repo(MODEL_REPO, tmp_path / "repo") / "llm" / "1"
    for name in ("SPARK_TTS_MODEL_DIR", "SPARK_TTS_CANCEL_DIR", "SPARK_TTS_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    monkeypatch.syspath_prepend(str(version))
    for name in ("loop", "triton_serving.tensors"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    spec = importlib.util.spec_from_file_location("legacy_llm_model_under_test",
                                                  version / "model.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        assert Path(sys.modules["loop"].__file__).parent == version
        model = module.TritonPythonModel()
        model.initialize({"model_config": json.dumps({"parameters": {
            "spark_tts_model_dir": {"string_value": str(tmp_path / "spark")},
            "spark_tts_cancel_dir": {"string_value": str(tmp_path / "cancel")},
            "spark_tts_device": {"string_value": "cpu"}}})})
        prompt = prompts.cloning_prompt("hello there", list(range(prompts.GLOBAL_TOKENS)))
        requests = [_Request("a", prompt=prompt.encode(), max_tokens=5, token_group=2),
                    _Request("b", prompt=prompt.encode(), max_tokens=3, token_group=2)]
        assert model.execute(requests) is None
    finally:  # nothing imported against the stand-in outlives the test
        for name in ("loop", "triton_serving.tensors"):
            sys.modules.pop(name, None)
    for request, expected in zip(requests, (5, 3), strict=True):
        *tokens, (last, flags) = request.sender.sent
        assert last is None and flags == 1
        kinds = [response.tensors["kind"].reshape(-1).tolist() for response, _ in tokens]
        assert max(len(group) for group in kinds) <= 2
        # max_tokens counts semantic tokens (kind 0); random weights emit globals too.
        assert sum(group.count(0) for group in kinds) == expected
        assert all(response.error is None for response, _ in tokens)
