"""What the in-process baseline is given (BaselineInputs), and inputs on
generated tiny models for tests and smoke runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.common.audio import PcmAudio

DEFAULT_RVC_VOICE = "untrained-v2-f0-48k"
TINY_SPARK_DIR = "Spark-TTS-tiny"
TINY_RVC_DIR = "rvc-untrained"


@dataclass(frozen=True)
class BaselineInputs:
    """What every baseline request gets; request i speaks ``texts[i % len(texts)]``."""

    texts: tuple[str, ...]
    reference: PcmAudio  # the TTS speaker's reference clip (any rate, mono or not)
    rvc_clip: PcmAudio  # the clip the ``rvc`` scenario converts
    spark_model_dir: Path
    rvc_voices_dir: Path
    rvc_assets_dir: Path
    seed: int = 1234
    max_tokens: int | None = None  # lowers token_cap(text) as the service's TTS_MAX_TOKENS does
    reference_text: str = ""
    rvc_voice: str = DEFAULT_RVC_VOICE
    f0_method: str = "pm"
    device: str = "cpu"
    torch_threads: int | None = None  # None: torch's default, a thread per core
    warmup: bool = True
    speaker_cache: bool = True
    sentence_chars: int = 200
    lookahead: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.texts, str):
            object.__setattr__(self, "texts", (self.texts,))
        if not self.texts or not all(t.strip() for t in self.texts):
            raise ValueError("texts must hold at least one non-empty text")


def generate_tiny_models(root: Path, seed: int = 0) -> tuple[Path, Path, Path]:
    """(Spark model dir, RVC voices dir, RVC assets dir) of generated tiny models under ``root``.

    The generators the stack runs when no real weights are installed
    (``spark_tts.tiny_models``, ``services.rvc.tiny_models``); kept when current.
    """
    from services.rvc import tiny_models as rvc_tiny
    from spark_tts import tiny_models as spark_tiny

    root = Path(root)
    spark, rvc = root / TINY_SPARK_DIR, root / TINY_RVC_DIR
    if not spark_tiny.is_current(spark, seed):
        spark_tiny.write_tiny_model(spark, seed)
    if not rvc_tiny.is_current(rvc, seed):
        rvc_tiny.write_tiny_models(rvc, seed)
    return spark.resolve(), (rvc / "voices").resolve(), (rvc / "assets").resolve()


def synthetic_clip(seconds: float = 3.0, rate: int = 16_000) -> PcmAudio:
    """The stack's demo reference signal (voiced, syllable-paced) standing in for a recording."""
    from localstack.prepare.models import demo_reference

    return PcmAudio(demo_reference(seconds, rate), rate)


def tiny_inputs(root: Path, texts: tuple[str, ...], **overrides) -> BaselineInputs:
    """Inputs on generated tiny models under ``root`` (for tests and smoke runs)."""
    spark, voices, assets = generate_tiny_models(root)
    clip = synthetic_clip()
    return BaselineInputs(
        texts=texts, reference=clip, rvc_clip=clip, spark_model_dir=spark,
        rvc_voices_dir=voices, rvc_assets_dir=assets, **overrides,
    )
