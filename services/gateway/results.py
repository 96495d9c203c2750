"""What the pipeline hands its callers: a request's synthesis, its pieces (one per
sentence, in order), the health of its stages, and why RVC was left out.

Plain data over decoded audio and stage timings: the pipeline makes them, the
metrics record them and the protocol adapters turn them into replies.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.audio import PcmAudio
from services.gateway.stages import Dependency, StageResult

# Why RVC was left out: the metrics' label, then the message callers see.
SKIP_MESSAGES = {
    "requested": "skip_rvc was requested",
    "no_voice_installed": "no RVC voice is installed",
    "no_default_voice": "no RVC voice was named and none is the default (set RVC_MODEL)",
}


@dataclass(frozen=True)
class Synthesis:
    audio: PcmAudio
    tts: StageResult
    rvc: StageResult | None
    rvc_skipped_reason: str
    first_audio_seconds: float
    total_seconds: float
    sentences: int = 1  # how many pieces the text was spoken in


@dataclass(frozen=True)
class Health:
    serving: bool
    dependencies: list[Dependency]


@dataclass(frozen=True)
class Piece:
    """One sentence's audio, in the order it was spoken."""

    index: int
    count: int
    audio: PcmAudio
    tts: StageResult
    rvc: StageResult | None
    rvc_skipped_reason: str
    first_audio_seconds: float  # from the request to this piece
    text: str = ""  # the sentence spoken
