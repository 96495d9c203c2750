"""The worker pool's public data: its configuration, its stats and its errors.

Kept apart from worker_pool (the pool itself) so that code which only builds
a config or reads stats, such as the metrics, need not import the pool's
process machinery.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.errors import ServiceError, Unavailable


@dataclass(frozen=True)
class PoolConfig:
    handler: str  # "package.module:factory", importable in the child
    handler_args: dict  # picklable keyword arguments for the factory
    devices: tuple[str, ...]  # one entry per worker
    max_queue: int = 16  # jobs waiting beyond those running; more are refused
    start_timeout: float = 120.0
    restart_backoff: float = 0.5  # first respawn delay, doubled per consecutive failure
    name: str = "worker"  # process names are "<name>-<index>"; also the workers' log service

    def __post_init__(self) -> None:
        if not self.devices:
            raise ValueError("a worker pool needs at least one device")
        if self.max_queue < 0 or self.start_timeout <= 0 or self.restart_backoff < 0:
            raise ValueError(f"bad pool limits in {self}")


@dataclass(frozen=True)
class WorkerStats:
    index: int
    pid: int | None
    device: str
    alive: bool
    busy: bool
    jobs_done: int
    mean_seconds: float
    restarts: int
    info: dict


@dataclass(frozen=True)
class PoolStats:
    configured: int
    alive: int
    busy: int
    queue_depth: int
    workers: tuple[WorkerStats, ...]


class WorkerStartError(Unavailable):
    """A worker process could not load its handler."""


class WorkerFailed(ServiceError):
    """A handler failed unexpectedly; the traceback is in the worker's log (INTERNAL)."""
