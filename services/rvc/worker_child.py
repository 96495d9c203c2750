"""The parent's view of a worker: its slot, the process filling it, and the jobs.

``spawn`` starts a process and a reader thread that waits on its pipe and its
sentinel together, so each reply and the process's death reach the event loop
at once, in order, with no polling.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_any
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess

import numpy as np

from services.common import errors
from services.common.errors import ServiceError
from services.rvc import worker_process
from services.rvc import worker_protocol as protocol

log = logging.getLogger(__name__)

EXIT_WAIT = 2.0  # seconds a process gets to exit once asked (or once its pipe closed)

# Runs a callback on the event loop; safe from any thread.
Post = Callable[..., None]


@dataclass(eq=False)
class Job:
    id: int
    op: str
    message: tuple[bytes, np.ndarray | None]  # encoded once, sent again on retry
    future: asyncio.Future
    affinity: str | None = None
    retry: bool = True
    target: Child | None = None  # broadcast jobs run on this one process only
    child: Child | None = None  # the process running it now
    attempts: int = 0
    started: float = 0.0  # loop time it was last sent to a worker


@dataclass(eq=False)
class Child:
    """One spawned process; a worker slot is filled by a new one after each death."""

    index: int
    process: BaseProcess
    conn: Connection
    reader: threading.Thread | None = None
    start_timer: asyncio.TimerHandle | None = None
    ready: bool = False
    job: Job | None = None
    sending: asyncio.Future | None = None
    start_error: str | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        # Once reaped the pid may be reused; multiprocessing signals only unreaped children.
        if not self.exited.is_set():
            self.process.kill()


@dataclass(eq=False)
class Worker:
    """A slot of the pool, one per configured device, and its counters."""

    index: int
    device: str
    child: Child | None = None
    jobs_done: int = 0
    busy_seconds: float = 0.0
    restarts: int = 0
    failures: int = 0  # consecutive deaths; sets the respawn back-off
    info: dict = field(default_factory=dict)
    broken: str | None = None  # why the last start failed, until one succeeds
    respawn: asyncio.TimerHandle | None = None

    @property
    def ready(self) -> bool:
        return self.child is not None and self.child.ready and not self.child.exited.is_set()

    @property
    def idle(self) -> bool:
        return self.ready and self.child.job is None

    def snapshot(self) -> dict:
        """The fields of the pool's WorkerStats."""
        return dict(
            index=self.index, pid=self.child.pid if self.child else None, device=self.device,
            alive=self.ready, busy=self.child is not None and self.child.job is not None,
            jobs_done=self.jobs_done, restarts=self.restarts, info=dict(self.info),
            mean_seconds=self.busy_seconds / self.jobs_done if self.jobs_done else 0.0,
        )


def spawn(
    context: SpawnContext,
    spec: worker_process.WorkerSpec,
    post: Post,
    on_message: Callable[[Child, dict, np.ndarray | None], None],
    on_exit: Callable[[Child], None],
) -> Child:
    """Start a worker process and its reader thread."""
    ours, theirs = context.Pipe()
    # daemon: should the service exit without stop(), multiprocessing ends the
    # workers at exit rather than waiting on them forever.
    process = context.Process(target=worker_process.main, args=(spec, theirs),
                              name=f"{spec.name}-{spec.index}", daemon=True)
    # A blocked signal stays blocked across exec, so Ctrl-C cannot reach the
    # child before it has chosen to ignore it.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        process.start()
    except BaseException:
        ours.close()
        raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        theirs.close()  # our copy of their end would hide their death from the pipe
    child = Child(spec.index, process, ours)
    child.reader = threading.Thread(target=_read, args=(child, post, on_message, on_exit),
                                    name=f"{spec.name}-{spec.index}-reader", daemon=True)
    child.reader.start()
    return child


def _read(child: Child, post: Post, on_message: Callable, on_exit: Callable) -> None:
    """Reader thread: post each message, then the process's exit, to the loop."""
    conn, process = child.conn, child.process
    try:
        # Messages written before a death are still read: the pipe drains before EOF.
        while conn in wait_any([conn, process.sentinel]):
            try:
                header, audio = protocol.receive(conn)
            except (EOFError, OSError):
                break
            except protocol.ProtocolError:
                log.exception("worker pid %d sent garbage; killing it", child.pid)
                process.kill()
                break
            post(on_message, child, header, audio)
    finally:
        # The sentinel, not the pipe, says the process is gone: one could close
        # its pipe and live on.
        if not wait_any([process.sentinel], EXIT_WAIT):
            process.kill()
        process.join()
        post(on_exit, child)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def pick_worker(job: Job, workers: list[Worker], pins: dict[str, int]) -> Worker | None:
    """The idle worker to run ``job`` now, if any; pins a new affinity key to it."""
    if job.target is not None:
        worker = workers[job.target.index]
        return worker if worker.child is job.target and worker.idle else None
    if job.affinity is not None and job.affinity in pins:
        worker = workers[pins[job.affinity]]
        return worker if worker.idle else None
    idle = [w for w in workers if w.idle]
    if not idle:
        return None
    # Prefer workers few streams are pinned to, so pinned streams rarely wait.
    load = {w.index: 0 for w in idle}
    for index in pins.values():
        if index in load:
            load[index] += 1
    worker = min(idle, key=lambda w: (load[w.index], w.index))
    if job.affinity is not None:
        pins[job.affinity] = worker.index
    return worker


def rebuild_error(header: dict) -> ServiceError | None:
    """A handler's ServiceError as the nearest class in the errors module; None if not one."""
    for name in header.get("errors", ()):
        cls = getattr(errors, name, None)
        if isinstance(cls, type) and issubclass(cls, ServiceError):
            return cls(str(header.get("message", "")))
    return None


class Changes:
    """Lets coroutines wait for a condition on the pool's state without polling."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future] = set()

    def notify(self) -> None:
        """Something changed: every waiter checks its condition again."""
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, condition: Callable[[], object], timeout: float | None = None) -> None:
        """Return once ``condition()`` holds; asyncio.TimeoutError after ``timeout`` seconds."""
        await asyncio.wait_for(self._until(condition), timeout)

    async def _until(self, condition: Callable[[], object]) -> None:
        while not condition():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.add(waiter)
            try:
                await waiter
            finally:
                self._waiters.discard(waiter)
