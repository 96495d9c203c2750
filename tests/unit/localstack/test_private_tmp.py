"""The launcher that gives tritonserver a /tmp of its own (localstack/supervise/private_tmp.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from localstack import components
from localstack.supervise.private_tmp import needed_entries


def test_the_entries_a_program_needs_are_found_in_its_arguments_environment_and_cwd():
    command = ["/opt/bin/tritonserver", "--model-repository=/tmp/run-a/model_repo", "/tmp/b"]
    environ = {"PATH": "/tmp/venv/bin:/usr/bin", "HOME": "/root", "X": "/tmpfoo/c", "Y": "/tmp/"}
    assert needed_entries(command, environ, "/tmp/run-a/here") == ["b", "run-a", "venv"]
    assert needed_entries(["/bin/true"], {}, "/work") == []


def run_private(private: Path, script: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    argv = components.with_private_tmp(private, ["/bin/sh", "-c", script, *args])
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_the_program_sees_its_own_tmp_and_the_paths_it_names(tmp_path):
    if not str(tmp_path).startswith("/tmp/"):
        pytest.skip(f"pytest's temporary directory {tmp_path} is not under /tmp")
    private = components.triton_tmp_dir(tmp_path / "run")
    name = f"python_env_{uuid.uuid4().hex[:8]}"
    (tmp_path / "input").write_text("kept")
    # As tritonserver's Python backend does: a directory of its own right in /tmp.
    result = run_private(private, f'mkdir /tmp/{name} && cat "$0"', tmp_path,
                         str(tmp_path / "input"))
    if "no /tmp of its own" in result.stderr:
        pytest.skip(f"this machine allows no private mount namespace: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    # tmp_path (under /tmp) is mounted back: the program reads what its argument names.
    assert result.stdout == "kept"
    assert (private / name).is_dir()
    assert not os.path.exists(f"/tmp/{name}")


def test_a_dead_programs_tmp_is_emptied_before_the_next_start(tmp_path):
    private = components.triton_tmp_dir(tmp_path / "run")
    (private / "python_env_abc123").mkdir()
    (private / ".hidden").write_text("x")
    assert components.triton_tmp_dir(tmp_path / "run") == private
    assert list(private.iterdir()) == []


def test_the_launcher_becomes_the_program():
    result = subprocess.run(
        components.with_private_tmp(Path("/nonexistent-dir-for-test"),
                                    [sys.executable, "-c", "import os; print(os.getpid())"]),
        capture_output=True, text=True, timeout=60, check=False,
    )
    # Even where the private /tmp cannot be set up (here: no such directory), the program runs.
    assert result.returncode == 0, result.stderr
    assert "no /tmp of its own" in result.stderr
