"""The soak without a stack (bench.soak and its modules): its bookkeeping,
verdicts, report and arguments, with the edge's request kinds replaced by fakes."""

import dataclasses
import json
import os
import subprocess
import sys
import time

import pytest

from bench import soak, soak_load, soak_report, soak_samples
from bench.soak_requests import Mix, Outcome
from bench.soak_settings import METRICS, Settings, Thresholds
from bench.trend import Limit


def ok(edge, mix):
    time.sleep(0.002)  # stands in for a request's work
    return Outcome(True, "OK", 0.002)


def unavailable(edge, mix):
    return Outcome(False, "UNAVAILABLE", 0.001, "triton restarting")


def broken(edge, mix):
    raise ConnectionError("refused")


class FakeEdge:
    def __init__(self, address):
        self.address = address
        self.closed = False

    def close(self):
        self.closed = True


@pytest.fixture
def fake_kinds(monkeypatch):
    def use(kinds):
        monkeypatch.setattr(soak_load, "KINDS", kinds)
        monkeypatch.setattr(soak_load, "CYCLE", tuple(kinds))
        monkeypatch.setattr(soak_load, "Edge", FakeEdge)
        monkeypatch.setattr(Mix, "load", classmethod(lambda cls: None))
    return use


def series(values, every=1.0, name="svc", metric="fds", others=None):
    """Samples as the sampler records them, one metric varying."""
    base = {"rss_mib": 100.0, "fds": 10, "threads": 4, "processes": 1}
    return [{"t": i * every, "procs": {name: {**base, **(others or {}), metric: v}}}
            for i, v in enumerate(values)]


def test_thresholds_give_each_metric_its_limit():
    th = Thresholds(rss_slope_mib_per_hour=10, rss_rise_mib=5, fd_rise=3, thread_rise=2)
    assert th.limit("rss_mib") == Limit(10, 5)
    assert th.limit("fds") == Limit(0.0, 3)
    assert th.limit("threads") == Limit(0.0, 2)


def test_verdicts_find_a_descriptor_leak_and_pass_a_flat_process():
    leaking = series(range(10, 70))  # one more open file every sample
    flat = series([10] * 60, name="other")
    samples = [{"t": a["t"], "procs": {**a["procs"], **b["procs"]}}
               for a, b in zip(leaking, flat, strict=True)]
    judged = soak_samples.verdicts(samples, Thresholds())
    assert judged["svc"]["fds"].grew
    assert not judged["svc"]["threads"].grew and not judged["svc"]["rss_mib"].grew
    assert not any(v.grew for v in judged["other"].values())


def test_a_run_counts_every_outcome_and_fails_on_unexpected_ones(fake_kinds):
    fake_kinds({"fine": ok, "refused": unavailable, "crash": broken})
    settings = Settings(seconds=1.0, concurrency=2, sample_seconds=0.1)
    lines = []
    results = soak_load.run_soak("127.0.0.1:1", lambda: {"me": os.getpid()}, settings, lines.append)
    requests = results["requests"]
    assert set(requests) == {"fine", "refused", "crash"}
    assert requests["fine"]["requests"] == requests["fine"]["ok"] >= 2
    assert requests["refused"]["unexpected"] == {"UNAVAILABLE": requests["refused"]["requests"]}
    assert requests["crash"]["unexpected"] == {"ConnectionError": requests["crash"]["requests"]}
    assert results["unexpected"] == requests["refused"]["requests"] + requests["crash"]["requests"]
    assert not results["passed"]
    assert f"{results['unexpected']} unexpected request outcomes" in results["failures"]
    assert any("UNAVAILABLE triton restarting" in e for e in results["unexpected_examples"])
    assert any("ConnectionError refused" in e for e in results["unexpected_examples"])
    assert lines and lines[0].startswith("soak: primed every kind")
    # Sampled during the load only: from t=0 to about the deadline.
    times = [s["t"] for s in results["samples"]]
    assert len(times) >= 5 and times[0] == 0.0 and times[-1] <= 1.0 + 0.5
    assert all(s["procs"]["me"]["processes"] >= 1 for s in results["samples"])
    assert set(results["verdicts"]["me"]) == set(METRICS)
    assert 1.0 <= results["wall_seconds"] < 10


def test_a_clean_run_passes_and_without_processes_judges_none(fake_kinds):
    fake_kinds({"fine": ok})
    settings = Settings(seconds=0.5, concurrency=1, sample_seconds=0.1, prime=False)
    results = soak_load.run_soak("127.0.0.1:1", None, settings, lambda line: None)
    assert results["passed"], results["failures"]
    assert results["verdicts"] == {} and results["unexpected"] == 0
    assert results["requests"]["fine"]["requests"] >= 1


def test_a_restarted_or_vanished_process_is_noticed():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    pids = iter([os.getpid(), child.pid, child.pid])
    sampler = soak_samples.Sampler(lambda: {"svc": next(pids)}, interval=60,
                                   started=time.monotonic())
    try:
        sampler.sample()
        sampler.sample()  # a new pid: restarted
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    sampler.sample()  # the same pid, gone: not running
    assert [(r["process"], r["old_pid"], r["new_pid"]) for r in sampler.restarts] == [
        ("svc", os.getpid(), child.pid), ("svc", child.pid, None)]
    assert sampler.samples[-1]["procs"]["svc"]["processes"] == 0


def test_the_report_says_what_failed(tmp_path):
    samples = series(range(10, 70))
    results = {
        "target": "127.0.0.1:1", "wall_seconds": 61.0,
        "settings": {"seconds": 60.0, "concurrency": 2, "sample_seconds": 1.0, "prime": True,
                     "thresholds": dataclasses.asdict(Thresholds())},
        "requests": {"openai_speech": {"requests": 3, "ok": 2, "unexpected": {"HTTP_500": 1},
                                       "p50_s": 1.5, "max_s": 2.0}},
        "unexpected": 1, "unexpected_examples": ["t=12s openai_speech: HTTP_500 mp3"],
        "kinds_not_run": [], "samples": samples, "restarts": [],
        "verdicts": {n: {m: v.to_dict() for m, v in per.items()}
                     for n, per in soak_samples.verdicts(samples, Thresholds()).items()},
        "failures": ["1 unexpected request outcomes", "svc fds: grows"], "passed": False,
    }
    paths = soak_report.write_report(results, tmp_path, "soak-x")
    text = paths["markdown"].read_text()
    assert "**Verdict: FAIL** — 1 unexpected request outcomes; svc fds: grows" in text
    assert "| openai_speech | 3 | 2 | HTTP_500 ×1 |" in text
    assert "| svc | fds | 10.0 | 69.0 |" in text and "GROWS" in text
    assert json.loads(paths["json"].read_text())["stem"] == "soak-x"
    if paths["chart"] is not None:
        assert paths["chart"].stat().st_size > 0


def test_arguments():
    args = soak.parse_args([])
    assert args.settings.seconds == 1800 and args.settings.concurrency == 2
    assert args.sample_seconds == 10.0  # 30 min / 180 samples
    assert args.api is None and args.pids == {}
    args = soak.parse_args(["--minutes", "1", "--api", "http://h:8080/", "--pid", "rvc=42",
                            "--rss-rise", "4", "--thread-rise", "2"])
    assert args.sample_seconds == 1.0 and args.api == "h:8080" and args.pids == {"rvc": 42}
    assert args.settings.thresholds.rss_rise_mib == 4 and args.settings.thresholds.thread_rise == 2


@pytest.mark.parametrize("argv", [
    ["--pid", "rvc=1"],  # no --api
    ["--api", "h:1", "--pid", "rvc"],
    ["--minutes", "0"],
    ["--minutes", "0.5", "--sample-seconds", "10"],  # three samples in all
    ["--warmup", "0.95"],
])
def test_bad_arguments_are_refused(argv):
    with pytest.raises(SystemExit):
        soak.parse_args(argv)
