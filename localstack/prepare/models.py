"""Which model weights the local stack runs on, prepared and said out loud."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile

log = logging.getLogger(__name__)

SPARK_DIR = "Spark-TTS-0.5B"
TINY_SPARK_DIR = "Spark-TTS-tiny"
TINY_RVC_DIR = "rvc-untrained"
RVC_ASSETS_DIR = "rvc-assets"
VOICES_DIR = "voices"
PIPER_DIR = "piper"
DEMO_VOICE = "demo"
# The untrained voice the demo profile converts into, when the generated voices are served.
DEMO_RVC_MODEL = "untrained-v2-f0-48k"


def has_spark_weights(models_dir: Path) -> bool:
    return (models_dir / SPARK_DIR / "config.yaml").is_file()


def tts_engine(choice: str, models_dir: Path) -> str:
    """``auto``: Spark TTS on real weights, else Piper, said out loud."""
    if choice != "auto":
        return choice
    if has_spark_weights(models_dir):
        return "spark"
    log.warning("TTS: requests that name no engine go to PIPER (the packaged English "
                "voice speaks real words); Spark TTS runs on generated tiny weights")
    return "piper"


def piper_voices_dir(models_dir: Path) -> Path:
    """Extra Piper voices (``<name>.onnx`` + ``<name>.onnx.json``); the packaged one is built in."""
    return (models_dir / PIPER_DIR).resolve()


def spark_model_dir(models_dir: Path, run_dir: Path, env: dict[str, str]) -> Path:
    """The real checkpoint when installed, else generated tiny random weights."""
    real = models_dir / SPARK_DIR
    if has_spark_weights(models_dir):
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


def voices_dir(models_dir: Path, run_dir: Path, generated_rvc: bool,
               engine: str = "spark") -> tuple[Path, bool]:
    """The voice profiles, and whether they are the generated demos: ``<models_dir>/voices``
    when it has any, else ``demo`` (on ``engine``), ``demo-spark`` and ``demo-piper``."""
    own = models_dir / VOICES_DIR
    if own.is_dir() and any(own.glob("*.json")):
        log.info("voices: profiles in %s", own)
        return own.resolve(), False
    demo = write_demo_profiles(run_dir / VOICES_DIR, DEMO_RVC_MODEL if generated_rvc else "",
                               engine)
    log.warning("NO VOICE PROFILES under %s: serving the generated profiles %s from %s "
                "(%r, the default, speaks with %s)", own, ", ".join(DEMO_VOICES), demo,
                DEMO_VOICE, engine)
    return demo, True


DEMO_VOICES = (DEMO_VOICE, f"{DEMO_VOICE}-spark", f"{DEMO_VOICE}-piper")


def write_demo_profiles(folder: Path, rvc_model: str = "", engine: str = "spark") -> Path:
    """``folder`` with the generated profiles: ``demo-spark`` clones a synthetic reference
    clip, ``demo-piper`` speaks with Piper's default voice, and ``demo`` is the one of
    ``engine``. Each converts into ``rvc_model`` (with pm, for untrained voices) when
    one is named."""
    folder.mkdir(parents=True, exist_ok=True)
    soundfile.write(folder / f"{DEMO_VOICE}.wav", demo_reference(), 16_000, subtype="PCM_16")
    conversion = {
        "rvc_model": rvc_model,
        # pm: the quickest pitch estimator, for untrained voices that only show the flow.
        "rvc": {"f0_method": "pm"} if rvc_model else {},
    }
    spark = {
        "description": "generated demo: Spark TTS cloning a synthetic reference clip (no real voice)",
        "engine": "spark",
        "reference_audio": f"{DEMO_VOICE}.wav",
        "reference_text": "",
        **conversion,
    }
    piper = {
        "description": "generated demo: Piper's packaged English voice",
        "engine": "piper",
        **conversion,
    }
    profiles = {f"{DEMO_VOICE}-spark": spark, f"{DEMO_VOICE}-piper": piper,
                DEMO_VOICE: piper if engine == "piper" else spark}
    for name, profile in profiles.items():
        (folder / f"{name}.json").write_text(json.dumps(profile, indent=2) + "\n")
    return folder.resolve()


def demo_reference(seconds: float = 3.0, rate: int = 16_000) -> np.ndarray:
    """A voiced, syllable-paced harmonic signal standing in for a reference recording."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.5
    return (0.25 * voice * syllables / np.max(np.abs(voice))).astype(np.float32)
