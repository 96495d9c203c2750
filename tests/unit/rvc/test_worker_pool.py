"""The worker pool with real spawned processes running tests/unit/rvc/pool_handlers."""

from __future__ import annotations

import asyncio
import itertools
import os
import select
import signal
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio

from services.common.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
    to_status,
)
from services.rvc.worker_pool import WorkerPool
from services.rvc.worker_pool_types import PoolConfig, PoolStats, WorkerStartError

HANDLER = "tests.unit.rvc.pool_handlers:make"
WAIT = 20.0  # cap on any wait for the pool; never reached when things work


def config(workers: int = 2, **kwargs) -> PoolConfig:
    kwargs.setdefault("restart_backoff", 0.05)
    handler_args = kwargs.pop("handler_args", {})
    return PoolConfig(HANDLER, handler_args, ("cpu",) * workers, name="test-worker", **kwargs)


def running(pid: int) -> bool:
    """Whether ``pid`` exists at all (a zombie counts: it has not been reaped)."""
    return Path(f"/proc/{pid}").exists()


def pids(stats: PoolStats) -> set[int]:
    return {w.pid for w in stats.workers if w.pid is not None}


def full(stats: PoolStats) -> bool:
    return stats.alive == stats.configured


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def shared_pool():
    pool = WorkerPool(config(2))
    await pool.start()
    yield pool
    await pool.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def pool(shared_pool: WorkerPool):
    """The shared two-worker pool, back at full strength after whatever the last test did."""
    await shared_pool.wait_until(full, WAIT)
    yield shared_pool
    for key in ("a", "b", "victim", "slow"):
        shared_pool.release(key)


async def test_a_minute_of_audio_and_its_meta_round_trip_exactly(pool: WorkerPool) -> None:
    audio = np.random.default_rng(0).standard_normal(60 * 48_000).astype(np.float32)
    meta = {"voice": "alice", "pitch": -2.5, "flags": [True, None, 3], "nested": {"k": (1, "x")}}
    out_meta, out = await pool.call("echo", meta, audio)
    assert out.dtype == np.float32 and out.shape == audio.shape
    assert out.tobytes() == audio.tobytes()
    assert {k: out_meta[k] for k in meta} == meta
    assert out_meta["pid"] in pids(pool.stats())


async def test_no_audio_comes_back_as_none(pool: WorkerPool) -> None:
    meta, audio = await pool.call("echo", {"x": 1})
    assert audio is None and meta["x"] == 1


async def test_two_workers_run_two_jobs_at_once(pool: WorkerPool) -> None:
    job = {"seconds": 0.4}
    started = time.perf_counter()
    await pool.call("sleep", job)
    one = time.perf_counter() - started
    started = time.perf_counter()
    replies = await asyncio.gather(pool.call("sleep", job), pool.call("sleep", job))
    two = time.perf_counter() - started
    assert two < 1.6 * one, (one, two)
    assert len({meta["pid"] for meta, _ in replies}) == 2


async def test_a_handler_service_error_keeps_its_class_and_message(pool: WorkerPool) -> None:
    meta, _ = await pool.call("echo", {}, affinity="a")
    with pytest.raises(InvalidArgument, match="pitch out of range"):
        await pool.call("invalid", {"message": "pitch out of range"}, affinity="a")
    again, _ = await pool.call("echo", {}, affinity="a")
    assert again["pid"] == meta["pid"]


async def test_an_unexpected_handler_error_is_internal_and_keeps_details_private(
    pool: WorkerPool,
) -> None:
    meta, _ = await pool.call("echo", {}, affinity="a")
    with pytest.raises(Exception) as caught:
        await pool.call("fail", {}, affinity="a")
    code, message = to_status(caught.value)
    assert code == grpc.StatusCode.INTERNAL and "private" not in message
    again, _ = await pool.call("echo", {}, affinity="a")
    assert again["pid"] == meta["pid"]


async def test_only_plain_data_crosses_the_pipe(pool: WorkerPool) -> None:
    with pytest.raises(TypeError, match="plain data"):
        await pool.call("echo", {"x": np.float32(1)})
    with pytest.raises(Exception) as caught:
        await pool.call("numpy_meta", {})
    assert to_status(caught.value)[0] == grpc.StatusCode.INTERNAL


async def test_a_job_whose_worker_dies_is_retried_on_another(pool: WorkerPool) -> None:
    before = pool.stats()
    victim, _ = await pool.call("echo", {}, affinity="victim")
    meta, _ = await pool.call("crash", {"crash_if_pid": victim["pid"]}, affinity="victim")
    assert meta["pid"] != victim["pid"]
    after = await pool.wait_until(lambda s: full(s) and victim["pid"] not in pids(s), WAIT)
    assert sum(w.restarts for w in after.workers) == sum(w.restarts for w in before.workers) + 1
    assert not running(victim["pid"])


async def test_without_retry_a_death_is_unavailable_naming_the_worker(pool: WorkerPool) -> None:
    victim, _ = await pool.call("echo", {}, affinity="victim")
    index = next(w.index for w in pool.stats().workers if w.pid == victim["pid"])
    with pytest.raises(Unavailable, match=rf"worker {index} \(pid {victim['pid']}\).*SIGKILL"):
        await pool.call("crash", {}, affinity="victim", retry=False)
    await pool.wait_until(lambda s: full(s) and victim["pid"] not in pids(s), WAIT)
    assert not running(victim["pid"])


async def test_a_worker_killed_while_idle_is_respawned(pool: WorkerPool) -> None:
    stats = pool.stats()
    victim = stats.workers[1]
    os.kill(victim.pid, signal.SIGKILL)
    after = await pool.wait_until(lambda s: full(s) and s.workers[1].pid != victim.pid, WAIT)
    assert after.workers[1].restarts == victim.restarts + 1
    assert not running(victim.pid)
    meta, _ = await pool.call("echo", {}, affinity="a")
    assert meta["pid"] in pids(after)


async def test_same_affinity_same_worker_even_when_it_is_busy(pool: WorkerPool) -> None:
    first = [(await pool.call("echo", {}, affinity="a"))[0]["pid"] for _ in range(3)]
    other = (await pool.call("echo", {}, affinity="b"))[0]["pid"]
    assert len(set(first)) == 1 and other != first[0]
    busy = asyncio.ensure_future(pool.call("sleep", {"seconds": 0.3}, affinity="a"))
    await pool.wait_until(lambda s: s.busy == 1, WAIT)
    waiting = await pool.call("echo", {}, affinity="a")  # waits although worker b is idle
    assert waiting[0]["pid"] == first[0] == (await busy)[0]["pid"]
    pool.release("a")
    assert pool.stats().queue_depth == 0


async def test_a_broadcast_reaches_every_worker(pool: WorkerPool) -> None:
    replies = await pool.broadcast("echo", {"preload": "alice"})
    assert {meta["pid"] for meta, _ in replies} == pids(pool.stats())
    assert all(meta["preload"] == "alice" for meta, _ in replies)
    with pytest.raises(InvalidArgument):
        await pool.broadcast("invalid", {"message": "no such voice"})


async def test_a_timeout_is_deadline_exceeded_and_the_worker_is_replaced(pool: WorkerPool) -> None:
    slow, _ = await pool.call("echo", {}, affinity="slow")
    with pytest.raises(DeadlineExceeded):
        await pool.call("sleep", {"seconds": 60}, affinity="slow", timeout=0.3)
    await pool.wait_until(lambda s: full(s) and slow["pid"] not in pids(s), WAIT)
    assert not running(slow["pid"])


async def test_a_cancelled_running_job_finishes_and_the_worker_is_kept(pool: WorkerPool) -> None:
    task = asyncio.ensure_future(pool.call("sleep", {"seconds": 0.2}, affinity="a"))
    stats = await pool.wait_until(lambda s: s.busy == 1, WAIT)
    task.cancel()
    await pool.wait_until(lambda s: s.busy == 0, WAIT)
    assert pids(pool.stats()) == pids(stats)
    assert sum(w.restarts for w in pool.stats().workers) == sum(w.restarts for w in stats.workers)


async def test_stats_report_jobs_and_the_handlers_info(pool: WorkerPool) -> None:
    before = pool.stats()
    meta, _ = await pool.call("echo", {})
    after = pool.stats()
    worker = next(w for w in after.workers if w.pid == meta["pid"])
    previous = next(w for w in before.workers if w.index == worker.index)
    assert worker.jobs_done == previous.jobs_done + 1 and worker.mean_seconds >= 0
    assert worker.info == {"device": "cpu", "jobs": worker.info["jobs"]} and worker.info["jobs"] >= 1
    assert after.configured == 2 and pool.ready


async def test_a_full_queue_refuses_at_once() -> None:
    pool = WorkerPool(config(1, max_queue=2))
    await pool.start()
    try:
        running_job = asyncio.ensure_future(pool.call("sleep", {"seconds": 0.5}))
        await pool.wait_until(lambda s: s.busy == 1, WAIT)
        queued = [asyncio.ensure_future(pool.call("echo", {"n": n})) for n in range(2)]
        await pool.wait_until(lambda s: s.queue_depth == 2, WAIT)
        with pytest.raises(ResourceExhausted, match=r"queue is full \(2 waiting, RVC_MAX_QUEUE="):
            await asyncio.wait_for(pool.call("echo", {}), 0.1)
        # A cancelled queued job leaves the queue at once.
        queued[1].cancel()
        await pool.wait_until(lambda s: s.queue_depth == 1, WAIT)
        await asyncio.wait_for(asyncio.gather(running_job, queued[0]), WAIT)
    finally:
        await pool.stop()


async def test_stop_leaves_no_process_and_is_idempotent() -> None:
    pool = WorkerPool(config(2))
    await pool.start()
    children = pids(pool.stats())
    assert len(children) == 2 and all(running(pid) for pid in children)
    busy = asyncio.ensure_future(pool.call("sleep", {"seconds": 30}))
    await pool.wait_until(lambda s: s.busy == 1, WAIT)
    await asyncio.wait_for(pool.stop(grace=0.2), WAIT)
    await pool.stop()
    assert not any(running(pid) for pid in children)
    assert not pool.ready
    with pytest.raises(Unavailable):
        await busy
    with pytest.raises(Unavailable, match="not running"):
        await pool.call("echo", {})


async def test_a_factory_error_fails_start_with_its_message() -> None:
    pool = WorkerPool(config(2, handler_args={"fail": "no voice model in /models"}))
    with pytest.raises(WorkerStartError, match="no voice model in /models"):
        await asyncio.wait_for(pool.start(), WAIT)
    assert not pool.ready
    assert pool.stats().alive == 0


async def test_a_worker_slow_to_start_times_out() -> None:
    pool = WorkerPool(config(1, start_timeout=0.5, handler_args={"start_delay": 30}))
    with pytest.raises(WorkerStartError, match="not ready within"):
        await asyncio.wait_for(pool.start(), WAIT)


async def test_a_worker_that_cannot_restart_makes_the_pool_unavailable_until_it_can(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "broken"
    pool = WorkerPool(config(1, handler_args={"fail_if_exists": str(marker)}))
    await pool.start()
    try:
        victim = pool.stats().workers[0].pid
        marker.touch()
        os.kill(victim, signal.SIGKILL)
        await pool.wait_until(lambda s: s.workers[0].restarts >= 2 and not s.alive, WAIT)
        assert not pool.ready
        with pytest.raises(Unavailable, match="no worker is available.*broken exists"):
            await pool.call("echo", {})
        marker.unlink()
        await pool.wait_until(full, WAIT)
        assert pool.ready
        assert (await pool.call("echo", {"back": True}))[0]["back"] is True
    finally:
        await pool.stop()


async def test_workers_ignore_ctrl_c(pool: WorkerPool) -> None:
    before = pool.stats()
    for worker in before.workers:
        os.kill(worker.pid, signal.SIGINT)
    replies = await pool.broadcast("echo", {})
    assert {meta["pid"] for meta, _ in replies} == pids(before)


async def exited(pid: int, timeout: float) -> bool:
    """Wait for any process (not only our child) to exit, via a pidfd."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = await asyncio.to_thread(select.select, [fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)


async def test_workers_die_with_the_service() -> None:
    # Busy workers are not reading their pipe, so only the kernel's signal ends them.
    script = (
        "import asyncio\n"
        "from services.rvc.worker_pool import WorkerPool\n"
        "from services.rvc.worker_pool_types import PoolConfig\n"
        "async def main():\n"
        f"    pool = WorkerPool(PoolConfig({HANDLER!r}, {{}}, ('cpu', 'cpu')))\n"
        "    await pool.start()\n"
        "    jobs = [asyncio.ensure_future(pool.call('sleep', {'seconds': 60})) for _ in 'ab']\n"
        "    await pool.wait_until(lambda s: s.busy == 2)\n"
        "    print(*(w.pid for w in pool.stats().workers), flush=True)\n"
        "    await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    service = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parents[3],
    )
    workers: list[int] = []
    gone: list[bool] = []
    try:
        line = await asyncio.wait_for(service.stdout.readline(), WAIT)
        workers = [int(pid) for pid in line.split()]
        service.kill()
        gone = [await exited(pid, WAIT) for pid in workers]
    finally:
        for pid, dead in itertools.zip_longest(workers, gone):
            if not dead:  # do not leave a failed test's workers behind
                os.kill(pid, signal.SIGKILL)
        if service.returncode is None:
            service.kill()
        # Not before the checks: the workers share its stdout, which communicate() drains.
        await service.communicate()
    assert len(workers) == 2 and all(gone)
