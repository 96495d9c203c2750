"""Building blocks of the test stacks: a configuration on free loopback ports, and
the tiny models an earlier stack of the session already generated."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from services.stack import components
from services.stack.components import envoy_binary
from services.stack.config import StackConfig
from services.stack.models import TINY_RVC_DIR, TINY_SPARK_DIR
from services.stack.supervisor import Supervisor

REPO = Path(__file__).resolve().parents[2]


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


@contextlib.contextmanager
def supervised(config: StackConfig) -> Iterator[Supervisor]:
    """The whole stack of ``config``, started, ready, and stopped on leaving.

    As under `make run`, a process that dies is restarted: one crash fails the tests
    it hits, not every test after it.
    """
    supervisor = Supervisor(components.build(config, REPO), config.run_dir / "logs")
    stop = threading.Event()
    watcher = threading.Thread(target=lambda: supervisor.watch(stop), daemon=True)
    try:
        # Generous: a loaded machine takes longer to bring Triton up; readiness ends the wait.
        supervisor.start(timeout=300)
        watcher.start()
        yield supervisor
    finally:
        stop.set()
        if watcher.is_alive():
            watcher.join(timeout=15)
        supervisor.stop(timeout=30)


def run_envoy(config: Path, admin: int, folder: Path, stdout=subprocess.DEVNULL) -> subprocess.Popen:
    """Envoy on ``config`` (one worker), ready (its admin port ``admin`` says so); its log
    in ``folder``/envoy.log, which a failed start shows."""
    with open(folder / "envoy.log", "wb") as stderr:
        process = subprocess.Popen(
            [envoy_binary(), "-c", str(config), "--disable-hot-restart", "--log-level", "warning",
             "--concurrency", "1"], stdout=stdout, stderr=stderr)
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None and time.monotonic() < deadline, \
            (folder / "envoy.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1) as ready:
                if ready.status == 200:
                    return process
        except OSError:
            pass
        time.sleep(0.05)


def vllm_metric(url: str, name: str) -> float:
    """The sum of a vLLM server's (at ``url``) Prometheus samples named ``name``."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))

