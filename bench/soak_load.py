"""The soak's load: ``concurrency`` clients sending the mix of
bench/soak_requests.py, every outcome tallied, while bench/soak_samples.py
samples the stack's processes; run_soak puts them together and gives the
verdict.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Iterator

from bench import stats
from bench.soak_requests import (
    CYCLE,
    GRPC_MAX_TOKENS,
    KINDS,
    REQUEST_TIMEOUT_S,
    Edge,
    Mix,
    Outcome,
)
from bench.soak_samples import Sampler, verdicts
from bench.soak_settings import Settings


class Tally:
    """Outcomes per kind, from every client thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, list[float]] = {kind: [] for kind in KINDS}
        self.codes: dict[str, dict[str, int]] = {kind: {} for kind in KINDS}
        self.examples: list[str] = []  # the first unexpected outcomes, for the report

    def add(self, kind: str, outcome: Outcome, at: float) -> None:
        with self._lock:
            self.seconds[kind].append(outcome.seconds)
            code = outcome.code if outcome.ok else f"!{outcome.code}"  # "!": unexpected
            self.codes[kind][code] = self.codes[kind].get(code, 0) + 1
            if not outcome.ok and len(self.examples) < 20:
                self.examples.append(f"t={at:.0f}s {kind}: {outcome.code} {outcome.detail}"
                                     .strip())

    def summary(self) -> dict[str, dict]:
        with self._lock:
            out = {}
            for kind in KINDS:
                failed = {c[1:]: n for c, n in self.codes[kind].items() if c.startswith("!")}
                total = sum(self.codes[kind].values())
                pct = stats.percentiles(self.seconds[kind]) if self.seconds[kind] else {}
                out[kind] = {"requests": total, "ok": total - sum(failed.values()),
                             "unexpected": failed, "p50_s": pct.get("p50"),
                             "max_s": max(self.seconds[kind], default=None)}
            return out


def drive(edge: Edge, mix: Mix, kinds: Iterator[str], concurrency: int, tally: Tally,
          stop: threading.Event, started: float, deadline: float | None = None) -> None:
    """``concurrency`` clients, each taking the next kind from ``kinds`` as soon as
    its last request is answered, until ``kinds`` ends or ``deadline`` (monotonic)
    passes; a request under way then is finished and counted."""
    lock = threading.Lock()

    def client() -> None:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            with lock:
                kind = next(kinds, None)
            if kind is None:
                return
            at = time.monotonic() - started
            try:
                outcome = KINDS[kind](edge, mix)
            except Exception as exc:  # a connection refused, a timeout: counted, the run goes on
                outcome = Outcome(False, type(exc).__name__, 0.0, str(exc)[:200])
            tally.add(kind, outcome, at)

    threads = [threading.Thread(target=client, name=f"soak-client-{i}", daemon=True)
               for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def run_soak(address: str, roots: Callable[[], dict[str, int]] | None,
             settings: Settings, log: Callable[[str], None] = print) -> dict:
    """The soak itself: the mixed load on the edge at ``address`` (host:port) for
    ``settings.seconds``, the processes of ``roots()`` (name -> pid; None: none)
    sampled throughout. Returns the results the report is written from; their
    ``passed`` is the verdict."""
    edge, mix, tally = Edge(address), Mix.load(), Tally()
    stop = threading.Event()
    if settings.prime:  # every kind once, before the clock starts: counted, not sampled
        primed = time.monotonic()
        drive(edge, mix, iter(KINDS), settings.concurrency, tally, stop, primed)
        log(f"soak: primed every kind in {time.monotonic() - primed:.1f} s")
    started = time.monotonic()
    sampler = Sampler(roots or dict, settings.sample_seconds, started)
    load = threading.Thread(
        target=drive, args=(edge, mix, itertools.cycle(CYCLE), settings.concurrency, tally,
                            stop, started, started + settings.seconds),
        name="soak-load", daemon=True)
    try:
        with sampler:
            load.start()
            next_report = 60.0
            while load.is_alive():
                load.join(timeout=min(5.0, settings.sample_seconds))
                elapsed = time.monotonic() - started
                if elapsed >= next_report and load.is_alive():
                    next_report += 60.0
                    done = sum(r["requests"] for r in tally.summary().values())
                    log(f"soak: {elapsed / 60:.1f} of {settings.seconds / 60:.1f} min, "
                        f"{done} requests, {len(tally.examples)} unexpected")
                if elapsed >= settings.seconds:
                    break  # the samples stop with the load; the clients finish their requests
        load.join()
    finally:
        stop.set()
        load.join(timeout=REQUEST_TIMEOUT_S)
        edge.close()
    wall = time.monotonic() - started
    judged = verdicts(sampler.samples, settings.thresholds) if roots else {}
    requests_by_kind = tally.summary()
    unexpected = sum(sum(r["unexpected"].values()) for r in requests_by_kind.values())
    reasons = [f"{unexpected} unexpected request outcomes"] if unexpected else []
    reasons += [f"{r['process']} {'restarted' if r['new_pid'] else 'not running'} at "
                f"t={r['t']} s" for r in sampler.restarts]
    reasons += [f"{name} {metric}: {v.reason}" for name, per in judged.items()
                for metric, v in per.items() if v.grew]
    missing = [kind for kind, r in requests_by_kind.items() if not r["requests"]]
    return {
        "target": address,
        "settings": {"seconds": settings.seconds, "concurrency": settings.concurrency,
                     "sample_seconds": settings.sample_seconds, "prime": settings.prime,
                     "thresholds": dataclasses.asdict(settings.thresholds),
                     "grpc_max_tokens": GRPC_MAX_TOKENS, "cycle": list(CYCLE)},
        "wall_seconds": round(wall, 1),
        "requests": requests_by_kind,
        "unexpected": unexpected,
        "unexpected_examples": tally.examples,
        "kinds_not_run": missing,
        "samples": sampler.samples,
        "restarts": sampler.restarts,
        "verdicts": {name: {m: v.to_dict() for m, v in per.items()}
                     for name, per in judged.items()},
        "failures": reasons,
        "passed": not reasons,
    }
