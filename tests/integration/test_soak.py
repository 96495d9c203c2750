"""The short soak: bench/soak.py's mixed load on the session's stack for 40 s
(after one request of each kind), every process sampled each second.

`make soak` runs the same code for 30 minutes. 40 seconds are enough to see a
descriptor or a thread left behind per request (dozens of requests, limits of
8 and 4), but not a slow memory leak: the RVC service's RSS swings by about
35 MiB between busy and idle. So RSS is held to "bounded in the judged part":
the last window's mean may not exceed the first's by more than 48 MiB. The
windows' centres are about 22 s apart, so a leak of some 130 MiB a minute
(a few MiB a request) fails; slower leaks are the long
soak's job."""

import time

from bench import soak_load, soak_report, soak_settings

SECONDS = 40.0
SHORT_RUN = soak_settings.Thresholds(
    rss_slope_mib_per_hour=0.0,  # any upward slope ...
    rss_rise_mib=48.0,  # ... and a rise over the busy/idle swing
    fd_rise=8.0,
    thread_rise=4.0,
    warmup=0.3,  # the first 12 s are not judged
    window=0.25,  # 7 samples a window
)


def test_a_short_soak_has_no_unexpected_outcomes_and_no_growth(stack, tmp_path):
    names = {c.spec.name for c in stack.supervisor.children}

    def roots() -> dict[str, int]:
        return {c.spec.name: c.process.pid for c in stack.supervisor.children}

    settings = soak_settings.Settings(seconds=SECONDS, concurrency=2, sample_seconds=1.0,
                             thresholds=SHORT_RUN)
    began = time.monotonic()
    results = soak_load.run_soak(f"127.0.0.1:{stack.config.api_port}", roots, settings,
                            log=print)
    took = time.monotonic() - began
    paths = soak_report.write_report(results, tmp_path, "soak")
    report = paths["markdown"].read_text()

    assert results["unexpected"] == 0, results["unexpected_examples"]
    assert results["kinds_not_run"] == []
    assert all(r["ok"] >= 2 for r in results["requests"].values()), results["requests"]
    assert results["restarts"] == []

    samples = results["samples"]
    assert len(samples) >= 0.8 * SECONDS, f"{len(samples)} samples in {took:.0f} s"
    for sample in samples:  # every process seen, with its descendants
        assert set(sample["procs"]) == names
        assert all(p["processes"] >= 1 and p["fds"] > 0 for p in sample["procs"].values())
        assert sample["procs"]["rvc"]["processes"] >= 2  # the service and its worker
        assert sample["procs"]["triton"]["processes"] >= 2  # tritonserver and its stubs

    for name, per in results["verdicts"].items():
        for metric in soak_settings.METRICS:
            verdict = per[metric]
            assert verdict["judged"], (name, metric, verdict["reason"])
            assert not verdict["grew"], (name, metric, verdict)
    assert results["passed"], results["failures"]
    assert "**Verdict: PASS**" in report and "| rvc | MiB |" in report
    print(f"\nshort soak: {took:.1f} s, "
          f"{sum(r['requests'] for r in results['requests'].values())} requests")
