"""Starts, watches and stops the stack's processes.

Each child runs in its own process group (so Triton's backend stubs go with
it) and is told by the kernel to die if the supervisor itself dies, so no
process outlives the stack. A child that exits unexpectedly is restarted,
with back-off, as Kubernetes would restart a container.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from localstack.supervise.spec import ProcessSpec
from services.common.process import dying_with_me

log = logging.getLogger(__name__)

class StackError(RuntimeError):
    pass


@dataclass
class Child:
    spec: ProcessSpec
    log_path: Path
    process: subprocess.Popen | None = None
    ready: bool = False
    starts: int = 0
    restarts: deque = field(default_factory=lambda: deque(maxlen=5))
    _pump: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    def __init__(self, specs: list[ProcessSpec], log_dir: Path, echo: TextIO | None = None) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.children = [Child(spec, log_dir / f"{spec.name}.log") for spec in specs]
        self._echo = echo
        self._echo_lock = threading.Lock()
        self._stopping = False
        self._spawned = threading.Condition()

    # -- starting ---------------------------------------------------------
    def _spawn(self, child: Child) -> None:
        child.ready = False
        child.process = subprocess.Popen(
            dying_with_me(child.spec.argv, sys.executable),
            env=child.spec.env,
            cwd=child.spec.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child._pump = threading.Thread(
            target=self._pump, args=(child, child.process), daemon=True, name=f"log-{child.spec.name}"
        )
        child._pump.start()
        with self._spawned:
            child.starts += 1
            self._spawned.notify_all()
        log.info("started %s (pid %d)", child.spec.name, child.process.pid)

    def wait_started(self, name: str, starts: int, timeout: float) -> bool:
        """Block until process ``name`` has been started ``starts`` times in all."""
        child = next(c for c in self.children if c.spec.name == name)
        with self._spawned:
            return self._spawned.wait_for(lambda: child.starts >= starts, timeout)

    def _pump(self, child: Child, process: subprocess.Popen) -> None:
        """Copy a child's output to its log file and, when asked, to our terminal."""
        with open(child.log_path, "ab") as sink:
            for line in iter(process.stdout.readline, b""):
                sink.write(line)
                sink.flush()
                if self._echo is not None:
                    text = line.decode("utf-8", "replace").rstrip()
                    with self._echo_lock:
                        print(f"[{child.spec.name}] {text}", file=self._echo, flush=True)
        process.stdout.close()

    def start(self, timeout: float, stop: threading.Event | None = None) -> None:
        """Start every process and wait until each one's probe passes."""
        for child in self.children:
            self._spawn(child)
        self.wait_ready(timeout, stop or threading.Event())

    def wait_ready(self, timeout: float, stop: threading.Event) -> None:
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            pending = [c for c in self.children if not c.ready]
            if not pending:
                return
            for child in pending:
                code = child.process.poll()
                if code is not None:
                    raise StackError(
                        f"{child.spec.name} exited with code {code} while starting; "
                        f"last lines of {child.log_path}:\n{self.tail(child)}"
                    )
                child.ready = child.spec.probe()
            if time.monotonic() > deadline:
                names = ", ".join(c.spec.name for c in self.children if not c.ready)
                raise StackError(f"not ready after {timeout:.0f} s: {names}")
            if any(not c.ready for c in pending):
                stop.wait(0.25)
        raise StackError("interrupted while starting")

    @staticmethod
    def tail(child: Child, lines: int = 30) -> str:
        try:
            return "\n".join(child.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- watching ---------------------------------------------------------
    def watch(self, stop: threading.Event, poll: float = 0.5) -> None:
        """Restart children that die, until ``stop`` is set."""
        while not stop.wait(poll):
            for child in self.children:
                if self._stopping or child.alive:
                    continue
                code = child.process.returncode
                # Whatever the dead process left in its group goes with it, as
                # when a container exits.
                self._signal(child, signal.SIGKILL)
                self._remove_leftovers(child)
                now = time.monotonic()
                child.restarts.append(now)
                full = len(child.restarts) == child.restarts.maxlen
                if full and now - child.restarts[0] < 60:
                    raise StackError(
                        f"{child.spec.name} keeps exiting (last code {code}); giving up:\n"
                        f"{self.tail(child)}"
                    )
                backoff = min(10.0, 0.5 * 2 ** (len(child.restarts) - 1))
                log.warning("%s exited with code %s; restarting in %.1f s",
                            child.spec.name, code, backoff)
                if stop.wait(backoff):
                    return
                self._spawn(child)

    # -- stopping ---------------------------------------------------------
    def stop(self, timeout: float) -> None:
        """Stop in reverse start order, each process drained before the next is
        asked: the edge stops taking requests while the services behind it can
        still finish theirs. Whatever is left at ``timeout`` is killed."""
        self._stopping = True
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            if child.process is None:
                continue
            self._signal(child, signal.SIGTERM)
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", child.spec.name)
        # Kill each whole group: the leader may be gone while its helpers linger.
        for child in self.children:
            self._signal(child, signal.SIGKILL)
            if child.process is not None:
                child.process.wait()
            if child._pump is not None:
                child._pump.join(timeout=5)
            self._remove_leftovers(child)

    @staticmethod
    def _remove_leftovers(child: Child) -> None:
        for pattern in child.spec.leftovers:
            for path in glob.glob(pattern):
                with contextlib.suppress(OSError):
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path)
                    else:
                        os.unlink(path)
                    log.info("removed %s left by %s", path, child.spec.name)

    @staticmethod
    def _signal(child: Child, sig: signal.Signals) -> None:
        if child.process is None:
            return
        try:
            os.killpg(child.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
