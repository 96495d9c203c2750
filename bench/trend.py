"""Is a resource series growing without bound? The soak's verdict (bench/soak_samples.py),
free of I/O so it can be checked on synthetic series.

A series is sample times (seconds) and values (MiB, open files, threads). The
first ``warmup`` share of the run's time is left out: models load, caches and
thread pools fill, allocators reach their working size. On the rest:

- ``slope``: the least-squares slope, per hour;
- ``rise``: the mean of the last window minus the mean of the first window
  (each window the ``window`` share of the post-warm-up samples, at least
  ``min_window`` of them).

The series **grew** when ``slope > limit.slope_per_hour`` **and**
``rise > limit.rise``. Both must hold: the slope of a short or noisy series
extrapolates wildly (a few MiB of allocator noise over a minute is
hundreds of MiB an hour), and a rise alone could be one late fluctuation
against a flat trend. A step inside the warm-up is not growth; a step after
it looks like a leak to a short run, which a longer run tells apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

HOUR = 3600.0


@dataclass(frozen=True)
class Limit:
    slope_per_hour: float  # the series grows faster than this, per hour ...
    rise: float  # ... and its last window's mean exceeds the first's by more than this


@dataclass(frozen=True)
class Verdict:
    judged: bool  # enough samples after the warm-up to judge
    grew: bool
    reason: str
    samples: int  # after the warm-up
    start: float | None  # first value of the whole run
    end: float | None  # last value
    peak: float | None
    first_window: float | None  # mean of the first post-warm-up window
    last_window: float | None
    rise: float | None
    slope_per_hour: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def slope(times: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of ``values`` over ``times`` (value per second)."""
    n = len(times)
    if n != len(values):
        raise ValueError(f"{n} times but {len(values)} values")
    if n < 2:
        raise ValueError("a slope needs at least two samples")
    mean_t = sum(times) / n
    mean_v = sum(values) / n
    spread = sum((t - mean_t) ** 2 for t in times)
    if spread == 0:
        raise ValueError("every sample has the same time")
    return sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True)) / spread


def judge(times: Sequence[float], values: Sequence[float], limit: Limit,
          warmup: float = 0.2, window: float = 0.2, min_window: int = 3) -> Verdict:
    """Whether the series grew without bound, by the rule in the module's docstring."""
    if len(times) != len(values):
        raise ValueError(f"{len(times)} times but {len(values)} values")
    if not 0 <= warmup < 1 or not 0 < window <= 0.5 or min_window < 1:
        raise ValueError(f"warmup {warmup} (0..1), window {window} (0..0.5], "
                         f"min_window {min_window} (>= 1)")
    pairs = sorted(zip(times, values, strict=True))
    if not pairs:
        return Verdict(False, False, "no samples", 0, None, None, None, None, None, None, None)
    first_t, last_t = pairs[0][0], pairs[-1][0]
    cut = first_t + warmup * (last_t - first_t)
    post = [(t, v) for t, v in pairs if t >= cut]
    whole = {"start": pairs[0][1], "end": pairs[-1][1], "peak": max(v for _t, v in pairs)}
    size = max(min_window, round(window * len(post)))
    if len(post) < 2 * size:
        return Verdict(False, False, f"too few samples after the warm-up ({len(post)}; "
                       f"need {2 * size})", len(post), **whole, first_window=None,
                       last_window=None, rise=None, slope_per_hour=None)
    head = [v for _t, v in post[:size]]
    tail = [v for _t, v in post[-size:]]
    first_mean, last_mean = sum(head) / size, sum(tail) / size
    rise = last_mean - first_mean
    per_hour = slope([t for t, _v in post], [v for _t, v in post]) * HOUR
    steep, risen = per_hour > limit.slope_per_hour, rise > limit.rise
    if steep and risen:
        reason = (f"grows {per_hour:.1f}/h (limit {limit.slope_per_hour:g}) and rose "
                  f"{rise:.1f} (limit {limit.rise:g})")
    elif steep:
        reason = f"slope {per_hour:.1f}/h over the limit, but rose only {rise:.1f}: bounded"
    elif risen:
        reason = f"rose {rise:.1f}, but the slope {per_hour:.1f}/h is within the limit: bounded"
    else:
        reason = "flat"
    return Verdict(True, steep and risen, reason, len(post), **whole, first_window=first_mean,
                   last_window=last_mean, rise=rise, slope_per_hour=per_hour)
