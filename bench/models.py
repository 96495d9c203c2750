"""The model weights a bench run serves, and the baseline loads: both the same files.

* tiny (default): the generated tiny random-weight models the local stack
  makes for itself when ``models/`` is empty; the baseline generates the same
  ones (same generators, same seed) in a temporary folder.
* full size (``--full-size``): random weights with the layer sizes of the
  real checkpoints (Spark-TTS-0.5B; HuBERT base, RMVPE and the WebUI's
  synthesizers), written once into a cache folder laid out as a ``models/``
  folder (``Spark-TTS-0.5B/``, ``rvc/``, ``rvc-assets/``, ``voices/``), which
  the stack is started on. Compute is then real-size, so speed is real,
  although the speech is noise.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FULL_RVC_DIR = "generated-rvc-full"


@dataclass(frozen=True)
class ModelDirs:
    models_dir: Path | None  # the stack's models folder; None: it generates tiny ones
    spark: Path
    rvc_voices: Path
    rvc_assets: Path


def tiny(root: Path) -> ModelDirs:
    from bench.baseline_inputs import generate_tiny_models

    spark, voices, assets = generate_tiny_models(root)
    return ModelDirs(None, spark, voices, assets)


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() or link.exists():
        if link.resolve() == target.resolve():
            return
        raise FileExistsError(f"{link} exists and is not a link to {target}: remove it")
    link.symlink_to(os.path.relpath(target, link.parent))


def full_size(root: Path, seed: int = 0) -> ModelDirs:
    """Full-size random-weight models under ``root``, written unless already current."""
    from localstack.prepare.models import (
        DEMO_RVC_MODEL,
        RVC_ASSETS_DIR,
        SPARK_DIR,
        VOICES_DIR,
        write_demo_profiles,
    )
    from services.rvc import tiny_models as rvc_models
    from spark_tts import tiny_models as spark_models

    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    spark = root / SPARK_DIR
    if not spark_models.is_current(spark, seed, size="full"):
        log.warning("writing full-size random-weight Spark TTS to %s (a few GB)", spark)
        spark_models.write_tiny_model(spark, seed, size="full")
    rvc = root / FULL_RVC_DIR
    if not rvc_models.is_current(rvc, seed, size="full"):
        log.warning("writing full-size random-weight RVC models to %s", rvc)
        rvc_models.write_tiny_models(rvc, seed, size="full")
    # The stack's layout: models/rvc (voices), models/rvc-assets, models/voices.
    _link(root / "rvc", rvc / "voices")
    _link(root / RVC_ASSETS_DIR, rvc / "assets")
    write_demo_profiles(root / VOICES_DIR, DEMO_RVC_MODEL, engine="spark")
    return ModelDirs(root, spark, root / "rvc", root / RVC_ASSETS_DIR)
