"""bench.trend on synthetic series: what the soak calls unbounded growth."""

import numpy as np
import pytest

from bench.trend import HOUR, Limit, judge, slope

RSS = Limit(slope_per_hour=32.0, rise=8.0)  # the soak's default RSS limit (MiB)
FDS = Limit(slope_per_hour=0.0, rise=16.0)  # its default open-files limit


def run(minutes: float = 30, every: float = 10.0) -> np.ndarray:
    """Sample times of a soak: every ``every`` seconds for ``minutes``."""
    return np.arange(0.0, minutes * 60 + every / 2, every)


def noise(size: int, mib: float, seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, mib, size)


def test_slope_is_the_least_squares_slope():
    t = [0.0, 1.0, 2.0, 3.0]
    assert slope(t, [1.0, 3.5, 6.0, 8.5]) == pytest.approx(2.5)
    assert slope(t, [0.0, 1.0, 0.0, 1.0]) == pytest.approx(0.2)  # numpy.polyfit agrees
    assert slope(t, [0.0, 1.0, 0.0, 1.0]) == pytest.approx(np.polyfit(t, [0, 1, 0, 1], 1)[0])


@pytest.mark.parametrize("times, values", [([0.0], [1.0]), ([1.0, 1.0], [1.0, 2.0]),
                                           ([0.0, 1.0], [1.0])])
def test_slope_refuses_series_it_cannot_fit(times, values):
    with pytest.raises(ValueError):
        slope(times, values)


def test_flat_with_noise_passes():
    t = run()
    rss = 500.0 + noise(t.size, 4.0)
    verdict = judge(t, rss, RSS)
    assert verdict.judged and not verdict.grew, verdict.reason
    assert abs(verdict.slope_per_hour) < 10 and abs(verdict.rise) < 4
    assert verdict.reason == "flat"


def test_a_steady_leak_fails():
    t = run()
    rss = 500.0 + 100.0 * t / HOUR + noise(t.size, 4.0)  # 100 MiB an hour
    verdict = judge(t, rss, RSS)
    assert verdict.judged and verdict.grew, verdict.reason
    assert verdict.slope_per_hour == pytest.approx(100.0, rel=0.1)
    # Window centres 19.2 min apart (24 min after the warm-up, 4.8 min windows).
    assert verdict.rise == pytest.approx(100.0 * 19.2 / 60, rel=0.2)
    assert verdict.start < verdict.first_window < verdict.last_window


def test_a_leak_slower_than_the_limit_passes():
    t = run()
    rss = 500.0 + 10.0 * t / HOUR + noise(t.size, 1.0)
    verdict = judge(t, rss, RSS)
    assert verdict.judged and not verdict.grew, verdict.reason


def test_a_step_during_the_warm_up_then_flat_passes():
    t = run()
    rss = np.where(t < 0.1 * t[-1], 300.0, 500.0) + noise(t.size, 4.0)  # models load
    assert not judge(t, rss, RSS).grew
    # Judged from the first sample, the same step would count as growth.
    assert judge(t, rss, RSS, warmup=0.0).grew


def test_both_conditions_are_needed():
    t = run()
    rss = 500.0 + 100.0 * t / HOUR
    steep_only = judge(t, rss, Limit(slope_per_hour=1.0, rise=1000.0))
    risen_only = judge(t, rss, Limit(slope_per_hour=1000.0, rise=1.0))
    assert not steep_only.grew and "bounded" in steep_only.reason
    assert not risen_only.grew and "bounded" in risen_only.reason


def test_open_files_leaking_one_a_minute_fail_and_a_busy_flat_count_passes():
    t = run()
    rng = np.random.default_rng(11)
    busy = 40 + rng.integers(0, 5, t.size)  # connections come and go
    assert not judge(t, busy, FDS).grew
    leaking = busy + np.floor(t / 60)
    verdict = judge(t, leaking, FDS)
    assert verdict.grew, verdict.reason
    assert verdict.slope_per_hour == pytest.approx(60, rel=0.1)


def test_too_few_samples_are_not_judged():
    verdict = judge([0.0, 10.0, 20.0, 30.0], [1.0, 100.0, 200.0, 300.0], RSS)
    assert not verdict.judged and not verdict.grew
    assert "too few samples" in verdict.reason
    assert verdict.start == 1.0 and verdict.end == 300.0 and verdict.peak == 300.0
    empty = judge([], [], RSS)
    assert not empty.judged and empty.start is None


def test_unsorted_samples_are_judged_in_time_order():
    t = run()
    rss = 500.0 + 100.0 * t / HOUR
    order = np.random.default_rng(3).permutation(t.size)
    assert judge(t[order], rss[order], RSS) == judge(t, rss, RSS)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        judge([0.0, 1.0], [1.0], RSS)
    with pytest.raises(ValueError):
        judge([0.0, 1.0], [1.0, 2.0], RSS, warmup=1.0)
    with pytest.raises(ValueError):
        judge([0.0, 1.0], [1.0, 2.0], RSS, window=0.0)
