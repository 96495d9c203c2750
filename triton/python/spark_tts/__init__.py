"""Spark TTS model code: pure PyTorch modules and helpers, no serving code."""

import importlib.util
import sys
from pathlib import Path


def _hide_model_repository_folder() -> None:
    """Keep the repository's ``triton/`` folder from passing for OpenAI Triton.

    With the repository root on ``sys.path`` (pytest, ``python -m`` from the
    root) and no real ``triton`` package installed (CPU torch), Python would
    import that folder as a namespace package named ``triton``, and torch
    would then take it for its GPU compiler and fail. A real installation is
    a regular package and is left alone.
    """
    if "triton" in sys.modules:
        return
    spec = importlib.util.find_spec("triton")
    ours = Path(__file__).resolve().parents[2]
    if spec is not None and spec.origin is None and spec.submodule_search_locations:
        if all(Path(p).resolve() == ours for p in spec.submodule_search_locations):
            sys.modules["triton"] = None  # `import triton` now raises ImportError


_hide_model_repository_folder()
