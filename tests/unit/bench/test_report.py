"""bench.report writes JSON, Markdown and (with matplotlib, bench.charts) PNG charts;
bench.targets judges the targets."""

import importlib.util
import json

import pytest

from bench import stats
from bench.report import write_report
from bench.samples import Sample
from bench.targets import evaluate_targets

LAYERS = [
    {"operation": "tts", "layer": "edge", "metric": "latency", "p50": 1.02, "adds": 0.01,
     "ratio": 1.01, "audio_seconds": 2.0, "errors": 0, "inner": "gateway"},
    {"operation": "tts", "layer": "gateway", "metric": "latency", "p50": 1.01, "adds": 0.01,
     "ratio": 1.01, "audio_seconds": 2.0, "errors": 0, "inner": "in_process"},
    {"operation": "tts", "layer": "in_process", "metric": "latency", "p50": 1.0, "adds": None,
     "ratio": None, "audio_seconds": 2.0, "errors": 0, "inner": None},
]


def results(stream_ttfa=0.3, errors_at_16=0, rvc_two=(2.0, 1.1)):
    ok = [Sample(True, "OK", stream_ttfa, 1.0, 2.0, float(i)) for i in range(4)]
    bad = [Sample(False, "UNAVAILABLE", 0.1, 0.1, 0.0, 5.0)] * errors_at_16
    return {
        "environment": {"cpu_count": 2, "python": "3.x", "torch": None, "git_commit": "abc"},
        "texts_version": "bench-texts-v1", "target": "test",
        "runs": [stats.summarize("pipeline_stream", 1, ok, 4.0),
                 stats.summarize("pipeline_stream", 16, ok + bad, 4.0)],
        "rvc_workers": [{"workers": 1, "one": 1.0, "two": rvc_two[0]},
                        {"workers": 2, "one": 1.0, "two": rvc_two[1]}],
        "stages": {"pipeline_stream": {"tts_queue": 0.0, "tts_compute": 0.5, "rvc_queue": 0.0,
                                       "rvc_compute": 0.3, "first_audio": 0.3, "total": 1.0}},
        "procstats": {"pipeline_stream@1": {"gateway": {"cpu_seconds": 1.0, "peak_rss_mib": 80.0,
                                                        "processes": 1}}},
        "baseline": {"available": False, "note": "bench/baseline.py not importable"},
        "overhead": [],
        "layer_breakdown": LAYERS,
    }


def test_targets_pass_and_miss_on_the_numbers():
    targets = {t["target"].split(" (")[0]: t["status"] for t in evaluate_targets(results())}
    assert set(targets.values()) == {"PASS", "N/A"}
    missed = evaluate_targets(results(stream_ttfa=0.5, errors_at_16=1, rvc_two=(2.0, 1.5)))
    assert [t["status"] for t in missed[:3]] == ["MISS", "MISS", "MISS"]
    by_name = {t["target"]: t for t in missed}
    capacity = by_name["concurrency 16: throughput >= 0.9x in-process capacity (pipeline_stream)"]
    assert capacity["status"] == "N/A" and "no baseline" in capacity["detail"]
    assert missed[-1]["status"] == "N/A" and "baseline" in missed[-1]["detail"]


def test_overhead_target_uses_p50_differences():
    data = results()
    served = data["runs"][0]
    base = stats.summarize("pipeline_stream", 1, [Sample(True, "OK", 0.295, 0.995, 2.0)], 1.0)
    data["overhead"] = [stats.overhead(served, base)]
    assert evaluate_targets(data)[-1]["status"] == "PASS"
    slow = stats.summarize("pipeline_stream", 1, [Sample(True, "OK", 0.2, 0.9, 2.0)], 1.0)
    data["overhead"] = [stats.overhead(served, slow)]
    assert evaluate_targets(data)[-1]["status"] == "MISS"


def test_report_writes_json_markdown_and_charts(tmp_path):
    paths = write_report(results(), tmp_path, "2026-01-01-host")
    saved = json.loads(paths["json"].read_text())
    assert saved["texts_version"] == "bench-texts-v1" and len(saved["runs"]) == 2
    assert {t["status"] for t in saved["targets"]} <= {"PASS", "MISS", "N/A"}
    text = paths["markdown"].read_text()
    assert "| pipeline_stream | 16 | 4 | 4 | 0 |" in text
    assert "## Targets" in text and "RVC worker scaling" in text
    assert "| tts | latency | Envoy (edge) | 1020 | 10 | 1.01 | 2.00 | 0 |" in text
    if importlib.util.find_spec("matplotlib") is None:
        assert paths["charts"] == [] and "matplotlib" in saved["charts_note"]
    else:
        assert {p.name for p in paths["charts"]} == {
            "2026-01-01-host-latency.png", "2026-01-01-host-rvc-workers.png",
            "2026-01-01-host-stages.png", "2026-01-01-host-layers.png"}
        assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths["charts"])


def test_report_without_matplotlib_notes_the_skip(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    paths = write_report(results(), tmp_path, "x")
    assert paths["charts"] == []
    assert "Charts skipped" in paths["markdown"].read_text()


@pytest.mark.parametrize("rows", [[], [{"workers": 1, "one": 1.0, "two": 2.0}]])
def test_rvc_target_not_measured(rows):
    data = results()
    data["rvc_workers"] = rows
    assert evaluate_targets(data)[1]["status"] == "N/A"


def test_capacity_target_compares_served_with_in_process_throughput():
    data = results()
    served = data["runs"][1]  # pipeline_stream at 16: 4 requests in 4 s
    fast = [Sample(True, "OK", 0.3, 1.0, 2.0, float(i) / 2) for i in range(4)]
    data["baseline"] = {"available": True, "note": "available",
                        "runs": [stats.summarize("pipeline_stream", 16, fast, 2.0)]}
    target = [t for t in evaluate_targets(data) if "capacity" in t["target"]]
    assert [t["status"] for t in target] == ["MISS"]  # 1.0 req/s vs 2.0 = 0.5x
    assert "0.50x" in target[0]["detail"]
    data["baseline"]["runs"] = [stats.summarize("pipeline_stream", 16, fast, 4.2)]
    assert [t["status"] for t in evaluate_targets(data) if "capacity" in t["target"]] == ["PASS"]
    assert served["requests_per_second"] == 1.0


def test_gpu_targets_are_judged_only_on_a_gpu_run():
    data = results()
    assert {t["status"] for t in evaluate_targets(data) if t["target"].startswith("GPU")} == {"N/A"}
    data["environment"]["gpu"] = "NVIDIA H100"
    data["layers"] = [{"operation": "tts", "layer": "tts_service",
                       "ttfa": {"p50": 0.12}, "latency": {"p50": 0.5}}]
    fast = [Sample(True, "OK", 0.1, 0.1, 4.0, float(i)) for i in range(4)]  # RTF 0.025
    data["runs"].append(stats.summarize("tts", 4, fast, 1.0))
    gpu = {t["target"]: t for t in evaluate_targets(data) if t["target"].startswith("GPU")}
    assert [t["status"] for t in gpu.values()] == ["PASS", "PASS"]
    data["layers"][0]["ttfa"]["p50"] = 0.2
    data["runs"][-1]["rtf"] = 0.07
    gpu = {t["target"]: t for t in evaluate_targets(data) if t["target"].startswith("GPU")}
    assert [t["status"] for t in gpu.values()] == ["MISS", "MISS"]
    assert "200 ms" in list(gpu.values())[0]["detail"]
