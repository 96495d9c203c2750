"""Small handlers the worker pool tests run in real worker processes."""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from services.common.errors import InvalidArgument


class TestHandler:
    __test__ = False  # not a pytest test class

    def __init__(self, device: str) -> None:
        self.device = device
        self.jobs = 0

    def handle(self, op: str, meta: dict, audio: np.ndarray | None) -> tuple[dict, np.ndarray | None]:
        self.jobs += 1
        reply = {"pid": os.getpid(), "device": self.device}
        if op == "echo":
            return dict(meta, **reply), audio
        if op == "sleep":
            time.sleep(meta["seconds"])
            return reply, None
        if op == "invalid":
            raise InvalidArgument(meta["message"])
        if op == "fail":
            raise RuntimeError("a bug with private details")
        if op == "crash":
            # Dies only in the named process, so a retry elsewhere succeeds.
            if meta.get("crash_if_pid") in (None, os.getpid()):
                os.kill(os.getpid(), signal.SIGKILL)
            return reply, None
        if op == "exit":
            os._exit(meta.get("code", 3))
        if op == "numpy_meta":
            return {"value": np.float32(1.0)}, None
        raise InvalidArgument(f"unknown op {op!r}")

    def info(self) -> dict:
        return {"device": self.device, "jobs": self.jobs}


def make(
    device: str, fail: str | None = None, start_delay: float = 0.0, fail_if_exists: str = ""
) -> TestHandler:
    """The factory the pool calls in each worker."""
    if start_delay:
        time.sleep(start_delay)
    if fail:
        raise RuntimeError(fail)
    if fail_if_exists and os.path.exists(fail_if_exists):
        raise RuntimeError(f"{fail_if_exists} exists")
    return TestHandler(device)
