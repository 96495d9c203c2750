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

A verdict never hangs on which probe answered first: each state a scenario expects
(health saying this or that, a request succeeding, a log line) is watched for until
it has been seen or its bound has passed, and a failure says which states were seen,
when, and which were not. Health is watched by probes polling side by side, each
answer stamped with when it was asked and when it came.

Measured times are printed (pytest -s shows them).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from voice.v1 import rvc_pb2, rvc_pb2_grpc, tts_pb2, tts_pb2_grpc

from localstack.config import StackConfig
from localstack.supervise.spec import ProcessSpec
from localstack.supervise.supervisor import Child, Supervisor
from tests.integration.faults_load import (
    SLACK,
    HealthWatch,
    Load,
    Outcome,
    edge_health,
    grpc_health,
    http_status,
)
from tests.integration.stacks import Supervised, reuse_models, stack_config, supervised
from tests.processes import descendants, running, wait_until_gone

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
LLM_RECOVERY_BOUND = 120.0  # vLLM restarts in about 20 s on an idle 2-core machine
# From Triton ready again to the TTS service serving: a readiness poll (2 s) and a
# reconnect (back-off capped at 1 s), with room for a loaded machine.
TRITON_TO_TTS_BOUND = 8.0
GONE_BOUND = 10.0  # a killed process's tree, and its shared memory, are gone by then
IDLE_BOUND = 20.0  # work abandoned by callers has ended inside the services by then
WARM_BOUND = 60.0  # for a stack that serves to answer a first request of each kind
# Whether a killed RVC worker held a job depends on when its reply was on its way:
# the pool's log says, and a worker that died idle is followed by another try.
MID_JOB_TRIES = 3


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
    running: Supervised
    tmpdir: Path
    shm_pattern: str
    # Every process of a tree that a fault ended: none may outlive the stack.
    ended: set[int] = dataclasses.field(default_factory=set)
    stopped: bool = False
    triton_outage: Outage | None = None

    @property
    def supervisor(self) -> Supervisor:
        return self.running.supervisor

    @property
    def watch_errors(self) -> list[BaseException]:
        """What the supervisor's watcher raised: reported by the tests, which would
        otherwise wait in vain for a restart."""
        return self.running.watch_errors

    @property
    def gateway(self) -> str:
        return f"127.0.0.1:{self.config.gateway_port}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.config.api_port}"

    def child(self, name: str) -> Child:
        return self.running.child(name)

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
        """Stop the stack, then its watcher (Supervised.stop says why in that order)."""
        if not self.stopped:
            self.stopped = True
            if self.triton_outage is not None:  # left open by a failed test
                self.triton_outage.load.stop()
                self.triton_outage.watch.__exit__(None, None, None)
            self.running.stop(timeout=30)


@pytest.fixture(scope="module")
def faults(tmp_path_factory) -> FaultStack:
    run_dir = tmp_path_factory.mktemp("faults")
    reuse_models(tmp_path_factory, run_dir)
    tmpdir = run_dir / "tmp"
    tmpdir.mkdir()
    config = stack_config(run_dir)

    def change(specs: list[ProcessSpec]) -> list[ProcessSpec]:
        for spec in specs:
            # vLLM has a /tmp of its own (run_dir/vllm-tmp, emptied once it exits: checked below).
            if spec.name != "vllm":
                spec.env["TMPDIR"] = str(tmpdir)
            if spec.name == "rvc":
                spec.env["RVC_WORKERS"] = str(WORKERS)
        return specs

    started = time.monotonic()
    with supervised(config, change, timeout=240) as running:
        print(f"\nfault stack prepared and up in {time.monotonic() - started:.1f} s")
        stack = FaultStack(config, running, tmpdir, running.child("triton").spec.leftovers[0])
        try:
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


@dataclasses.dataclass
class Expected:
    """A state a scenario must reach. ``seen`` says when it was first seen, from what
    was recorded so far (None: not yet); it is asked again on each look, so an answer
    that comes late and changes the picture is taken into account. ``by`` is the moment
    by which it must have been seen (a function where that depends on another state)."""

    what: str
    seen: Callable[[], float | None]
    by: float | Callable[[], float]

    def bound(self) -> float:
        return self.by() if callable(self.by) else self.by


def watch_for(expected: list[Expected], interval: float = 0.1) -> dict[str, float | None]:
    """Keep looking until every expected state has been seen, or the bound of each one
    not seen has passed; no state is given up on because another was seen first.
    Returns when each was seen, all from the same last look (None: not by its bound).

    Health answers and request outcomes are stamped under the lock that reading them
    takes, so one stamped before ``now`` is in the look that follows: a recorded state
    seen by its bound is never missed. Times are those of answers (a live check's too):
    late rather than early, so a time measured from one is never short."""
    while True:
        now = time.monotonic()
        found = {e.what: e.seen() for e in expected}
        if all(found[e.what] is not None or now > e.bound() for e in expected):
            return found
        time.sleep(interval)


def latched(condition: Callable[[], bool]) -> Callable[[], float | None]:
    """A live check (a status call, a file) as a state: when it first answered true."""
    moments: list[float] = []

    def seen() -> float | None:
        if not moments and condition():
            moments.append(time.monotonic())
        return moments[0] if moments else None

    return seen


def check_seen(found: dict[str, float | None], expected: list[Expected], since: float,
               *context: str) -> None:
    """Each expected state was seen by its bound; if not, says which were seen and when
    (from ``since``), and which were not, with ``context``."""
    lines, ok = [], True
    for e in expected:
        moment, by = found[e.what], e.bound()
        if moment is None:
            ok = False
            lines.append(f"  NOT SEEN by +{by - since:.1f} s: {e.what}")
        elif moment > by:
            ok = False
            lines.append(f"  seen too late, +{moment - since:.1f} s (bound +{by - since:.1f} s): "
                         f"{e.what}")
        else:
            lines.append(f"  seen at +{moment - since:.1f} s (bound +{by - since:.1f} s): {e.what}")
    assert ok, "\n".join(["expected states, times from the fault:", *lines, *context])


def health_log(watch: HealthWatch, since: float, *names: str) -> str:
    """What each probe of ``names`` answered after ``since``: its changes, and its last
    answer (a probe that stopped answering shows as one whose last answer is old)."""
    lines = []
    for name in names:
        changes = watch.changes(name, since)
        shown = ", ".join(f"+{t - since:.1f} s {status[:80]}" for t, status in changes[-10:])
        earlier = f"({len(changes) - 10} changes before) " if len(changes) > 10 else ""
        last = watch.last(name)
        latest = f"; last answer +{last[0] - since:.1f} s" if last is not None else ""
        lines.append(f"{name} health: {earlier}{shown or 'no answer'}{latest}")
    return "\n".join(lines)


class LogTail:
    """A service's log from now on, as the supervisor writes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size
        self.text = b""

    def lines(self, needle: str) -> list[str]:
        """The lines written since this tail began that contain ``needle``."""
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            data = log.read()
        self.offset += len(data)
        self.text += data
        return [line.decode("utf-8", "replace") for line in self.text.splitlines()
                if needle.encode() in line]


def serving(status: str) -> bool:
    return status == "SERVING"


def not_serving(status: str) -> bool:
    return status == "NOT_SERVING"


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
        f"work still running inside the services {IDLE_BOUND:g} s on: "
        f"{faults.tts_status()} {faults.rvc_status()}")


def warm(faults: FaultStack, load: Load, kinds: set[str]) -> float:
    """Wait until each kind of request has succeeded once under the load: the fault
    then lands on a stack that was serving, with requests in flight."""
    since = time.monotonic()
    ready = wait_for(lambda: all(load.first_success_after(-1.0, {k}) for k in kinds), WARM_BOUND)
    assert ready is not None, f"the stack did not serve before the fault:\n{summary(load.snapshot(), since)}"
    return ready


def serving_again(watch: HealthWatch, load: Load, fault: float, kinds: set[str], bound: float,
                  since: float | None = None, dependency: str | None = None) -> list[Expected]:
    """The states of a stack serving again, each within ``bound`` of ``since`` (by
    default the fault): the edge's /v1/health, asked after the fault showed there, says
    SERVING (or, with ``dependency``, no longer names it); a request of each kind, sent
    after ``since``, succeeds."""
    since = fault if since is None else since

    def bad(status: str) -> bool:
        if dependency is None:
            return not serving(status)
        return f"{dependency}=" in status or status.startswith("ERROR")

    def edge_back() -> float | None:
        # A short outage may never show at the edge (its health check waits up to
        # its timeout for a connection being re-established); a longer one does,
        # and then only an answer asked after it counts. An answer that shows the
        # fault late (the edge can be slow to answer) moves this on, or back to
        # "not yet": watch_for asks again on each look.
        down = watch.first("edge", fault, bad)
        return watch.first_asked("edge", max(since, down or since), lambda s: not bad(s))

    health = "SERVING" if dependency is None else f"no longer naming {dependency}"
    sent = "the fault" if since == fault else f"+{since - fault:.1f} s"
    return [
        Expected(f"the edge's /v1/health {health}, asked after it showed the fault",
                 edge_back, since + bound),
        *(Expected(f"a {kind} request sent after {sent} succeeded",
                   lambda k=kind: load.first_success_after(since, {k}), since + bound)
          for kind in sorted(kinds)),
    ]


def latest(found: dict[str, float | None], states: list[Expected]) -> float:
    """When the last of ``states`` was seen (inf if one was not)."""
    moments = [found[e.what] for e in states]
    return float("inf") if None in moments else max(moments)


def fault_shown(watch: HealthWatch, load: Load, since: float, name: str) -> Expected:
    """The fault showed, within SURFACE_BOUND of ``since``: a request failed, or health
    said that ``name`` was not serving (the edge's /v1/health naming it, or its own
    grpc.health.v1 answering NOT_SERVING or refusing connections), whichever came first."""

    def seen() -> float | None:
        signs = [
            load.first_failure_after(since),
            watch.first("edge", since, lambda s: not serving(s) and f"{name}=" in s),
            watch.first(name, since, refused),
        ]
        return min((s for s in signs if s is not None), default=None)

    return Expected(f"the fault showed (a failed request, or health saying {name} is not serving)",
                    seen, since + SURFACE_BOUND)


def worker_busy(faults: FaultStack, index: int) -> bool:
    status = faults.rvc_status()
    return status is not None and status.workers[index].busy


def rvc_status_now(faults: FaultStack) -> rvc_pb2.RvcStatus:
    """The RVC service's status; it may take more than one try on a loaded machine."""
    answers: list[rvc_pb2.RvcStatus] = []

    def answered() -> bool:
        status = faults.rvc_status()
        if status is not None:
            answers.append(status)
        return status is not None

    assert wait_for(answered, WARM_BOUND, 0.25) is not None, "the RVC service does not answer GetStatus"
    return answers[-1]


def stop_a_busy_worker(faults: FaultStack) -> tuple[int, int]:
    """SIGSTOP a worker the pool says is busy and that stays busy while stopped, so
    that it most likely dies with a job (SIGKILL ends a stopped process as it ends a
    running one): its pid and index. A worker whose reply was already on its way when
    it stopped looks the same for as long as the pool is slow to read it; whether the
    killed worker held a job is read from the pool's log afterwards."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = faults.rvc_status()
        busy = [w.index for w in status.workers if w.busy] if status is not None else []
        pids = faults.workers()
        for candidate in busy:
            pid = pids.get(candidate)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            if wait_for(lambda c=candidate: not worker_busy(faults, c), 0.3) is None:
                return pid, candidate  # its reply cannot come: the job is stuck in it
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("no worker was busy under load for 30 s")


def report(name: str, **seconds: float) -> None:
    print(f"{name}: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))


def test_a_killed_rvc_worker_is_respawned_and_its_job_runs_again(faults):
    """One of two RVC workers dies mid-job: the job runs again on the other one, so
    every request succeeds; the service stays SERVING; the worker comes back."""
    with faults.watch() as watch, Load(faults.gateway, LOAD) as load:
        assert wait_for(faults.healthy, WARM_BOUND, 0.5) is not None, "the stack is not serving"
        warm(faults, load, {"synthesize", "convert"})
        before = faults.processes()
        log = LogTail(faults.child("rvc").log_path)
        first_kill, victims, retried = None, set(), []
        for attempt in range(1, MID_JOB_TRIES + 1):
            restarts = {w.index: w.restarts for w in rvc_status_now(faults).workers}
            victim, index = stop_a_busy_worker(faults)
            killed = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            first_kill = first_kill or killed
            victims.add(victim)
            gone = check_tree_gone(faults, {victim}, killed)
            expected = worker_death(faults, log, victim, index, restarts[index], killed)
            found = watch_for(expected)
            check_seen(found, expected, killed, f"RVC status: {faults.rvc_status()}",
                       health_log(watch, killed, "rvc"))
            # The pool logs the job it lost before the worker's exit, seen above.
            retried = log.lines(f"(pid {victim}) died running")
            if retried:
                break
            print(f"worker {index} (pid {victim}) held no job when it was killed "
                  f"(try {attempt} of {MID_JOB_TRIES}): its reply had already left")
        noticed, _, back = (found[e.what] for e in expected)
        assert retried, (f"in {MID_JOB_TRIES} tries no worker was killed with a job in hand: "
                         "the scenario did not happen")
        # A request sent once the worker is back also succeeds.
        good = [Expected("a request sent after the respawn succeeded",
                         lambda: load.first_success_after(back), back + WARM_BOUND)]
        report("rvc worker killed", noticed=noticed - killed, tree_gone=gone,
               respawned=back - killed)
        check_seen(watch_for(good), good, killed, summary(load.snapshot(), killed))
    check_requests(load, first_kill, allowed=set())
    assert "retrying it once" in retried[0], retried
    # One worker of two was always there: the service never said it stopped serving,
    # nor refused a connection (a slow answer on a loaded machine is no refusal).
    assert [s for _, s in watch.of("rvc") if refused(s)] == []
    check_survivors(before, victims)
    check_idle(faults)


def worker_death(faults: FaultStack, log: LogTail, victim: int, index: int, restarts: int,
                 killed: float) -> list[Expected]:
    """What a killed RVC worker must lead to: the pool sees it die (its status says
    so), logs its exit, and respawns it."""

    def noticed() -> bool:
        status = faults.rvc_status()
        worker = status.workers[index] if status is not None else None
        return worker is not None and (not worker.alive or worker.restarts > restarts)

    def respawned() -> bool:
        status = faults.rvc_status()
        return (status is not None and status.workers_alive == WORKERS
                and status.workers[index].restarts == restarts + 1)

    return [
        Expected(f"the pool's status shows worker {index} dead or restarted",
                 latched(noticed), killed + SURFACE_BOUND),
        Expected(f"the pool logged worker {index} (pid {victim}) exiting",
                 latched(lambda: bool(log.lines(f"(pid {victim}) exited"))),
                 killed + SERVICE_RECOVERY_BOUND),
        Expected(f"worker {index} respawned, {WORKERS} workers alive",
                 latched(respawned), killed + SERVICE_RECOVERY_BOUND),
    ]


def test_a_killed_tts_service_is_restarted_and_rvc_keeps_serving(faults):
    """The TTS service dies: synthesis fails UNAVAILABLE at once, conversion is
    untouched, the edge's /v1/health names the TTS service until it is back."""
    with faults.watch() as watch, Load(faults.gateway, LOAD) as load:
        assert wait_for(faults.healthy, WARM_BOUND, 0.5) is not None, "the stack is not serving"
        warm(faults, load, {"synthesize", "convert"})
        before = faults.processes()
        starts = faults.child("tts_gateway").starts
        victim = faults.pid("tts_gateway")
        tree = {victim, *descendants(victim)}
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        gone = check_tree_gone(faults, tree, killed)
        shown = fault_shown(watch, load, killed, "tts")
        back = serving_again(watch, load, killed, {"synthesize"}, SERVICE_RECOVERY_BOUND)
        found = watch_for([shown, *back])
        report("tts service killed", surfaced=(found[shown.what] or float("inf")) - killed,
               tree_gone=gone, recovered=latest(found, back) - killed)
        check_seen(found, [shown, *back], killed, health_log(watch, killed, "edge", "tts"),
                   summary(load.snapshot(), killed))
    check_requests(load, killed, allowed={UNAVAILABLE}, unaffected=frozenset({"convert"}))
    assert faults.child("tts_gateway").starts == starts + 1
    assert [s for _, s in watch.of("gateway") if refused(s)] == []
    check_survivors(before, tree)
    check_idle(faults)


def test_a_killed_llm_server_is_restarted_and_synthesis_with_it(faults):
    """vLLM dies under synthesis: the streams it was decoding fail UNAVAILABLE (not
    INTERNAL: the caller may retry), conversion is untouched, the supervisor restarts
    it, and synthesis works again without Triton or the TTS service restarting."""
    with faults.watch() as watch, Load(faults.gateway, LOAD) as load:
        assert wait_for(faults.healthy, WARM_BOUND, 0.5) is not None, "the stack is not serving"
        warm(faults, load, {"synthesize", "convert"})
        before = faults.processes()
        starts = {name: faults.child(name).starts for name in ("vllm", "triton", "tts_gateway")}
        victim = faults.pid("vllm")
        tree = {victim, *descendants(victim)}
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        gone = check_tree_gone(faults, tree, killed)
        failed = Expected("a synthesis failed", lambda: next(
            (o.ended for o in load.snapshot() if not o.ok and o.kind == "synthesize"
             and o.ended > killed), None), killed + SURFACE_BOUND + 20)
        back = [Expected("a synthesis sent after the fault succeeded",
                         lambda: load.first_success_after(killed, {"synthesize"}),
                         killed + LLM_RECOVERY_BOUND)]
        found = watch_for([failed, *back])
        report("vllm killed", surfaced=(found[failed.what] or float("inf")) - killed,
               tree_gone=gone, recovered=latest(found, back) - killed)
        check_seen(found, [failed, *back], killed, summary(load.snapshot(), killed))
    check_requests(load, killed, allowed={UNAVAILABLE}, unaffected=frozenset({"convert"}))
    assert faults.child("vllm").starts == starts["vllm"] + 1
    assert faults.child("triton").starts == starts["triton"]
    assert faults.child("tts_gateway").starts == starts["tts_gateway"]
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
        assert wait_for(faults.healthy, WARM_BOUND, 0.5) is not None, "the stack is not serving"
        warm(faults, load, {"synthesize", "convert"})
        # Read only now: the Triton that just served (the one before may have been
        # restarted by the supervisor after an earlier scenario).
        triton = faults.pid("triton")
        starts = faults.child("triton").starts
        before = faults.processes()
        stalled = time.monotonic()
        hold_bound = stalled + STALL_DEADLINE + SLACK + 10
        # The stall lasts until what it must show has been seen: every request that was
        # running has ended and a whole deadline has passed; a synthesis has failed;
        # the TTS service's health has said NOT_SERVING (however late its probe answers).
        held = [
            Expected("every request running at the stall ended, and a deadline passed",
                     latched(lambda: time.monotonic() > stalled + STALL_DEADLINE + 1 and all(
                         started > stalled for started in load.running())), hold_bound),
            Expected("a synthesis failed",
                     lambda: next((o.ended for o in load.snapshot() if not o.ok
                                   and o.kind == "synthesize" and o.ended > stalled), None),
                     hold_bound),
            Expected("the TTS service's health said NOT_SERVING",
                     lambda: watch.first("tts", stalled, not_serving), hold_bound),
            fault_shown(watch, load, stalled, "tts"),
        ]
        os.killpg(triton, signal.SIGSTOP)
        try:
            during = watch_for(held)
        finally:
            os.killpg(triton, signal.SIGCONT)
        resumed = time.monotonic()
        check_seen(during, held, stalled, health_log(watch, stalled, "edge", "tts"),
                   summary(load.snapshot(), stalled))
        back = serving_again(watch, load, stalled, {"synthesize"}, SERVICE_RECOVERY_BOUND,
                             since=resumed)
        after = watch_for(back)
        report("triton stalled", surfaced=during[held[-1].what] - stalled,
               stalled_for=resumed - stalled,
               recovered_after_resume=latest(after, back) - resumed)
        check_seen(after, back, stalled, health_log(watch, stalled, "edge", "tts", "triton"),
                   summary(load.snapshot(), stalled))
    restarts = faults.child("triton").starts - starts
    text = faults.child("triton").log_path.read_text(errors="replace")
    signals = [line for line in text.splitlines() if line.startswith("Signal (")]
    assert restarts == 0, f"tritonserver was restarted after the stall: {signals}"
    check_requests(load, stalled, allowed={UNAVAILABLE, DEADLINE_EXCEEDED},
                   unaffected=frozenset({"convert"}))
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
    assert wait_for(faults.healthy, WARM_BOUND, 0.5) is not None, "the stack is not serving"
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
    shown = fault_shown(watch, load, killed, "tts")
    expected = [
        Expected("Triton's shared-memory segments removed",
                 latched(lambda: not segments & set(glob.glob(faults.shm_pattern))),
                 killed + GONE_BOUND),
        shown,
    ]
    found = watch_for(expected)
    report("triton killed", surfaced=(found[shown.what] or float("inf")) - killed, tree_gone=gone)
    left = segments & set(glob.glob(faults.shm_pattern))
    check_seen(found, expected, killed, f"segments left: {sorted(left)}",
               health_log(watch, killed, "edge", "tts", "triton"), summary(load.snapshot(), killed))


def test_a_killed_rvc_service_takes_its_workers_and_is_restarted(faults):
    """Only the service's main process is killed, as a crash would: its workers die
    with it (no orphans) and it is restarted. (Runs while Triton restarts after the
    test before: the two restarts share the wait.)"""
    with faults.watch() as watch, Load(faults.gateway, {"convert": (2, DEADLINE)}) as load:
        def rvc_serving() -> bool:
            status = faults.rvc_status()
            return (status is not None and status.workers_alive == WORKERS
                    and "rvc=" not in edge_health(faults.api))

        assert wait_for(rvc_serving, WARM_BOUND, 0.5) is not None, "the RVC service is not serving"
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
        shown = fault_shown(watch, load, killed, "rvc")
        back = serving_again(watch, load, killed, {"convert"}, SERVICE_RECOVERY_BOUND,
                             dependency="rvc")
        found = watch_for([shown, *back])
        recovered = latest(found, back)
        report("rvc service killed", surfaced=(found[shown.what] or float("inf")) - killed,
               tree_gone=gone, recovered=recovered - killed)
        check_seen(found, [shown, *back], killed, health_log(watch, killed, "edge", "rvc"),
                   summary(load.snapshot(), killed))
        # Serving again needs one worker; the other comes up beside it.
        both = [Expected(f"{WORKERS} workers alive in the restarted service", latched(
            lambda: (s := faults.rvc_status()) is not None and s.workers_alive == WORKERS),
            recovered + 30)]
        check_seen(watch_for(both), both, killed, f"RVC status: {faults.rvc_status()}")
    check_requests(load, killed, allowed={UNAVAILABLE})
    assert faults.child("rvc").starts == starts + 1
    assert [s for _, s in watch.of("gateway") if refused(s)] == []
    # Triton may be restarting beside: its processes are not this fault's.
    check_survivors(before, tree, beside="triton")


def test_the_killed_triton_is_back_and_synthesis_with_it(faults):
    """The Triton killed two tests before is back within its bound, and synthesis with
    it; the TTS service, NOT_SERVING meanwhile, serves again soon after Triton is ready."""
    outage = faults.triton_outage
    if outage is None or outage.killed is None:
        pytest.fail("test_a_killed_triton_takes_its_stubs_and_shared_memory did not kill Triton")
    watch, load, killed = outage.watch, outage.load, outage.killed

    def triton_ready() -> float | None:
        # Asked after the kill: an answer to a question asked before it is no news.
        return watch.first_asked("triton", killed, lambda s: s == "OK")

    def tts_ready() -> float | None:
        ready = triton_ready()
        return None if ready is None else watch.first("tts", ready, serving)

    def tts_down() -> float | None:
        down = watch.first("tts", killed, not_serving)
        up = tts_ready()
        return down if down is not None and (up is None or down < up) else None

    back = serving_again(watch, load, killed, {"synthesize"}, TRITON_RECOVERY_BOUND)
    # The health watch goes on until each of these has been seen (or its bound has
    # passed), whichever probe answers first: serving again does not stop it before
    # the TTS service's own health has answered.
    expected = [
        *back,
        Expected("Triton's /v2/health/ready OK, asked after the kill",
                 triton_ready, killed + TRITON_RECOVERY_BOUND),
        Expected("the TTS service's health NOT_SERVING, before it served again",
                 tts_down, killed + TRITON_RECOVERY_BOUND),
        Expected(f"the TTS service's health SERVING, within {TRITON_TO_TTS_BOUND:g} s of "
                 "Triton's ready", tts_ready,
                 lambda: (triton_ready() or killed + TRITON_RECOVERY_BOUND) + TRITON_TO_TTS_BOUND),
    ]
    try:
        found = watch_for(expected)
    finally:
        watch.__exit__(None, None, None)
    triton, tts = found[expected[-3].what], found[expected[-1].what]
    report("triton killed", recovered=latest(found, back) - killed,
           triton_ready=(triton or float("inf")) - killed,
           tts_serving_after_triton=(tts or float("inf")) - (triton or killed))
    # Our part of the recovery: the TTS service sees Triton back at once.
    check_seen(found, expected, killed, health_log(watch, killed, "edge", "triton", "tts"),
               summary(load.snapshot(), killed))
    check_requests(load, killed, allowed={UNAVAILABLE})
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
    vllm_tmp = faults.config.run_dir / "vllm-tmp"  # vLLM's /tmp
    assert vllm_tmp.is_dir() and list(vllm_tmp.iterdir()) == []
