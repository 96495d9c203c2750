"""Custom Triton metrics that may be counted from several threads at once.

A ``pb_utils`` metric is not safe to use from two threads: each call writes
the operation into shared memory owned by the metric object and sends the
parent a handle to it, and a second call from another thread frees that
memory while the parent is still reading it. tritonserver 2.51 then crashes
(SIGSEGV in ``Metric::LoadFromSharedMemory``). ``spark_tts`` serves its
requests on a thread pool, so every metric operation goes through one lock.
"""

from __future__ import annotations

import threading


class Counter:
    """A counter metric whose increments are serialised."""

    def __init__(self, metric) -> None:
        self._metric = metric
        self._lock = threading.Lock()

    def increment(self, value: float = 1) -> None:
        with self._lock:
            self._metric.increment(value)
