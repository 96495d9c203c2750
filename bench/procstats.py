"""CPU seconds and peak memory of the stack's processes while a scenario runs.

A background thread reads /proc every ``interval`` seconds. Each named root
process counts with all its descendants (RVC's workers, Triton's Python stubs):
CPU is the growth of utime+stime over the run (a process born during the run
counts from zero), memory the peak of the summed VmRSS. Linux only; elsewhere
the sampler reports nothing.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, utime+stime ticks) of a live process."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name may hold spaces and parentheses
    return int(fields[1]), int(fields[11]) + int(fields[12])


def _rss_kib(pid: int) -> int:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0  # gone, or a kernel thread


def _tree(roots: dict[str, int]) -> tuple[dict[int, str], dict[int, int]]:
    """Which root each live process descends from, and every process's CPU ticks."""
    parents, ticks = {}, {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                parents[int(entry.name)], ticks[int(entry.name)] = stat
    owner = {pid: name for name, pid in roots.items() if pid in parents}
    for pid in parents:
        chain, cur = [], pid
        while cur not in owner and cur in parents and cur > 1 and len(chain) < 64:
            chain.append(cur)
            cur = parents[cur]
        name = owner.get(cur)
        if name is not None:
            for p in chain:
                owner[p] = name
    return owner, ticks


class ProcessSampler:
    def __init__(self, roots: dict[str, int], interval: float = 0.2) -> None:
        self.roots = dict(roots)
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first: dict[int, int] = {}
        self._last: dict[int, tuple[str, int]] = {}
        self._peak_kib: dict[str, int] = dict.fromkeys(self.roots, 0)
        self.available = PROC.is_dir() and bool(self.roots)

    def _sample(self, initial: bool = False) -> None:
        owner, ticks = _tree(self.roots)
        rss: dict[str, int] = dict.fromkeys(self.roots, 0)
        for pid, name in owner.items():
            if initial:
                self._first[pid] = ticks[pid]
            self._first.setdefault(pid, 0)  # born during the run: all its CPU counts
            self._last[pid] = (name, ticks[pid])
            rss[name] += _rss_kib(pid)
        for name, kib in rss.items():
            self._peak_kib[name] = max(self._peak_kib[name], kib)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "ProcessSampler":
        if self.available:
            self._sample(initial=True)
            self._thread = threading.Thread(target=self._loop, daemon=True, name="procstats")
            self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._sample()

    def result(self) -> dict[str, dict[str, float]]:
        """Per root name: cpu_seconds, peak_rss_mib, processes (seen during the run)."""
        if not self.available:
            return {}
        out = {name: {"cpu_seconds": 0.0, "peak_rss_mib": self._peak_kib[name] / 1024,
                      "processes": 0} for name in self.roots}
        for pid, (name, ticks) in self._last.items():
            out[name]["cpu_seconds"] += (ticks - self._first.get(pid, 0)) / TICKS
            out[name]["processes"] += 1
        return out


# -- resource snapshots (the soak's samples, bench/soak_samples.py) --------


def _rss_and_threads(pid: int) -> tuple[int, int] | None:
    """(VmRSS in KiB, thread count) of a live process; None once it is gone."""
    try:
        text = (PROC / str(pid) / "status").read_text()
    except OSError:
        return None
    rss = threads = 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss, threads


def _open_files(pid: int) -> int | None:
    """Entries of /proc/<pid>/fd (files, sockets, pipes, ...); None if unreadable."""
    try:
        return len(os.listdir(PROC / str(pid) / "fd"))
    except OSError:
        return None


def resources(roots: dict[str, int]) -> dict[str, dict[str, float | int]]:
    """Per root name, summed over the root and its descendants at this moment:
    ``rss_mib`` (VmRSS), ``fds`` (open file descriptors), ``threads`` and
    ``processes`` (how many were counted). A root that is not running counts
    zero processes. Linux only: elsewhere, empty."""
    if not PROC.is_dir():
        return {}
    owner, _ticks = _tree(roots)
    out: dict[str, dict[str, float | int]] = {
        name: {"rss_mib": 0.0, "fds": 0, "threads": 0, "processes": 0} for name in roots}
    for pid, name in owner.items():
        status = _rss_and_threads(pid)
        if status is None:  # exited between the listing and now
            continue
        row = out[name]
        row["rss_mib"] += status[0] / 1024
        row["threads"] += status[1]
        row["fds"] += _open_files(pid) or 0
        row["processes"] += 1
    return out
