"""What model weights the local stack will run on, said out loud."""

from __future__ import annotations

from pathlib import Path


def describe_models(models_dir: Path) -> list[str]:
    """Warnings to print when the stack starts without real weights."""
    warnings = []
    spark = models_dir / "Spark-TTS-0.5B"
    if not (spark / "config.yaml").is_file():
        warnings.append(
            f"NO SPARK TTS WEIGHTS under {spark}: TTS requests answer UNIMPLEMENTED until "
            "the Spark TTS model lands (issue #3); it will then fall back to generated "
            "small random-weight models."
        )
    rvc = models_dir / "rvc"
    if not rvc.is_dir() or not any(rvc.glob("**/*.pth")):
        warnings.append(
            f"NO RVC VOICES under {rvc}: the gateway returns TTS audio unconverted "
            "(rvc_applied=false); RVC inference itself lands with issue #4."
        )
    return warnings
