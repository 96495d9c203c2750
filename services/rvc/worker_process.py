"""The main loop of one spawned worker process: build the handler, then run jobs.

A handler is made by ``factory(device, **handler_args)`` once, after spawn (load
models there), and must provide ``handle(op, meta, audio) -> (meta, audio)``
and ``info() -> dict``. Its ServiceErrors go back to the caller by class name;
any other exception is logged here and reported as an internal error.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol

import numpy as np

from services.common.errors import ServiceError
from services.common.logs import JsonFormatter, configure_logging
from services.common.process import die_with_parent, set_process_name
from services.common.request_context import set_request
from services.rvc import worker_protocol as protocol

log = logging.getLogger(__name__)


class Handler(Protocol):
    def handle(
        self, op: str, meta: dict, audio: np.ndarray | None
    ) -> tuple[dict, np.ndarray | None]: ...

    def info(self) -> dict: ...


def _log_format() -> str:
    root = logging.getLogger().handlers
    return "json" if any(isinstance(h.formatter, JsonFormatter) for h in root) else "text"


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to know, pickled to it by the spawn start method."""

    index: int
    device: str
    handler: str
    handler_args: dict
    name: str
    parent_pid: int
    # Workers log as the service does; these defaults are read in the parent.
    log_level: int = field(default_factory=lambda: logging.getLogger().getEffectiveLevel())
    log_format: str = field(default_factory=_log_format)


def load_factory(path: str) -> Callable[..., Handler]:
    """Resolve ``"package.module:factory"``."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"handler {path!r} is not 'package.module:factory'")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


class _WorkerField(logging.Filter):
    """Stamps each record with the worker's index (a field of its own in JSON logs)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        return True


def main(spec: WorkerSpec, conn: Connection) -> None:
    """Entry point of the spawned process."""
    if not die_with_parent(spec.parent_pid):
        return  # the service is already gone
    # Ctrl-C reaches the whole process group; the parent decides how we stop.
    # The parent spawned us with SIGINT blocked, so no KeyboardInterrupt can land before this.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    set_process_name(f"{spec.name}-{spec.index}")
    configure_logging(spec.name, "INFO", spec.log_format)
    logging.getLogger().setLevel(spec.log_level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerField(spec.index))

    try:
        worker = load_factory(spec.handler)(spec.device, **spec.handler_args)
        info = _info(worker)
    except Exception as exc:
        log.exception("worker %d could not start on %s", spec.index, spec.device)
        _send_quietly(conn, {"kind": "start_failed", "error": f"{type(exc).__name__}: {exc}"})
        raise SystemExit(1) from None

    log.info("worker %d ready on %s (pid %d)", spec.index, spec.device, os.getpid())
    try:
        protocol.send(conn, {"kind": "ready", "pid": os.getpid(), "info": info})
        while _serve_one(worker, conn):
            pass
    except (EOFError, BrokenPipeError):
        pass  # the parent closed its end: nothing left to serve
    log.info("worker %d stopping", spec.index)


def _serve_one(worker: Handler, conn: Connection) -> bool:
    """Run one job and reply; False once told to stop. A function, so the job's
    arrays are freed before waiting for the next one."""
    header, audio = protocol.receive(conn)
    kind = header.get("kind")
    if kind == "stop":
        return False
    if kind != "job":
        raise protocol.ProtocolError(f"unexpected message {kind!r}")
    job_id, op = header["id"], header["op"]
    set_request(header.get("request_id", ""), None)
    started = time.perf_counter()

    def reply(kind: str, audio: np.ndarray | None = None, **fields: Any) -> tuple:
        fields.update(kind=kind, id=job_id, info=_info(worker),
                      seconds=time.perf_counter() - started)
        return protocol.encode(fields, audio)

    try:
        meta, out = worker.handle(op, header["meta"], audio)
        if type(meta) is not dict:
            raise TypeError(f"handle() returned {type(meta).__name__} meta, not dict")
        message = reply("result", out, meta=meta)
    except ServiceError as exc:
        names = [cls.__name__ for cls in type(exc).__mro__]
        message = reply("error", errors=names, message=str(getattr(exc, "message", exc)))
    except Exception as exc:
        log.exception("op %r failed", op)
        message = reply("error", errors=[], message=type(exc).__name__)
    protocol.write(conn, message)
    set_request("", None)  # later lines belong to no request
    return True


def _info(worker: Handler) -> dict:
    try:
        info = worker.info()
        protocol.check_plain(info, "info")
    except Exception:
        log.exception("info() failed; reporting none")
        return {}
    return info if type(info) is dict else {}


def _send_quietly(conn: Connection, header: protocol.Header) -> None:
    try:
        protocol.send(conn, header)
    except (OSError, TypeError):
        log.warning("could not tell the parent: %s", header)
