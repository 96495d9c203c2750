"""The load generator: N requests of one scenario, at most c in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench.samples import Sample


@dataclass(frozen=True)
class LoadResult:
    scenario: str
    concurrency: int
    samples: list[Sample]
    wall_seconds: float  # first request sent -> last reply in


async def run_load(
    scenario: str, call: Callable[[], Awaitable[Sample]], concurrency: int, requests: int
) -> LoadResult:
    """``requests`` calls in all, by ``concurrency`` workers that each take the next
    request as soon as their last one is answered (a closed loop: the offered load
    is exactly ``concurrency`` requests in flight, until the last ones drain)."""
    if concurrency < 1 or requests < 0:
        raise ValueError(f"concurrency {concurrency} and requests {requests}: need c >= 1, n >= 0")
    remaining = iter(range(requests))
    samples: list[Sample] = []

    async def worker() -> None:
        for _ in remaining:  # a shared iterator: each index is taken by one worker
            try:
                samples.append(await call())
            except Exception as exc:  # a scenario's bug must not stop the run
                now = time.perf_counter()
                samples.append(Sample(False, type(exc).__name__, 0.0, 0.0, 0.0, now))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    wall = time.perf_counter() - start
    samples.sort(key=lambda s: s.started)
    return LoadResult(scenario, concurrency, samples, wall)
