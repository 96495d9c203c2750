"""Keeps the repository's ``triton/`` folder from being imported as OpenAI Triton.

Run from the repository root (``python -m services.rvc``, pytest), the root is
on ``sys.path``; with CPU torch no real ``triton`` package is installed, so
Python would import the model-repository folder as a namespace package named
``triton`` and torch (via transformers) would take it for its GPU compiler and
fail. A real installation is a regular package and is left alone. The Spark
TTS model code carries the same guard, as it runs without ``services``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]


def hide_model_repository_folder() -> None:
    if "triton" in sys.modules:
        return
    spec = importlib.util.find_spec("triton")
    if spec is None or spec.origin is not None or not spec.submodule_search_locations:
        return
    if all(Path(p).resolve() == _REPO / "triton" for p in spec.submodule_search_locations):
        sys.modules["triton"] = None  # `import triton` now raises ImportError, as torch expects
