"""How many calls one service instance runs at once, and how many may wait.

A service instance takes at most ``max_concurrent`` working calls at a time.
Up to ``max_queue`` more wait, first come first served, for one of them to
finish (no longer than their own deadline); any call beyond that is refused at
once with RESOURCE_EXHAUSTED, naming the limit and saying when to try again,
instead of piling up until every caller times out. Cheap calls (health,
reflection, status and listings) are never held back: an operator must be able
to see why an instance is busy while it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from services.common.errors import DeadlineExceeded, Overloaded

# Trailing metadata that tells a refused caller how many seconds to wait; the
# edge passes it to REST clients as the Retry-After header.
RETRY_AFTER_HEADER = "retry-after"

# Methods that only report: never queued, never refused.
_UNLIMITED_SERVICES = {
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}
_UNLIMITED_PREFIXES = ("Get", "List")


def is_limited(service: str, method: str) -> bool:
    """Whether a call of ``service``/``method`` counts against the instance's limits."""
    return service not in _UNLIMITED_SERVICES and not method.startswith(_UNLIMITED_PREFIXES)


@dataclass(frozen=True)
class Limits:
    max_concurrent: int  # 0: no limit
    max_queue: int
    retry_after_seconds: float
    # How the settings are spelled where an operator changes them, for messages.
    concurrent_name: str = "max_concurrent_streams"
    queue_name: str = "max_queue"


class Admission:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.running = 0
        self._waiters: deque[asyncio.Future] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @contextlib.asynccontextmanager
    async def slot(self, timeout: float | None) -> AsyncIterator[None]:
        """Hold one slot for the body; waits at most ``timeout`` seconds for it."""
        await self._acquire(timeout)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, timeout: float | None) -> None:
        limits = self.limits
        if limits.max_concurrent <= 0:
            self.running += 1
            return
        if self.running < limits.max_concurrent and not self._waiters:
            self.running += 1
            return
        if len(self._waiters) >= limits.max_queue:
            retry_after = max(1, math.ceil(limits.retry_after_seconds))
            raise Overloaded(
                f"this instance is at its limit: {self.running} calls running "
                f"({limits.concurrent_name}={limits.max_concurrent}) and {len(self._waiters)} "
                f"waiting ({limits.queue_name}={limits.max_queue}); retry after {retry_after} s",
                retry_after,
            )
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            # The slot is handed over by _release: running does not drop in between.
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a slot just as the wait ended: pass it on
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise DeadlineExceeded(
                f"the deadline passed while waiting for a free slot "
                f"({limits.concurrent_name}={limits.max_concurrent} calls were running)"
            ) from None

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next caller
                return
        self.running -= 1
