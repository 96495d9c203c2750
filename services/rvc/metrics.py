"""The RVC service's own Prometheus metrics, beside the per-RPC ones.

The worker pool's gauges are read when Prometheus scrapes (``PoolCollector``),
so they are never stale and nothing polls. Each finished conversion is
recorded by ``ConversionMetrics``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from services.common.metrics import LATENCY_BUCKETS, REAL_TIME_FACTOR_BUCKETS
from services.rvc.worker_pool_types import PoolStats

log = logging.getLogger(__name__)

# How long a scrape waits for the event loop to read the pool's state.
STATS_TIMEOUT = 2.0

MODES = ("clip", "stream")


class HasStats(Protocol):
    def stats(self) -> PoolStats: ...


class PoolCollector:
    """Queue depth, workers and their counters, read from ``pool.stats()`` at scrape time.

    The pool's state lives on its event loop; scrapes arrive on the metrics
    server's thread, so given ``loop`` the read is made there.
    """

    def __init__(self, pool: HasStats, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._pool = pool
        self._loop = loop

    def _stats(self) -> PoolStats | None:
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running() or _running_loop() is loop:
            return self._pool.stats()
        result: concurrent.futures.Future[PoolStats] = concurrent.futures.Future()

        def read() -> None:
            if result.set_running_or_notify_cancel():
                try:
                    result.set_result(self._pool.stats())
                except Exception as exc:  # handed to the scrape, which logs it
                    result.set_exception(exc)

        try:
            loop.call_soon_threadsafe(read)
        except RuntimeError:  # the loop closed between the check and the call
            return None
        try:
            return result.result(STATS_TIMEOUT)
        except concurrent.futures.TimeoutError:
            result.cancel()
            log.warning("the event loop did not report the pool's state within %g s", STATS_TIMEOUT)
            return None

    def describe(self) -> Iterator[Metric]:
        return iter(_families())

    def collect(self) -> Iterator[Metric]:
        try:
            stats = self._stats()
        except Exception:  # a scrape must never fail the whole /metrics page
            log.warning("could not read the worker pool's state", exc_info=True)
            stats = None
        if stats is None:
            return iter(())  # absent, not zero: alerts on absence stay meaningful
        return iter(_families(stats))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _families(stats: PoolStats | None = None) -> list[Metric]:
    queue = GaugeMetricFamily(
        "rvc_queue_depth", "Conversion jobs waiting for a free worker (the autoscaling metric)."
    )
    configured = GaugeMetricFamily("rvc_workers_configured", "Worker processes this pod runs.")
    alive = GaugeMetricFamily("rvc_workers_alive", "Workers started and able to take a job.")
    busy = GaugeMetricFamily("rvc_workers_busy", "Workers running a job now.")
    restarts = CounterMetricFamily(
        "rvc_worker_restarts_total", "Times a worker process was respawned after it died.",
        labels=("worker",),
    )
    jobs = CounterMetricFamily(
        "rvc_worker_jobs_total", "Jobs a worker finished, with a result or an error.",
        labels=("worker",),
    )
    families: list[Metric] = [queue, configured, alive, busy, restarts, jobs]
    if stats is None:
        return families
    queue.add_metric([], stats.queue_depth)
    configured.add_metric([], stats.configured)
    alive.add_metric([], stats.alive)
    busy.add_metric([], stats.busy)
    for worker in stats.workers:
        restarts.add_metric([str(worker.index)], worker.restarts)
        jobs.add_metric([str(worker.index)], worker.jobs_done)
    return families


class ConversionMetrics:
    """Time and audio of every finished conversion: a whole clip, or a whole stream."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # Without a registry the metrics are recorded nowhere anyone scrapes.
        registry = registry if registry is not None else CollectorRegistry()
        self.seconds = Histogram(
            "rvc_conversion_seconds",
            "Time a conversion took on the worker pool, queueing included: a whole clip, "
            "or the sum over a stream's blocks.",
            ("mode",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.real_time_factor = Histogram(
            "rvc_real_time_factor",
            "Conversion seconds per second of audio converted (below 1 is faster than real time).",
            ("mode",),
            buckets=REAL_TIME_FACTOR_BUCKETS,
            registry=registry,
        )
        self.audio = Counter(
            "rvc_audio_seconds_total", "Seconds of audio converted.", ("mode",), registry=registry
        )
        for mode in MODES:  # every series exists from the start, at zero
            self.seconds.labels(mode)
            self.real_time_factor.labels(mode)
            self.audio.labels(mode)

    def record(self, mode: str, seconds: float, audio_seconds: float) -> None:
        """One conversion of ``audio_seconds`` of input that took ``seconds``."""
        self.seconds.labels(mode).observe(seconds)
        self.audio.labels(mode).inc(audio_seconds)
        if audio_seconds > 0:
            self.real_time_factor.labels(mode).observe(seconds / audio_seconds)


def register(
    registry: CollectorRegistry, pool: HasStats, loop: asyncio.AbstractEventLoop | None = None
) -> ConversionMetrics:
    """Add the pool's gauges and the conversion metrics to ``registry``."""
    registry.register(PoolCollector(pool, loop))
    return ConversionMetrics(registry)
