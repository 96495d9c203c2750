"""A stand-in for the RVC worker pool: converts by resampling, records what it was asked."""

import asyncio

import soxr

from services.common.errors import ResourceExhausted
from services.rvc.worker_pool_types import PoolStats, WorkerStats

VOICE_RATE = 40_000


class FakePool:
    """Converts by resampling to the voice's rate; records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict, str | None]] = []
        self.released: list[str] = []
        self.full = False
        self.gate: asyncio.Event | None = None  # when set up, conversions wait for it

    ready = True

    async def call(self, op, meta, audio=None, *, affinity=None, timeout=None, retry=True):
        if self.full:
            raise ResourceExhausted("RVC queue is full (2 waiting)")
        self.calls.append((op, meta, affinity))
        if self.gate is not None:
            await self.gate.wait()
        rate = meta["params"]["resample_sr"] or VOICE_RATE
        return {"sample_rate": rate}, soxr.resample(audio, meta["sample_rate"], rate)

    async def broadcast(self, op, meta, timeout=None):
        self.calls.append((op, meta, None))
        return [({"name": meta["model"]}, None)]

    def release(self, affinity):
        self.released.append(affinity)

    def stats(self):
        worker = WorkerStats(0, 123, "cpu", True, False, 5, 0.25, 1, {"loaded": ["alice"]})
        return PoolStats(3, 1, 0, 0, (worker,))
