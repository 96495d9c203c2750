"""Faults under load: a process of the stack is killed (-9) or stalled (SIGSTOP)
while concurrent requests run through the gateway.

What every scenario holds the stack to:

* every request ends: it succeeds, or fails with a code a client can act on,
  UNAVAILABLE (retry) or, only where a dependency stalls, DEADLINE_EXCEEDED; never
  later than its deadline (plus a little slack). CANCELLED is not accepted: nobody
  cancels these calls, so it could only be a server passing on its own internal
  cancellation. INTERNAL or UNKNOWN would be a bug;
* the fault shows within a bound, as a failed request or as health (the killed
  service's own grpc.health.v1, and GET /v1/health through Envoy, which reports each
  dependency of the gateway);
* the stack serves again within a bound: the supervisor restarts a dead process as
  Kubernetes would; nothing else is restarted (the other processes keep their pids);
* a killed process takes its whole tree with it (Triton's backend stubs, the RVC
  workers), and once the stack stops nothing is left: no process, no shared-memory
  segment of this stack, nothing in its TMPDIR.

Measured times are printed (pytest -s shows them).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from voice.v1 import rvc_pb2, rvc_pb2_grpc, tts_pb2, tts_pb2_grpc

from services.stack import components
from services.stack.config import StackConfig
from services.stack.supervisor import Supervisor
from tests.integration.faults_load import (
    SLACK,
    HealthWatch,
    Load,
    Outcome,
    edge_health,
    grpc_health,
    http_status,
)
from tests.integration.stacks import REPO, reuse_models, stack_config
from tests.processes import descendants, running, wait_until_gone

pytestmark = pytest.mark.integration

WORKERS = 2  # RVC workers: a job whose worker dies can run again on the other one
DEADLINE = 15.0  # of each request; one takes 0.5-3 s under this load, more on a busy machine
STALL_DEADLINE = 6.0  # of each request while Triton is stalled for longer than that
LOAD = {"synthesize": (2, DEADLINE), "convert": (1, DEADLINE)}
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED
# How soon a fault must show, and how soon the stack must serve again. Generous for a
# loaded 2-CPU machine (a Python service imports torch for seconds; Triton loads four
# Python models: 30 s on two idle CPUs, 110 s measured with other stacks running
# beside), yet far below anything that would mean "stuck".
SURFACE_BOUND = 10.0
SERVICE_RECOVERY_BOUND = 90.0
TRITON_RECOVERY_BOUND = 150.0
# From Triton ready again to the TTS service serving: a readiness poll (2 s) and a
# reconnect (back-off capped at 1 s), with room for a loaded machine.
TRITON_TO_TTS_BOUND = 8.0
GONE_BOUND = 10.0  # a killed process's tree, and its shared memory, are gone by then
IDLE_BOUND = 20.0  # work abandoned by callers has ended inside the services by then


@dataclasses.dataclass
class Outage:
    """A fault whose recovery a later test checks, with the watch and load that see it."""

    watch: HealthWatch
    load: Load
    killed: float | None = None
    tree: set[int] = dataclasses.field(default_factory=set)
    before: dict[int, str] = dataclasses.field(default_factory=dict)
    starts: int = 0


@dataclasses.dataclass
class FaultStack:
    config: StackConfig
    supervisor: Supervisor
    tmpdir: Path
    shm_pattern: str
    watch_errors: list[BaseException]
    _stop_watching: Callable[[], None]
    # Every process of a tree that a fault ended: none may outlive the stack.
    ended: set[int] = dataclasses.field(default_factory=set)
    stopped: bool = False
    triton_outage: Outage | None = None

    @property
    def gateway(self) -> str:
        return f"127.0.0.1:{self.config.gateway_port}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.config.api_port}"

    def child(self, name: str):
        return next(c for c in self.supervisor.children if c.spec.name == name)

    def pid(self, name: str) -> int:
        return self.child(name).process.pid

    def processes(self) -> dict[int, str]:
        """Every process of the stack now, the supervised ones and their descendants,
        each with the name of the supervised process whose tree it is in."""
        found = {}
        for child in self.supervisor.children:
            if child.alive:
                for pid in (child.process.pid, *descendants(child.process.pid)):
                    found[pid] = child.spec.name
        return found

    def workers(self) -> dict[int, int]:
        """RVC worker index -> pid, from the process names the pool gives them."""
        found = {}
        for pid in descendants(self.pid("rvc")):
            try:
                name = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if name.startswith("rvc-worker-"):
                found[int(name.rsplit("-", 1)[1])] = pid
        return found

    def rvc_status(self) -> rvc_pb2.RvcStatus | None:
        with grpc.insecure_channel(f"127.0.0.1:{self.config.rvc_port}") as channel:
            try:
                return rvc_pb2_grpc.VoiceConversionStub(channel).GetStatus(
                    rvc_pb2.GetRvcStatusRequest(), timeout=2)
            except grpc.RpcError:
                return None

    def tts_status(self) -> tts_pb2.TtsStatus | None:
        with grpc.insecure_channel(f"127.0.0.1:{self.config.tts_port}") as channel:
            try:
                return tts_pb2_grpc.TextToSpeechStub(channel).GetStatus(
                    tts_pb2.GetTtsStatusRequest(), timeout=2)
            except grpc.RpcError:
                return None

    def healthy(self) -> bool:
        status = self.rvc_status()
        return (edge_health(self.api) == "SERVING" and status is not None
                and status.workers_alive == WORKERS)

    def idle(self) -> bool:
        """No work left inside the services: nothing synthesising, converting or queued."""
        tts, rvc = self.tts_status(), self.rvc_status()
        return (tts is not None and tts.in_flight == 0 and rvc is not None
                and rvc.workers_busy == 0 and rvc.queue_depth == 0)

    def watch(self) -> HealthWatch:
        config = self.config
        return HealthWatch({
            "edge": lambda: edge_health(self.api),
            "gateway": lambda: grpc_health(self.gateway),
            "tts": lambda: grpc_health(f"127.0.0.1:{config.tts_port}"),
            "rvc": lambda: grpc_health(f"127.0.0.1:{config.rvc_port}"),
            "triton": lambda: http_status(
                f"http://127.0.0.1:{config.triton_http_port}/v2/health/ready"),
        })

    def shutdown(self) -> None:
        """Stop the stack, then its watcher: the kernel ties a child's parent-death
        signal to the thread that started it, so children the watcher restarted would
        be killed as it ends, before they were asked to stop."""
        if not self.stopped:
            self.stopped = True
            if self.triton_outage is not None:  # left open by a failed test
                self.triton_outage.load.stop()
                self.triton_outage.watch.__exit__(None, None, None)
            self.supervisor.stop(timeout=30)
            self._stop_watching()


@pytest.fixture(scope="module")
def faults(tmp_path_factory) -> FaultStack:
    run_dir = tmp_path_factory.mktemp("faults")
    reuse_models(tmp_path_factory, run_dir)
    tmpdir = run_dir / "tmp"
    tmpdir.mkdir()
    config = stack_config(run_dir)
    specs = components.build(config, REPO)
    for spec in specs:
        spec.env["TMPDIR"] = str(tmpdir)
        if spec.name == "rvc":
            spec.env["RVC_WORKERS"] = str(WORKERS)
    triton = next(spec for spec in specs if spec.name == "triton")
    supervisor = Supervisor(specs, run_dir / "logs")
    stop = threading.Event()
    errors: list[BaseException] = []

    def watch() -> None:
        try:
            supervisor.watch(stop)
        except BaseException as exc:  # reported by the tests, which would wait in vain
            errors.append(exc)

    watcher = threading.Thread(target=watch, name="supervisor-watch", daemon=True)

    def stop_watching() -> None:
        stop.set()
        if watcher.is_alive():
            watcher.join(timeout=30)

    stack = FaultStack(config, supervisor, tmpdir, triton.leftovers[0], errors, stop_watching)
    try:
        started = time.monotonic()
        supervisor.start(timeout=240)
        print(f"\nfault stack up in {time.monotonic() - started:.1f} s")
        watcher.start()
        yield stack
    finally:
        stack.shutdown()


def wait_for(condition: Callable[[], object], timeout: float, interval: float = 0.1) -> float | None:
    """Poll ``condition`` until it holds: when it first did, or None at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return time.monotonic()
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def serving(status: str) -> bool:
    return status == "SERVING"


def refused(status: str) -> bool:
    """A health answer that says "not serving", or a connection refused; not a timeout."""
    return status == "NOT_SERVING" or "UNAVAILABLE" in status


def summary(outcomes: list[Outcome], since: float) -> str:
    counts: dict[tuple[str, str], int] = {}
    for o in outcomes:
        key = (o.kind, o.code.name)
        counts[key] = counts.get(key, 0) + 1
    rows = [f"{kind} {code}: {n}" for (kind, code), n in sorted(counts.items())]
    failures = [f"  {o.kind} +{o.started - since:.1f}..+{o.ended - since:.1f} s {o.code.name}: "
                f"{o.detail[:100]}" for o in outcomes if not o.ok]
    return "\n".join([", ".join(rows), *failures[:12]])


def check_requests(load: Load, since: float, allowed: set[grpc.StatusCode],
                   unaffected: frozenset[str] = frozenset()) -> list[Outcome]:
    """Every request ended in time, with an allowed code; requests of the ``unaffected``
    kinds all succeeded. Returns the outcomes."""
    stuck = load.stop()
    outcomes = load.snapshot()
    print(summary(outcomes, since))
    assert stuck == [], f"requests still running past their deadline: {stuck}"
    late = [o for o in outcomes if o.seconds > o.deadline + SLACK]
    assert late == [], f"requests that outlived their deadline: {late}"
    wrong = [o for o in outcomes if not o.ok and o.code not in allowed]
    assert wrong == [], f"failures other than {sorted(c.name for c in allowed)}: {wrong}"
    hurt = [o for o in outcomes if not o.ok and o.kind in unaffected]
    assert hurt == [], f"requests that do not need the failed process failed: {hurt}"
    return outcomes


def check_survivors(before: dict[int, str], ended: set[int], beside: str = "") -> None:
    """Processes outside the fault's tree were not restarted: the same pids still run.
    ``beside`` names a process restarting meanwhile for another fault: its tree is
    not this fault's (and runs short-lived helpers while it starts)."""
    restarted = sorted(f"{pid} ({name})" for pid, name in before.items()
                       if pid not in ended and name != beside and not running(pid))
    assert restarted == [], f"processes the fault did not touch are gone: {restarted}"


def check_tree_gone(faults: FaultStack, tree: set[int], since: float) -> float:
    left = wait_until_gone(tree, timeout=GONE_BOUND)
    assert left == [], f"processes of the killed tree still run: {left}"
    faults.ended |= tree
    return time.monotonic() - since


def check_idle(faults: FaultStack) -> None:
    assert wait_for(faults.idle, IDLE_BOUND, 0.25) is not None, (
        f"work still running inside the services: {faults.tts_status()} {faults.rvc_status()}")


def warm(faults: FaultStack, load: Load, kinds: set[str]) -> float:
    """Wait until each kind of request has succeeded once under the load: the fault
    then lands on a stack that was serving, with requests in flight."""
    since = time.monotonic()
    ready = wait_for(lambda: all(load.first_success_after(-1.0, {k}) for k in kinds), 60)
    assert ready is not None, f"the stack did not serve before the fault:\n{summary(load.snapshot(), since)}"
    return ready


def recovery(watch: HealthWatch, load: Load, fault: float, kinds: set[str], bound: float,
             since: float | None = None, dependency: str | None = None) -> float:
    """Seconds from ``since`` (by default the fault) until the edge's /v1/health, asked
    after it and after the fault showed there, said SERVING (or, with ``dependency``,
    no longer named it), and a request of each kind, sent after ``since``, succeeded."""
    since = fault if since is None else since

    def bad(status: str) -> bool:
        if dependency is None:
            return not serving(status)
        return f"{dependency}=" in status or status.startswith("ERROR")

    def back() -> float | None:
        # A short outage may never show at the edge (its health check waits up to
        # its timeout for a connection being re-established); a longer one does,
        # and then only an answer asked after it counts.
        down = watch.first("edge", fault, bad)
        health = watch.first_asked("edge", max(since, down or since), lambda s: not bad(s))
        done = [load.first_success_after(since, {k}) for k in kinds]
        if health is None or None in done:
            return None
        return max(health, *done)

    assert wait_for(back, bound + 5, 0.25) is not None, (
        f"not serving again {bound:.0f} s after the fault; edge health: "
        f"{watch.changes('edge', fault)}\n{summary(load.snapshot(), fault)}")
    return back() - since


def surfaced(watch: HealthWatch, load: Load, since: float, name: str,
             check: bool = True) -> float | None:
    """Seconds from ``since`` until a request failed or health said that ``name`` was not
    serving (the edge's /v1/health naming it, or its own grpc.health.v1 answering
    NOT_SERVING or refusing connections), whichever came first."""
    signs = [
        load.first_failure_after(since),
        watch.first("edge", since, lambda s: not serving(s) and f"{name}=" in s),
        watch.first(name, since, refused),
    ]
    seen = [s for s in signs if s is not None]
    if not check and not seen:
        return None
    assert seen, f"nothing showed the fault: edge health {watch.changes('edge', since)}"
    return min(seen) - since


def worker_busy(faults: FaultStack, index: int) -> bool:
    status = faults.rvc_status()
    return status is not None and status.workers[index].busy


def report(name: str, **seconds: float) -> None:
    print(f"{name}: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))


def test_a_killed_rvc_worker_is_respawned_and_its_job_runs_again(faults):
    """One of two RVC workers dies mid-job: the job runs again on the other one, so
    every request succeeds; the service stays SERVING; the worker comes back."""
    with faults.watch() as watch, Load(faults.gateway, LOAD) as load:
        assert wait_for(faults.healthy, 60, 0.5) is not None, "the stack is not serving"
        warm(faults, load, {"synthesize", "convert"})
        before = faults.processes()
        status = faults.rvc_status()
        restarts = {w.index: w.restarts for w in status.workers}
        # Freeze a busy worker, so that it surely dies with a job (SIGKILL ends a
        # stopped process as it ends a running one).
        victim, index = None, None
        deadline = time.monotonic() + 30
        while victim is None and time.monotonic() < deadline:
            status = faults.rvc_status()
            busy = [w.index for w in status.workers if w.busy] if status is not None else []
            pids = faults.workers()
            for candidate in busy:
                os.kill(pids[candidate], signal.SIGSTOP)
                still = wait_for(lambda c=candidate: not worker_busy(faults, c), 0.3)
                if still is None:  # its reply cannot come: the job is stuck in it
                    victim, index = pids[candidate], candidate
                    break
                os.kill(pids[candidate], signal.SIGCONT)
            time.sleep(0.05)
        assert victim is not None, "no worker was busy under load"
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)

        def noticed() -> bool:
            status = faults.rvc_status()
            worker = status.workers[index] if status is not None else None
            return worker is not None and (not worker.alive or worker.restarts > restarts[index])

        seen = wait_for(noticed, SURFACE_BOUND, 0.05)
        gone = check_tree_gone(faults, {victim}, killed)

        def respawned() -> bool:
            status = faults.rvc_status()
            return (status is not None and status.workers_alive == WORKERS
                    and status.workers[index].restarts == restarts[index] + 1)

        back = wait_for(respawned, SERVICE_RECOVERY_BOUND, 0.25)
        # A request sent once the worker is back also succeeds.
        good = wait_for(lambda: load.first_success_after(back or killed), 60, 0.25)
    check_requests(load, killed, allowed=set())
    report("rvc worker killed", noticed=(seen or float("inf")) - killed, tree_gone=gone,
           respawned=(back or float("inf")) - killed)
    assert seen is not None and seen - killed < SURFACE_BOUND, "the pool never saw its worker die"
    assert back is not None, f"the worker was not respawned: {faults.rvc_status()}"
    assert good is not None
    log = (faults.config.run_dir / "logs" / "rvc.log").read_text()
    assert f"(pid {victim}) died running" in log and "retrying it once" in log
    # One worker of two was always there: the service never said it stopped serving,
    # nor refused a connection (a slow answer on a loaded machine is no refusal).
    assert [s for _, s in watch.of("rvc") if refused(s)] == []
    check_survivors(before, {victim})
    check_idle(faults)


def test_a_killed_tts_service_is_restarted_and_rvc_keeps_serving(faults):
    """The TTS service dies: synthesis fails UNAVAILABLE at once, conversion is
    untouched, the edge's /v1/health names the TTS service until it is back."""
    with faults.watch() as watch, Load(faults.gateway, LOAD) as load:
        assert wait_for(faults.healthy, 60, 0.5) is not None, "the stack is not serving"
        warm(faults, load, {"synthesize", "convert"})
        before = faults.processes()
        starts = faults.child("tts_gateway").starts
        victim = faults.pid("tts_gateway")
        tree = {victim, *descendants(victim)}
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        gone = check_tree_gone(faults, tree, killed)
        back = recovery(watch, load, killed, {"synthesize"}, SERVICE_RECOVERY_BOUND)
        shown = surfaced(watch, load, killed, "tts")
    check_requests(load, killed, allowed={UNAVAILABLE}, unaffected=frozenset({"convert"}))
    report("tts service killed", surfaced=shown, tree_gone=gone, recovered=back)
    assert shown < SURFACE_BOUND
    assert back < SERVICE_RECOVERY_BOUND
    assert faults.child("tts_gateway").starts == starts + 1
    assert [s for _, s in watch.of("gateway") if refused(s)] == []
    check_survivors(before, tree)
    check_idle(faults)


def test_a_stalled_triton_fails_requests_by_their_deadline_and_recovers(faults):
    """Triton, with its backend stubs, stops (SIGSTOP, as a frozen container) for longer
    than the requests' deadline: synthesis fails with DEADLINE_EXCEEDED or UNAVAILABLE
    by its deadline, conversion goes on, health shows the TTS service NOT_SERVING;
    once Triton runs again, so does synthesis, with no restart: the same tritonserver
    serves again (it once crashed as it resumed; see docs/reliability.md)."""
    load_spec = {"synthesize": (2, STALL_DEADLINE), "convert": (1, STALL_DEADLINE)}
    with faults.watch() as watch, Load(faults.gateway, load_spec) as load:
        assert wait_for(faults.healthy, 60, 0.5) is not None, "the stack is not serving"
        warm(faults, load, {"synthesize", "convert"})
        # Read only now: the Triton that just served (the one before may have been
        # restarted by the supervisor after an earlier scenario).
        triton = faults.pid("triton")
        starts = faults.child("triton").starts
        before = faults.processes()
        stalled = time.monotonic()
        os.killpg(triton, signal.SIGSTOP)
        try:
            # Hold the stall until every request that was running has ended and a
            # whole deadline has passed.
            held = wait_for(lambda: time.monotonic() > stalled + STALL_DEADLINE + 1 and all(
                started > stalled for started in load.running()), STALL_DEADLINE + SLACK + 10)
            assert held is not None, f"requests still running: {load.running()}"
        finally:
            os.killpg(triton, signal.SIGCONT)
        resumed = time.monotonic()
        back = recovery(watch, load, stalled, {"synthesize"}, TRITON_RECOVERY_BOUND, resumed)
        shown = surfaced(watch, load, stalled, "tts")
    restarts = faults.child("triton").starts - starts
    text = faults.child("triton").log_path.read_text(errors="replace")
    signals = [line for line in text.splitlines() if line.startswith("Signal (")]
    assert restarts == 0, f"tritonserver was restarted after the stall: {signals}"
    outcomes = check_requests(load, stalled, allowed={UNAVAILABLE, DEADLINE_EXCEEDED},
                              unaffected=frozenset({"convert"}))
    report("triton stalled", surfaced=shown, stalled_for=resumed - stalled,
           recovered_after_resume=back)
    assert shown < SURFACE_BOUND
    assert back < SERVICE_RECOVERY_BOUND
    # Requests that ran into the stall did fail, by their deadline (checked above).
    assert any(not o.ok and o.kind == "synthesize" and o.started < resumed for o in outcomes)
    assert watch.first("tts", stalled, lambda s: s == "NOT_SERVING") is not None
    assert [s for _, s in watch.of("gateway") if refused(s)] == []
    check_survivors(before, set())
    check_idle(faults)


def test_a_killed_triton_takes_its_stubs_and_shared_memory(faults):
    """Triton dies: its backend stubs go with it, the supervisor removes its shared
    memory and restarts it; synthesis fails UNAVAILABLE meanwhile. Triton takes the
    longest to come back, so the next test kills the RVC service during that restart,
    and the one after it checks that Triton's came back in time."""
    watch = faults.watch().__enter__()
    # Synthesis only: conversion gets a load of its own in the next test.
    load = Load(faults.gateway, {"synthesize": (2, DEADLINE)}).__enter__()
    outage = Outage(watch, load)
    faults.triton_outage = outage
    assert wait_for(faults.healthy, 60, 0.5) is not None, "the stack is not serving"
    warm(faults, load, {"synthesize"})
    outage.before = faults.processes()
    outage.starts = faults.child("triton").starts
    victim = faults.pid("triton")
    outage.tree = {victim, *descendants(victim)}
    assert len(outage.tree) >= 2, "Triton runs its Python models in backend stub processes"
    segments = set(glob.glob(faults.shm_pattern))
    assert segments, f"no shared memory matches {faults.shm_pattern}"
    outage.killed = killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    gone = check_tree_gone(faults, outage.tree, killed)
    shm_gone = wait_for(lambda: not segments & set(glob.glob(faults.shm_pattern)), GONE_BOUND)
    wait_for(lambda: surfaced(watch, load, killed, "tts", check=False) is not None, SURFACE_BOUND)
    shown = surfaced(watch, load, killed, "tts")
    report("triton killed", surfaced=shown, tree_gone=gone)
    assert shm_gone is not None, f"segments of the killed Triton remain: {segments}"
    assert shown < SURFACE_BOUND


def test_a_killed_rvc_service_takes_its_workers_and_is_restarted(faults):
    """Only the service's main process is killed, as a crash would: its workers die
    with it (no orphans) and it is restarted. (Runs while Triton restarts after the
    test before: the two restarts share the wait.)"""
    with faults.watch() as watch, Load(faults.gateway, {"convert": (2, DEADLINE)}) as load:
        def rvc_serving() -> bool:
            status = faults.rvc_status()
            return (status is not None and status.workers_alive == WORKERS
                    and "rvc=" not in edge_health(faults.api))

        assert wait_for(rvc_serving, 60, 0.5) is not None, "the RVC service is not serving"
        warm(faults, load, {"convert"})
        before = faults.processes()
        starts = faults.child("rvc").starts
        victim = faults.pid("rvc")
        tree = {victim, *descendants(victim)}
        workers = set(faults.workers().values())
        assert len(workers) == WORKERS and workers <= tree
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        gone = check_tree_gone(faults, tree, killed)
        back = recovery(watch, load, killed, {"convert"}, SERVICE_RECOVERY_BOUND,
                        dependency="rvc")
        shown = surfaced(watch, load, killed, "rvc")
    check_requests(load, killed, allowed={UNAVAILABLE})
    report("rvc service killed", surfaced=shown, tree_gone=gone, recovered=back)
    assert shown < SURFACE_BOUND
    assert back < SERVICE_RECOVERY_BOUND
    assert faults.child("rvc").starts == starts + 1
    assert wait_for(lambda: faults.rvc_status().workers_alive == WORKERS, 30) is not None
    assert [s for _, s in watch.of("gateway") if refused(s)] == []
    # Triton may be restarting beside: its processes are not this fault's.
    check_survivors(before, tree, beside="triton")


def test_the_killed_triton_is_back_and_synthesis_with_it(faults):
    outage = faults.triton_outage
    if outage is None or outage.killed is None:
        pytest.fail("test_a_killed_triton_takes_its_stubs_and_shared_memory did not kill Triton")
    watch, load, killed = outage.watch, outage.load, outage.killed
    try:
        back = recovery(watch, load, killed, {"synthesize"}, TRITON_RECOVERY_BOUND)
    finally:
        watch.__exit__(None, None, None)
    check_requests(load, killed, allowed={UNAVAILABLE})
    triton_ready = watch.first("triton", killed, lambda s: s == "OK")
    tts_ready = watch.first("tts", triton_ready or killed, serving)
    report("triton killed", recovered=back,
           triton_ready=(triton_ready or float("inf")) - killed,
           tts_serving_after_triton=(tts_ready or float("inf")) - (triton_ready or killed))
    assert back < TRITON_RECOVERY_BOUND
    assert triton_ready is not None and tts_ready is not None
    # Our part of the recovery: the TTS service sees Triton back at once.
    assert tts_ready - triton_ready < TRITON_TO_TTS_BOUND
    assert faults.child("triton").starts == outage.starts + 1
    assert [s for _, s in watch.of("gateway") if refused(s)] == []
    # The RVC service was killed meanwhile, by the test before.
    check_survivors(outage.before, outage.tree | faults.ended)
    check_idle(faults)


def test_after_the_faults_stopping_the_stack_leaves_nothing_behind(faults):
    """Every process of every tree a fault ended, and of the stack, is gone; so are
    Triton's shared-memory segments and anything in the stack's TMPDIR."""
    assert faults.watch_errors == []
    tree = set(faults.processes())
    faults.shutdown()
    assert wait_until_gone(tree | faults.ended, timeout=GONE_BOUND) == []
    assert glob.glob(faults.shm_pattern) == []
    # Torch keeps a compile cache under TMPDIR (torchinductor_<user>); it may exist,
    # but nothing may be in it, nor anything else.
    left = [p for p in faults.tmpdir.rglob("*")
            if not (p.is_dir() and p.parent == faults.tmpdir and p.name.startswith("torchinductor_"))]
    assert left == [], f"left in TMPDIR: {left}"
