"""A crash-safe pool of spawned worker processes, each running one job at a time.

All state lives on the event loop; requests are written to the pipes from a
small thread pool and replies and deaths arrive from one reader thread per
process (see worker_child). A dead worker is respawned with back-off.
The pool's config, stats and errors are defined in worker_pool_types.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from services.common import errors
from services.common.errors import Overloaded, ServiceError, Unavailable
from services.common.request_context import current_request_id
from services.rvc import worker_process
from services.rvc import worker_protocol as protocol
from services.rvc.worker_child import (
    EXIT_WAIT,
    Changes,
    Child,
    Job,
    Worker,
    describe_exit,
    pick_worker,
    rebuild_error,
    spawn,
)
from services.rvc.worker_pool_types import (
    PoolConfig,
    PoolStats,
    WorkerFailed,
    WorkerStartError,
    WorkerStats,
)

log = logging.getLogger(__name__)

_BACKOFF_CAP = 10.0  # seconds; the longest wait between respawns of a failing worker

Reply = tuple[dict, np.ndarray | None]


class WorkerPool:
    def __init__(self, config: PoolConfig) -> None:
        self._config = config
        self._context = multiprocessing.get_context("spawn")
        self._workers = [Worker(i, device) for i, device in enumerate(config.devices)]
        self._queue: deque[Job] = deque()
        self._pins: dict[str, int] = {}
        self._changes = Changes()
        self._children: list[Child] = []
        self._start_errors: list[str] = []
        self._next_id = 0
        self._state = "new"  # new → starting → running → stopping → stopped
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sender: ThreadPoolExecutor | None = None
        self._stopped: asyncio.Future | None = None

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        """Spawn every worker and wait until all report ready; raise if any cannot start."""
        if self._state != "new":
            raise RuntimeError("a worker pool starts only once")
        self._loop = asyncio.get_running_loop()
        self._sender = ThreadPoolExecutor(len(self._workers), thread_name_prefix="pool-send")
        self._state = "starting"
        try:
            for worker in self._workers:
                self._spawn(worker)
            await self._changes.wait(lambda: self._state != "starting" or self._start_errors
                                     or all(w.ready for w in self._workers))
            if self._start_errors or self._state != "starting":
                raise WorkerStartError(next(iter(self._start_errors), "stopped while starting"))
        except BaseException:
            await self.stop(grace=0)
            raise
        self._state = "running"
        log.info("worker pool ready: %d workers on %s", len(self._workers), self._config.devices)

    async def stop(self, grace: float = 5.0) -> None:
        """Refuse new jobs, give running ones ``grace`` seconds, then end every process."""
        if self._stopped is None:
            self._stopped = asyncio.ensure_future(self._stop(grace))
        await asyncio.shield(self._stopped)

    async def _stop(self, grace: float) -> None:
        self._state = "stopping"
        for worker in self._workers:
            if worker.respawn is not None:
                worker.respawn.cancel()
        self._fail_queued(lambda job: True, Unavailable("the worker pool is stopping"))
        try:
            await self._changes.wait(lambda: not any(c.job for c in self._children), grace)
        except asyncio.TimeoutError:
            log.warning("jobs still running after %.1f s; ending their workers", grace)
        for child in self._children:
            if child.ready and child.job is None:
                self._write(child, protocol.encode({"kind": "stop"}))
            else:
                child.process.terminate()
        try:
            await self._changes.wait(lambda: not self._children, EXIT_WAIT)
        except asyncio.TimeoutError:
            for child in self._children:
                log.warning("worker pid %d did not exit; killing it", child.pid)
                child.kill()
            try:
                await self._changes.wait(lambda: not self._children, 10 * EXIT_WAIT)
            except asyncio.TimeoutError:  # stuck in the kernel; nothing more we can do
                log.error("worker pids %s outlived SIGKILL", [c.pid for c in self._children])
        if self._sender is not None:
            self._sender.shutdown(wait=True)
        self._state = "stopped"
        self._changed()
        log.info("worker pool stopped")

    @property
    def ready(self) -> bool:
        """True while at least one worker can take a job."""
        return self._state == "running" and any(w.ready for w in self._workers)

    # -- jobs -----------------------------------------------------------------
    async def call(self, op: str, meta: dict, audio: np.ndarray | None = None, *,
                   affinity: str | None = None, timeout: float | None = None,
                   retry: bool = True) -> Reply:
        """Run ``op`` on a worker (the one ``affinity`` is pinned to, if any).

        A job whose worker dies is run once more elsewhere when ``retry`` allows.
        """
        self._check_open(timeout)
        job = self._job(op, meta, audio, affinity=affinity, retry=retry)
        self._queue.append(job)
        self._dispatch()
        if job.child is None and len(self._queue) > self._config.max_queue:
            self._queue.remove(job)
            raise Overloaded(
                f"the worker pool's queue is full ({len(self._queue)} waiting, "
                f"RVC_MAX_QUEUE={self._config.max_queue}); try again later"
            )
        self._changes.notify()
        return await self._await(job, timeout)

    async def broadcast(self, op: str, meta: dict, timeout: float | None = None) -> list[Reply]:
        """Run ``op`` on every live worker (e.g. to preload a voice); the first error is raised."""
        self._check_open(timeout)
        targets = [w.child for w in self._workers if w.ready]
        if not targets:
            raise Unavailable("no worker is running")
        jobs = [self._job(op, meta, None, target=child, retry=False) for child in targets]
        self._queue.extend(jobs)
        self._changed()
        results = await asyncio.gather(*(self._await(j, timeout) for j in jobs),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    def release(self, affinity: str) -> None:
        """Forget which worker ``affinity`` is pinned to (its stream has ended)."""
        self._pins.pop(affinity, None)

    def stats(self) -> PoolStats:
        workers = tuple(WorkerStats(**w.snapshot()) for w in self._workers)
        return PoolStats(configured=len(workers), alive=sum(w.alive for w in workers),
                         busy=sum(w.busy for w in workers), queue_depth=len(self._queue),
                         workers=workers)

    async def wait_until(
        self, predicate: Callable[[PoolStats], bool], timeout: float | None = None
    ) -> PoolStats:
        """Wait, without polling, until ``predicate(self.stats())`` holds; returns those stats."""
        await self._changes.wait(lambda: predicate(self.stats()), timeout)
        return self.stats()

    def _check_open(self, timeout: float | None) -> None:
        if timeout is not None and timeout <= 0:
            raise errors.DeadlineExceeded("no time left to run the job")
        if self._state != "running":
            raise Unavailable(f"the worker pool is not running ({self._state})")
        broken = [w.broken for w in self._workers]
        if all(broken) and not any(w.ready for w in self._workers):
            raise Unavailable(f"no worker is available: {broken[0]}")

    def _job(self, op: str, meta: dict, audio: np.ndarray | None, **kwargs) -> Job:
        self._next_id += 1
        header = {"kind": "job", "id": self._next_id, "op": op, "meta": meta,
                  "request_id": current_request_id()}
        return Job(self._next_id, op, protocol.encode(header, audio),
                   self._loop.create_future(), **kwargs)

    async def _await(self, job: Job, timeout: float | None) -> Reply:
        try:
            # On timeout or cancellation wait_for cancels the future: its reply is then dropped.
            return await asyncio.wait_for(job.future, timeout)
        except asyncio.TimeoutError:
            self._abandon(job, timeout)
            raise errors.DeadlineExceeded(f"{job.op!r} did not finish within {timeout:g} s") from None
        except asyncio.CancelledError:
            self._abandon(job, None)
            raise

    def _abandon(self, job: Job, timeout: float | None) -> None:
        """The caller gave up: drop the job if queued; if it runs, let it finish,
        unless it has itself run for the whole timeout: then its worker may be stuck."""
        if job in self._queue:
            self._queue.remove(job)
            self._changes.notify()
        elif timeout is not None and job.child is not None:
            # Only run time counts, lest a long queue get healthy workers killed.
            delay = job.started + timeout - self._loop.time()
            self._loop.call_later(max(0.0, delay), self._kill_if_running, job)

    def _kill_if_running(self, job: Job) -> None:
        child = job.child
        if child is not None and child.job is job:
            log.warning("worker %d (pid %d) still running %r past its deadline; killing it",
                        child.index, child.pid, job.op)
            child.kill()

    # -- scheduling -----------------------------------------------------------
    def _dispatch(self) -> None:
        for job in list(self._queue):
            worker = pick_worker(job, self._workers, self._pins)
            if worker is not None:
                self._queue.remove(job)
                self._run(worker, job)

    def _run(self, worker: Worker, job: Job) -> None:
        child = worker.child
        child.job, job.child = job, child
        job.attempts += 1
        job.started = self._loop.time()
        self._write(child, job.message)

    def _write(self, child: Child, message: tuple) -> None:
        sending = self._loop.run_in_executor(self._sender, protocol.write, child.conn, message)
        child.sending = sending

        def sent(done: asyncio.Future) -> None:
            if not done.cancelled() and done.exception() is not None and not child.exited.is_set():
                log.warning("could not write to worker pid %d (%s); ending it",
                            child.pid, done.exception())
                child.kill()

        sending.add_done_callback(sent)

    def _fail_queued(self, which: Callable[[Job], bool], error: ServiceError) -> None:
        for job in [j for j in self._queue if which(j)]:
            self._queue.remove(job)
            if not job.future.done():
                job.future.set_exception(error)

    # -- processes ------------------------------------------------------------
    def _spawn(self, worker: Worker) -> None:
        config = self._config
        spec = worker_process.WorkerSpec(
            index=worker.index, device=worker.device, handler=config.handler,
            handler_args=config.handler_args, name=config.name, parent_pid=os.getpid(),
        )
        child = spawn(self._context, spec, self._post, self._on_message, self._on_exit)
        child.start_timer = self._loop.call_later(config.start_timeout, self._start_overdue, child)
        worker.child = child
        self._children.append(child)
        log.info("spawned worker %d on %s (pid %d)", worker.index, worker.device, child.pid)

    def _post(self, callback: Callable, *args: object) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop is closed; the process dies with ours

    def _start_overdue(self, child: Child) -> None:
        if not child.ready and not child.exited.is_set():
            child.start_error = f"not ready within {self._config.start_timeout:g} s"
            child.kill()

    def _on_message(self, child: Child, header: dict, audio: np.ndarray | None) -> None:
        worker = self._workers[child.index]
        if isinstance(header.get("info"), dict):
            worker.info = header["info"]
        kind = header.get("kind")
        if kind == "ready":
            child.ready = True
            child.start_timer.cancel()
            worker.broken = None
        elif kind == "start_failed":
            child.start_error = str(header.get("error"))
        elif kind in ("result", "error") and child.job is not None and child.job.id == header.get("id"):
            job, child.job = child.job, None
            worker.jobs_done += 1
            worker.busy_seconds += float(header.get("seconds", 0.0))
            if kind == "result":
                worker.failures = 0
                if not job.future.done():
                    job.future.set_result((header.get("meta", {}), audio))
            elif not job.future.done():
                job.future.set_exception(self._rebuild(child, job, header))
        else:
            log.error("worker pid %d sent an unexpected %r message; killing it", child.pid, kind)
            child.kill()
        self._changed()

    def _rebuild(self, child: Child, job: Job, header: dict) -> ServiceError:
        error = rebuild_error(header)
        if error is not None:
            return error
        log.error("worker %d (pid %d) failed on %r with %s; its log has the traceback",
                  child.index, child.pid, job.op, header.get("message"))
        return WorkerFailed(f"internal error in worker {child.index} running {job.op!r}")

    def _on_exit(self, child: Child) -> None:
        worker = self._workers[child.index]
        child.exited.set()
        child.start_timer.cancel()
        child.reader.join()  # it posted this as its last act
        if child.sending is None or child.sending.done():
            child.conn.close()
        else:
            child.sending.add_done_callback(lambda _: child.conn.close())
        if worker.child is child:
            worker.child = None
        self._children.remove(child)
        how = describe_exit(child.process.exitcode)
        self._pins = {key: i for key, i in self._pins.items() if i != worker.index}
        self._fail_queued(lambda job: job.target is child, Unavailable(
            f"worker {worker.index} (pid {child.pid}) exited ({how}) before the job ran"))
        if child.job is not None:
            self._job_lost(child, child.job, how)
            child.job = None
        reason = child.start_error or f"exited ({how}) while starting"
        failed = f"worker {worker.index} ({worker.device}) failed to start: {reason}"
        if self._state == "starting":
            self._start_errors.append(failed)
        elif self._state == "running" and child.ready:
            log.warning("worker %d (pid %d) exited (%s)", worker.index, child.pid, how)
            self._respawn_later(worker)
        elif self._state == "running":
            log.error("%s", failed)
            worker.broken = failed
            self._respawn_later(worker)
            if all(w.broken for w in self._workers) and not self.ready:
                self._fail_queued(lambda job: True, Unavailable(f"no worker is available: {failed}"))
        self._changed()

    def _job_lost(self, child: Child, job: Job, how: str) -> None:
        if job.future.done():
            return  # its caller already gave up
        if self._state == "running" and job.retry and job.attempts < 2:
            log.warning("worker %d (pid %d) died running %r (%s); retrying it once",
                        child.index, child.pid, job.op, how)
            job.child = None
            self._queue.appendleft(job)
        elif self._state == "running":
            job.future.set_exception(Unavailable(
                f"worker {child.index} (pid {child.pid}) died while running {job.op!r}: {how}"))
        else:
            job.future.set_exception(Unavailable(f"the worker pool stopped before {job.op!r} finished"))

    def _respawn_later(self, worker: Worker) -> None:
        delay = min(_BACKOFF_CAP, self._config.restart_backoff * 2**worker.failures)
        worker.failures += 1
        log.info("respawning worker %d in %.1f s", worker.index, delay)
        worker.respawn = self._loop.call_later(delay, self._respawn, worker)

    def _respawn(self, worker: Worker) -> None:
        worker.respawn = None
        if self._state != "running":
            return
        worker.restarts += 1
        try:
            self._spawn(worker)
        except OSError as exc:
            worker.broken = f"worker {worker.index} ({worker.device}) could not be spawned: {exc}"
            log.error("%s", worker.broken)
            self._respawn_later(worker)
        self._changed()

    # -- waiting --------------------------------------------------------------
    def _changed(self) -> None:
        if self._state == "running":
            self._dispatch()
        self._changes.notify()
