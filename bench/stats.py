"""Summaries of samples: percentiles, real-time factor, throughput, errors."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from bench.samples import Sample

PERCENTILES = (50, 95, 99)


def percentiles(values: Iterable[float]) -> dict[str, float | None]:
    """p50/p95/p99 (numpy's linear interpolation); None for each when there are no values."""
    data = np.asarray(list(values), dtype=float)
    if data.size == 0:
        return {f"p{p}": None for p in PERCENTILES}
    return {f"p{p}": float(v) for p, v in zip(PERCENTILES, np.percentile(data, PERCENTILES), strict=True)}


def median(values: Iterable[float]) -> float | None:
    data = list(values)
    return float(np.median(data)) if data else None


def span(samples: Sequence[Sample]) -> float:
    """First request sent -> last reply in, from the samples alone."""
    if not samples:
        return 0.0
    return max(s.started + s.total_seconds for s in samples) - min(s.started for s in samples)


def summarize(scenario: str, concurrency: int, samples: Sequence[Sample],
              wall_seconds: float | None = None) -> dict:
    """One scenario at one concurrency. Latencies and RTF count successful requests
    only; throughput is successes (and their audio) per wall-clock second."""
    ok = [s for s in samples if s.ok]
    wall = span(samples) if wall_seconds is None else wall_seconds
    audio = sum(s.audio_seconds for s in ok)
    return {
        "scenario": scenario,
        "concurrency": concurrency,
        "requests": len(samples),
        "ok": len(ok),
        "errors": dict(sorted(Counter(s.code for s in samples if not s.ok).items())),
        "wall_seconds": wall,
        "ttfa": percentiles(s.first_audio_seconds for s in ok),
        "latency": percentiles(s.total_seconds for s in ok),
        "rtf": median(s.total_seconds / s.audio_seconds for s in ok if s.audio_seconds > 0),
        "requests_per_second": len(ok) / wall if wall > 0 else None,
        "audio_seconds_per_second": audio / wall if wall > 0 else None,
        "audio_seconds": audio,
    }


def overhead(served: dict, baseline: dict) -> dict:
    """Serving cost of one scenario/concurrency: the stack's p50 minus (and over)
    the in-process baseline's, for time to first audio and whole latency."""
    out = {"scenario": served["scenario"], "concurrency": served["concurrency"]}
    for metric in ("ttfa", "latency"):
        ours, theirs = served[metric]["p50"], baseline[metric]["p50"]
        out[metric] = {
            "served_p50": ours, "baseline_p50": theirs,
            "diff": None if ours is None or theirs is None else ours - theirs,
            "ratio": None if ours is None or not theirs else ours / theirs,
        }
    return out


def stage_medians(stages: Sequence[dict]) -> dict[str, dict[str, float]]:
    """The gateway's per-stage timing (PipelineTiming), median per scenario and field."""
    by_scenario: dict[str, list[dict]] = {}
    for row in stages:
        by_scenario.setdefault(row["scenario"], []).append(row)
    return {
        name: {key: float(np.median([r[key] for r in rows]))
               for key in rows[0] if key != "scenario"}
        for name, rows in by_scenario.items()
    }
