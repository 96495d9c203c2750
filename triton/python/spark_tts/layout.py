"""The official Spark-TTS-0.5B directory layout and its top-level config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

BICODEC_DIR = "BiCodec"
LLM_DIR = "LLM"
WAV2VEC2_DIR = "wav2vec2-large-xlsr-53"
# 16 kHz audio at 50 semantic tokens a second.
SAMPLES_PER_TOKEN = 320
# Wav2vec2 hidden states that BiCodec's encoder was trained on, averaged.
WAV2VEC2_MIX_LAYERS = (11, 14, 16)


@dataclass(frozen=True)
class SparkConfig:
    """Values of ``<model_dir>/config.yaml`` that inference uses."""

    sample_rate: int = 16_000
    latent_hop_length: int = 320
    ref_segment_duration: float = 6.0
    volume_normalize: bool = True

    @property
    def ref_segment_samples(self) -> int:
        """Reference clip length for the speaker encoder: whole latent hops."""
        raw = int(self.sample_rate * self.ref_segment_duration)
        return raw // self.latent_hop_length * self.latent_hop_length


def read_yaml(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def load_spark_config(model_dir: Path) -> SparkConfig:
    raw = read_yaml(Path(model_dir) / "config.yaml")
    return SparkConfig(
        sample_rate=int(raw.get("sample_rate", 16_000)),
        latent_hop_length=int(raw.get("latent_hop_length", 320)),
        ref_segment_duration=float(raw.get("ref_segment_duration", 6.0)),
        volume_normalize=bool(raw.get("volume_normalize", True)),
    )


def check_layout(model_dir: Path) -> None:
    """Fail early, naming the first missing piece of the official layout."""
    model_dir = Path(model_dir)
    needed = [
        model_dir / "config.yaml",
        model_dir / BICODEC_DIR / "config.yaml",
        model_dir / BICODEC_DIR / "model.safetensors",
        model_dir / LLM_DIR / "config.json",
        model_dir / WAV2VEC2_DIR / "config.json",
    ]
    for path in needed:
        if not path.is_file():
            raise FileNotFoundError(f"Spark TTS model directory {model_dir} lacks {path.name} "
                                    f"({path.relative_to(model_dir)})")
