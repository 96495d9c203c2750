"""The soak's samples: each stack process's RSS, open files and threads over
time (procstats.resources, summed with its descendants), restarts noted, and
bench/trend.py's verdict on every series.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from bench import procstats
from bench.soak_settings import METRICS, Thresholds
from bench.trend import Verdict, judge


class Sampler:
    """procstats.resources every ``interval`` seconds, in a thread. ``roots`` is
    asked each time, so a restarted process is followed (and the restart noted)."""

    def __init__(self, roots: Callable[[], dict[str, int]], interval: float,
                 started: float) -> None:
        self.roots, self.interval, self.started = roots, interval, started
        self.samples: list[dict] = []
        self.restarts: list[dict] = []
        self._pids: dict[str, int] = {}
        self._down: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-sampler", daemon=True)

    def sample(self) -> None:
        roots = self.roots()
        at = time.monotonic() - self.started
        for name, pid in roots.items():
            old = self._pids.get(name)
            if old is not None and old != pid:
                self.restarts.append({"t": round(at, 1), "process": name, "old_pid": old,
                                      "new_pid": pid})
        self._pids.update(roots)
        procs = procstats.resources(roots)
        for name, row in procs.items():  # not running (yet): noted once per outage
            if row["processes"] == 0 and name not in self._down:
                self._down.add(name)
                self.restarts.append({"t": round(at, 1), "process": name, "old_pid": roots[name],
                                      "new_pid": None})
            elif row["processes"]:
                self._down.discard(name)
        self.samples.append({"t": round(at, 2), "procs": {
            name: {**row, "rss_mib": round(row["rss_mib"], 2)} for name, row in procs.items()}})

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()


def verdicts(samples: list[dict], thresholds: Thresholds) -> dict[str, dict[str, Verdict]]:
    """Per process and metric, bench/trend.py's verdict on the samples."""
    names = sorted({name for s in samples for name in s["procs"]})
    out: dict[str, dict[str, Verdict]] = {}
    for name in names:
        rows = [(s["t"], s["procs"][name]) for s in samples if name in s["procs"]]
        times = [t for t, _row in rows]
        out[name] = {metric: judge(times, [row[metric] for _t, row in rows],
                                   thresholds.limit(metric), thresholds.warmup,
                                   thresholds.window)
                     for metric in METRICS}
    return out
