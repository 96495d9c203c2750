"""Which model weights the local stack runs on, prepared and said out loud."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

SPARK_DIR = "Spark-TTS-0.5B"
TINY_SPARK_DIR = "Spark-TTS-tiny"


def spark_model_dir(models_dir: Path, run_dir: Path, env: dict[str, str]) -> Path:
    """The real checkpoint when installed, else generated tiny random weights."""
    real = models_dir / SPARK_DIR
    if (real / "config.yaml").is_file():
        log.info("Spark TTS: using the weights in %s", real)
        return real.resolve()
    tiny = run_dir / "models" / TINY_SPARK_DIR
    current = subprocess.run(
        [sys.executable, "-c",
         f"import sys, spark_tts.tiny_models as t; sys.exit(0 if t.is_current({str(tiny)!r}) else 1)"],
        env=env, check=False,
    ).returncode == 0
    if not current:
        subprocess.run(
            [sys.executable, "-m", "spark_tts.tiny_models", str(tiny)],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )
    log.warning(
        "NO SPARK TTS WEIGHTS under %s (run `make models` to download them): serving "
        "GENERATED TINY RANDOM-WEIGHT models from %s. The pipeline runs end to end, "
        "but the speech is noise.", real, tiny,
    )
    return tiny.resolve()


def describe_rvc(models_dir: Path) -> list[str]:
    """Warnings to print when the stack starts without RVC voices."""
    rvc = models_dir / "rvc"
    if not rvc.is_dir() or not any(rvc.glob("**/*.pth")):
        return [
            f"NO RVC VOICES under {rvc}: the gateway returns TTS audio unconverted "
            "(rvc_applied=false); RVC inference itself lands with issue #4."
        ]
    return []
