"""Which model weights the local stack runs on, prepared and said out loud."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

SPARK_DIR = "Spark-TTS-0.5B"
TINY_SPARK_DIR = "Spark-TTS-tiny"
TINY_RVC_DIR = "rvc-untrained"
RVC_ASSETS_DIR = "rvc-assets"


def spark_model_dir(models_dir: Path, run_dir: Path, env: dict[str, str]) -> Path:
    """The real checkpoint when installed, else generated tiny random weights."""
    real = models_dir / SPARK_DIR
    if (real / "config.yaml").is_file():
        log.info("Spark TTS: using the weights in %s", real)
        return real.resolve()
    tiny = _generated("spark_tts.tiny_models", run_dir / "models" / TINY_SPARK_DIR, env)
    log.warning(
        "NO SPARK TTS WEIGHTS under %s (run `make models` to download them): serving "
        "GENERATED TINY RANDOM-WEIGHT models from %s. The pipeline runs end to end, "
        "but the speech is noise.", real, tiny,
    )
    return tiny


def _generated(generator: str, root: Path, env: dict[str, str]) -> Path:
    """``root`` as ``python -m <generator>`` writes it, regenerated only when out of date.

    Both generators offer ``is_current(root)``; they run in the services'
    environment, not the runner's.
    """
    check = f"import sys, {generator} as g; sys.exit(0 if g.is_current({str(root)!r}) else 1)"
    if subprocess.run([sys.executable, "-c", check], env=env, check=False).returncode != 0:
        subprocess.run(
            [sys.executable, "-m", generator, str(root)],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )
    return root.resolve()


def rvc_model_dirs(models_dir: Path, run_dir: Path, env: dict[str, str]) -> tuple[Path, Path]:
    """The voices folder and the assets folder the RVC service runs on, said out loud."""
    voices, assets = models_dir / "rvc", models_dir / RVC_ASSETS_DIR
    has_voices = voices.is_dir() and any(voices.glob("**/*.pth"))
    has_assets = (assets / "hubert_base.pt").is_file() or (assets / "hubert_base" / "config.json").is_file()
    if has_voices and has_assets:
        log.info("RVC: voices in %s, assets in %s", voices, assets)
        if not (assets / "rmvpe.pt").is_file():
            log.warning("RVC: no rmvpe.pt in %s: f0_method rmvpe (the default) will be refused; "
                        "run `make models` or ask for crepe, harvest, dio or pm", assets)
        return voices.resolve(), assets.resolve()
    tiny = _generated("services.rvc.tiny_models", run_dir / "models" / TINY_RVC_DIR, env)
    if not has_assets:
        log.warning(
            "NO RVC ASSETS (hubert_base, rmvpe.pt) under %s (run `make models`): the RVC "
            "workers run on GENERATED UNTRAINED content and pitch models from %s; any "
            "conversion is noise.", assets, tiny / "assets",
        )
    if not has_voices:
        log.warning(
            "NO RVC VOICES under %s: serving GENERATED UNTRAINED voices (untrained-*) from %s. "
            "None is the default, so the gateway returns TTS audio unconverted unless a "
            "request names one.", voices, tiny / "voices",
        )
    return (
        voices.resolve() if has_voices else tiny / "voices",
        assets.resolve() if has_assets else tiny / "assets",
    )
