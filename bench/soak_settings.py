"""The soak's settings: how long and how hard it loads, and what counts as growth.

METRICS are the per-process series the sampler records (bench/soak_samples.py)
and the report shows (bench/soak_report.py); Thresholds turns each into the
limit bench/trend.py judges it by.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.trend import Limit

METRICS = ("rss_mib", "fds", "threads")
UNITS = {"rss_mib": "MiB", "fds": "fds", "threads": "threads"}


@dataclass(frozen=True)
class Thresholds:
    """What counts as unbounded growth (bench/trend.py applies them)."""

    rss_slope_mib_per_hour: float = 32.0
    rss_rise_mib: float = 16.0
    fd_rise: float = 16.0
    thread_rise: float = 8.0
    warmup: float = 0.2  # share of the run left out before judging
    window: float = 0.2  # share of the post-warm-up samples in each compared window

    def limit(self, metric: str) -> Limit:
        if metric == "rss_mib":
            return Limit(self.rss_slope_mib_per_hour, self.rss_rise_mib)
        # Open files and threads: any upward slope, and a rise of more than N.
        return Limit(0.0, self.fd_rise if metric == "fds" else self.thread_rise)


@dataclass(frozen=True)
class Settings:
    seconds: float = 1800.0
    concurrency: int = 2
    sample_seconds: float = 10.0
    prime: bool = True  # one request of each kind before the clock starts
    thresholds: Thresholds = field(default_factory=Thresholds)
