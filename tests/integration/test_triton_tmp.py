"""Triton's temporary files stay in the stack's run directory, even when it is killed.

tritonserver's Python backend makes a /tmp/python_env_XXXXXX directory when it
starts (the path is fixed in its code: TMPDIR does not move it) and removes it
only when it exits cleanly, so every killed tritonserver left one behind. The
stack runs tritonserver with a /tmp of its own, the run directory's triton-tmp,
cleared before each start.
"""

from __future__ import annotations

import glob
import os
import signal
import threading
from pathlib import Path

import pytest

from tests.integration.stacks import only, reuse_models, stack_config, supervised


def python_envs(folder) -> set[str]:
    return set(glob.glob(os.path.join(str(folder), "python_env_*")))


def _started(pid: int) -> float:
    """When process ``pid`` started, in seconds since the epoch."""
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime "))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def foreign(paths: set[str], ours: int) -> set[str]:
    """Those of ``paths`` that other tritonservers sharing the system's /tmp made as they
    started (another checkout's test stack on a shared machine), not ours."""
    starts = []
    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        try:
            if pid == ours or Path(f"/proc/{pid}/comm").read_text().strip() != "tritonserver":
                continue
            if os.path.samefile(f"/proc/{pid}/root/tmp", "/tmp"):
                starts.append(_started(pid))
        except OSError:
            continue
    return {path for path in paths
            if any(0 <= os.stat(path).st_mtime - start < 30 for start in starts)}


def new_in_system_tmp(before: set[str], ours: int) -> set[str]:
    new = python_envs("/tmp") - before
    return new - foreign(new, ours)


def test_a_killed_triton_leaves_no_python_env_in_the_system_temp_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tritontmp")
    reuse_models(tmp_path_factory, run_dir)
    config = stack_config(run_dir)
    private = run_dir.resolve() / "triton-tmp"
    before = python_envs("/tmp")
    # Not watched at first: a restart would empty triton-tmp before the test looks in it.
    with supervised(config, only("triton"), watch=False) as running:
        (child,) = running.supervisor.children
        # /tmp as tritonserver sees it, through its mount namespace.
        if not os.path.samefile(f"/proc/{child.process.pid}/root/tmp", private):
            pytest.skip(f"tritonserver got no /tmp of its own here:\n{running.supervisor.tail(child)}")
        made = python_envs(private)
        os.kill(child.process.pid, signal.SIGKILL)
        child.process.wait(timeout=30)
        left = new_in_system_tmp(before, child.process.pid)
        assert left == set(), f"the killed tritonserver left {left} in /tmp"
        # Its Python backend made it in the run directory, where it stays until the next start.
        assert len(made) == 1 and python_envs(private) == made, made
        (private / "stale-marker").write_text("from the first run")
        # The supervisor restarts it (as after a crash): its temp dir is cleared first.
        running.watch(poll=0.2)
        assert running.supervisor.wait_started("triton", 2, timeout=60)
        # Ready again (a StackError, with its log's tail, if it exits or takes longer).
        running.supervisor.wait_ready(300, threading.Event())
        assert not (private / "stale-marker").exists()
        now = python_envs(private)
        assert len(now) == 1 and not now & made, (made, now)
    assert new_in_system_tmp(before, child.process.pid) == set()
