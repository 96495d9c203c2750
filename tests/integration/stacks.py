"""Building blocks of the test stacks: a configuration on free loopback ports, and
the tiny models an earlier stack of the session already generated."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from services.stack.config import StackConfig
from services.stack.models import TINY_RVC_DIR, TINY_SPARK_DIR

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
