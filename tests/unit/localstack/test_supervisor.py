"""The supervisor with small real child processes."""

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from localstack.supervise.spec import ProcessSpec
from localstack.supervise.supervisor import StackError, Supervisor
from tests.processes import running, wait_until_gone

# Writes its pid (and a grandchild's) to a file once "ready", then waits.
CHILD = textwrap.dedent(
    """
    import os, subprocess, sys, time
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {grandchild.pid}")
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(600)
    """
)


def child_spec(tmp_path, name="child"):
    marker = tmp_path / f"{name}.pids"

    def ready():
        return marker.exists()

    spec = ProcessSpec(name, [sys.executable, "-c", CHILD, str(marker)], dict(os.environ), ready)
    return spec, marker


def pids(marker):
    return [int(p) for p in marker.read_text().split()]


def test_start_waits_for_readiness_and_stop_leaves_nothing(tmp_path):
    spec, marker = child_spec(tmp_path)
    supervisor = Supervisor([spec], tmp_path / "logs")
    supervisor.start(timeout=30)
    child, grandchild = pids(marker)
    assert running(child) and running(grandchild)
    supervisor.stop(timeout=5)
    assert wait_until_gone([child, grandchild]) == []


def test_a_child_that_dies_while_starting_is_reported_with_its_log(tmp_path):
    spec = ProcessSpec(
        "broken",
        [sys.executable, "-c", "import sys; print('cannot bind'); sys.exit(3)"],
        dict(os.environ),
        lambda: False,
    )
    supervisor = Supervisor([spec], tmp_path / "logs")
    with pytest.raises(StackError, match="broken exited with code 3") as caught:
        supervisor.start(timeout=30)
    assert "cannot bind" in str(caught.value)
    supervisor.stop(timeout=5)


def test_a_child_that_never_gets_ready_times_out(tmp_path):
    spec = ProcessSpec(
        "slow", [sys.executable, "-c", "import time; time.sleep(600)"], dict(os.environ),
        lambda: False,
    )
    supervisor = Supervisor([spec], tmp_path / "logs")
    with pytest.raises(StackError, match="not ready after 1 s: slow"):
        supervisor.start(timeout=1)
    pid = supervisor.children[0].process.pid
    supervisor.stop(timeout=5)
    assert wait_until_gone([pid]) == []


def test_a_dead_child_is_restarted(tmp_path):
    spec, marker = child_spec(tmp_path)
    supervisor = Supervisor([spec], tmp_path / "logs")
    supervisor.start(timeout=30)
    first, first_grandchild = pids(marker)
    marker.unlink()
    stop = threading.Event()
    watcher = threading.Thread(target=supervisor.watch, args=(stop, 0.05))
    watcher.start()
    try:
        os.kill(first, signal.SIGKILL)
        assert supervisor.wait_started("child", starts=2, timeout=30)
        supervisor.wait_ready(timeout=30, stop=threading.Event())  # probe passes again
        assert marker.exists()
        second, _ = pids(marker)
        assert second != first and running(second)
    finally:
        stop.set()
        watcher.join()
        supervisor.stop(timeout=5)
    assert wait_until_gone([first, second, first_grandchild]) == []


def test_children_die_with_a_killed_supervisor(tmp_path):
    """Even SIGKILL of the supervisor leaves no child behind (parent-death signal)."""
    spec_marker = tmp_path / "child.pids"
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path[:0] = {sys.path!r}
        from pathlib import Path
        from localstack.supervise.spec import ProcessSpec
        from localstack.supervise.supervisor import Supervisor
        marker = Path({str(spec_marker)!r})
        spec = ProcessSpec("child", [sys.executable, "-c", {CHILD!r}, str(marker)],
                           dict(os.environ), marker.exists)
        Supervisor([spec], Path({str(tmp_path / 'logs')!r})).start(timeout=30)
        print("ready", flush=True)
        import time; time.sleep(600)
        """
    )
    outer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    grandchild = None
    try:
        assert outer.stdout.readline().strip() == "ready"
        child, grandchild = pids(spec_marker)
        assert running(child)
        outer.kill()
        outer.wait()
        assert wait_until_gone([child]) == []
    finally:
        outer.kill()
        outer.wait()
        outer.stdout.close()
        # The child died with the supervisor before it could stop its own child,
        # which would otherwise sleep on for ten minutes after the test.
        if grandchild is not None and running(grandchild):
            os.kill(grandchild, signal.SIGKILL)
