"""The test stacks: a configuration on free loopback ports, the tiny models an earlier
stack of the session already generated, and one factory, ``supervised``, that starts
the processes of every suite (the whole stack, some of it changed, or processes of a
test's own) with the supervisor of `make run`."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from localstack import components
from localstack.components import envoy_binary
from localstack.config import StackConfig
from localstack.prepare.models import TINY_RVC_DIR, TINY_SPARK_DIR
from localstack.supervise.probes import Probe, http_ok
from localstack.supervise.spec import ProcessSpec
from localstack.supervise.supervisor import Child, Supervisor

REPO = Path(__file__).resolve().parents[2]

# What a test changes in the process specs before they start: it may pick some of
# them, alter their environment or command line, or add processes of its own.
Change = Callable[[list[ProcessSpec]], list[ProcessSpec]]


def stack_config(run_dir: Path, **changes) -> StackConfig:
    """The local stack's defaults, run from ``run_dir`` on free ports, with ``changes``."""
    return dataclasses.replace(
        StackConfig(),
        run_dir=run_dir,
        models_dir=run_dir / "models",
        model_repo=REPO / "triton" / "model_repo",
        descriptor=REPO / "gen" / "voice_v1.pb",
        **changes,
    ).with_free_ports()


def reuse_models(tmp_path_factory, run_dir: Path) -> None:
    """Copy the tiny models the session's stack generated, if it ran already: saves
    generating them again (half a minute on two CPUs)."""
    for earlier in sorted(tmp_path_factory.getbasetemp().glob("stack*/models")):
        if (earlier / TINY_SPARK_DIR).is_dir() and (earlier / TINY_RVC_DIR).is_dir():
            shutil.copytree(earlier, run_dir / "models")
            return


def only(*names: str) -> Change:
    """The change that keeps the processes ``names`` alone (in start order)."""
    def pick(specs: list[ProcessSpec]) -> list[ProcessSpec]:
        kept = [spec for spec in specs if spec.name in names]
        missing = set(names) - {spec.name for spec in kept}
        assert not missing, f"no process named {sorted(missing)}"
        return kept
    return pick


def envoy_spec(config: Path, admin: int, name: str = "envoy", probe: Probe | None = None) -> ProcessSpec:
    """Envoy on the rendered ``config`` with one worker, ready when its admin port
    ``admin`` says so (or when ``probe`` does). Its access log goes to stdout: the
    supervisor writes it to the process's log."""
    return ProcessSpec(
        name=name,
        argv=[envoy_binary(), "-c", str(config), "--disable-hot-restart", "--log-level", "warning",
              "--concurrency", "1"],
        env=dict(os.environ),
        probe=probe or http_ok(f"http://127.0.0.1:{admin}/ready"),
    )


@dataclasses.dataclass
class Supervised:
    """The processes ``supervised`` started: their supervisor and logs, and what its
    watcher raised (it restarts processes that die until the end)."""

    supervisor: Supervisor
    logs: Path
    watch_errors: list[BaseException] = dataclasses.field(default_factory=list)
    stopped: bool = False
    _stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    _watcher: threading.Thread | None = None

    def child(self, name: str) -> Child:
        return next(c for c in self.supervisor.children if c.spec.name == name)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def watch(self, poll: float = 0.5) -> None:
        """From now on, restart a process that dies, as `make run` does."""
        assert self._watcher is None, "already watching"

        def run() -> None:
            try:
                self.supervisor.watch(self._stop, poll)
            except BaseException as exc:
                # Kept for tests that check it; raised on, for pytest to report.
                self.watch_errors.append(exc)
                raise

        self._watcher = threading.Thread(target=run, name="supervisor-watch", daemon=True)
        self._watcher.start()

    def stop(self, timeout: float = 30) -> None:
        """Stop every process, then the watcher (once; ``supervised`` does it on leaving).
        In that order: the kernel ties a child's parent-death signal to the thread that
        started it, so children the watcher restarted would be killed as it ends,
        before they were asked to stop."""
        if self.stopped:
            return
        self.stopped = True
        self.supervisor.stop(timeout=timeout)
        self._stop.set()
        if self._watcher is not None and self._watcher.is_alive():
            self._watcher.join(timeout=30)


@contextlib.contextmanager
def supervised(
    config: StackConfig | None = None,
    change: Change | None = None,
    *,
    specs: list[ProcessSpec] | None = None,
    logs: Path | None = None,
    timeout: float = 300,
    watch: bool = True,
) -> Iterator[Supervised]:
    """Processes started, ready, and stopped on leaving: the whole stack of ``config``
    (its process table, as `make run` builds it, logging to its run directory's logs)
    or ``specs`` (logging to ``logs``), first changed by ``change`` where given.

    ``timeout`` bounds the start; generous by default, since a loaded machine takes
    longer to bring Triton up (readiness ends the wait). As under `make run`, a process
    that dies is restarted, so one crash fails the tests it hits, not every test after
    it; with ``watch=False`` nothing is restarted until the test calls ``watch()``.
    """
    if (config is None) == (specs is None):
        raise TypeError("supervised() takes one of config and specs")
    if specs is None:
        specs = components.build(config, REPO)
        logs = logs or config.run_dir / "logs"
    if logs is None:
        raise TypeError("supervised(specs=...) needs logs, the folder of their logs")
    if change is not None:
        specs = change(specs)
    running = Supervised(Supervisor(specs, logs), logs)
    try:
        running.supervisor.start(timeout=timeout)
        if watch:
            running.watch()
        yield running
    finally:
        running.stop()


def vllm_metric(url: str, name: str) -> float:
    """The sum of a vLLM server's (at ``url``) Prometheus samples named ``name``."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))
