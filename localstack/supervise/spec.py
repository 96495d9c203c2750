"""One supervised process: how it starts, when it is ready, what it leaves behind."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from localstack.supervise.probes import Probe


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    probe: Probe
    endpoints: list[tuple[str, str]] = field(default_factory=list)
    cwd: Path | None = None
    # Files the process may leave behind when it is killed (glob patterns); removed
    # once it has exited, before any restart.
    leftovers: tuple[str, ...] = ()
