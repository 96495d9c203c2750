"""bench.stats and bench.load on synthetic samples: no stack, no sleeps."""

import asyncio

import pytest

from bench import stats
from bench.load import run_load
from bench.samples import Sample


def sample(total, first=None, audio=1.0, ok=True, code="OK", started=0.0):
    return Sample(ok, code, total if first is None else first, total, audio if ok else 0.0, started)


def test_percentiles_interpolate_like_numpy():
    values = [i / 100 for i in range(1, 101)]  # 0.01 .. 1.00
    p = stats.percentiles(values)
    assert p["p50"] == pytest.approx(0.505)
    assert p["p95"] == pytest.approx(0.9505)
    assert p["p99"] == pytest.approx(0.9901)
    assert stats.percentiles([]) == {"p50": None, "p95": None, "p99": None}


def test_summary_counts_errors_by_code_and_times_only_successes():
    samples = [sample(1.0, 0.2, audio=2.0, started=0.0), sample(3.0, 0.4, audio=2.0, started=1.0),
               sample(0.1, ok=False, code="UNAVAILABLE", started=2.0),
               sample(0.1, ok=False, code="UNAVAILABLE", started=2.0),
               sample(0.5, ok=False, code="RESOURCE_EXHAUSTED", started=3.0)]
    row = stats.summarize("tts", 4, samples, wall_seconds=4.0)
    assert row["requests"] == 5 and row["ok"] == 2
    assert row["errors"] == {"RESOURCE_EXHAUSTED": 1, "UNAVAILABLE": 2}
    assert row["latency"]["p50"] == pytest.approx(2.0)
    assert row["ttfa"]["p50"] == pytest.approx(0.3)
    assert row["rtf"] == pytest.approx((0.5 + 1.5) / 2)  # median of 1/2 and 3/2
    assert row["requests_per_second"] == pytest.approx(2 / 4.0)
    assert row["audio_seconds_per_second"] == pytest.approx(4.0 / 4.0)


def test_wall_time_defaults_to_the_span_of_the_samples():
    samples = [sample(1.0, started=10.0), sample(2.5, started=11.0)]
    assert stats.span(samples) == pytest.approx(3.5)
    assert stats.summarize("x", 1, samples)["wall_seconds"] == pytest.approx(3.5)


def test_all_failed_gives_no_latency_and_no_rtf():
    row = stats.summarize("x", 1, [sample(1.0, ok=False, code="INTERNAL")], wall_seconds=1.0)
    assert row["latency"]["p50"] is None and row["rtf"] is None
    assert row["requests_per_second"] == 0


def test_overhead_is_difference_and_ratio_of_medians():
    served = stats.summarize("tts", 1, [sample(1.2, 0.3)], 1.0)
    base = stats.summarize("tts", 1, [sample(1.0, 0.2)], 1.0)
    o = stats.overhead(served, base)
    assert o["latency"]["diff"] == pytest.approx(0.2)
    assert o["latency"]["ratio"] == pytest.approx(1.2)
    assert o["ttfa"]["diff"] == pytest.approx(0.1)


def test_stage_medians_per_scenario():
    rows = [{"scenario": "pipeline", "tts_compute": v, "total": 2 * v} for v in (1.0, 2.0, 3.0)]
    assert stats.stage_medians(rows) == {"pipeline": {"tts_compute": 2.0, "total": 4.0}}


@pytest.mark.parametrize("concurrency, requests", [(1, 5), (3, 10), (4, 4), (8, 3)])
async def test_load_never_exceeds_the_concurrency_bound(concurrency, requests):
    in_flight, peak, started = 0, 0, 0
    gates: list[asyncio.Event] = []
    arrived = asyncio.Event()

    async def fake() -> Sample:
        nonlocal in_flight, peak, started
        in_flight += 1
        started += 1
        peak = max(peak, in_flight)
        gate = asyncio.Event()
        gates.append(gate)
        arrived.set()
        await gate.wait()
        in_flight -= 1
        return sample(0.0)

    task = asyncio.create_task(run_load("fake", fake, concurrency, requests))
    released = 0
    while released < requests:
        # Wait until every request the bound allows has started, then finish one.
        while len(gates) < min(requests, released + concurrency):
            arrived.clear()
            await arrived.wait()
        gates[released].set()
        released += 1
    result = await task
    assert peak == min(concurrency, requests)
    assert started == requests and len(result.samples) == requests
    assert result.concurrency == concurrency and result.wall_seconds >= 0


async def test_a_scenario_that_raises_becomes_a_failed_sample():
    async def broken() -> Sample:
        raise RuntimeError("bug")

    result = await run_load("broken", broken, 2, 3)
    assert [s.code for s in result.samples] == ["RuntimeError"] * 3
