"""Cancelling a BLS sub-request that Triton's Python API cannot cancel.

This Triton's BLS response iterators have no cancel(), so when a client
abandons a ``spark_tts`` stream the orchestrator raises a flag, a file named
after the ``llm`` request's id in a directory both processes share, and
the ``llm`` model checks it between tokens.
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class CancelFlags:
    def __init__(self, directory: str = "") -> None:
        self.root = Path(directory or Path(tempfile.gettempdir()) / "spark_tts_cancel")
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, request_id: str) -> Path | None:
        return self.root / request_id if _SAFE_ID.match(request_id or "") else None

    def set(self, request_id: str) -> None:
        path = self._path(request_id)
        if path is not None:
            path.touch()
        self.sweep()

    def sweep(self, older_than: float = 600.0) -> None:
        """Drop flags nobody cleared (their generation had already ended)."""
        limit = time.time() - older_than
        for stale in self.root.iterdir():
            try:
                if stale.stat().st_mtime < limit:
                    stale.unlink()
            except FileNotFoundError:
                pass

    def is_set(self, request_id: str) -> bool:
        path = self._path(request_id)
        return path is not None and path.exists()

    def clear(self, request_id: str) -> None:
        path = self._path(request_id)
        if path is not None:
            path.unlink(missing_ok=True)
