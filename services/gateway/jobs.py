"""What to say, in which voice, and how: one request to the pipeline.

Every way in (gRPC, the old HTTP form, OpenAI's speech JSON) becomes a
``SpeechJob``. A named voice profile fills in whatever the request leaves
unset; fields the request sets win.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.errors import InvalidArgument
from services.gateway.audio_formats import check_sample_rate
from services.gateway.speech_params import (
    Conversion,
    Engine,
    PiperChoice,
    Sampling,
    Speaker,
)
from services.gateway.voices import VoiceBook

MIN_SPEED, MAX_SPEED = 0.25, 4.0


@dataclass(frozen=True)
class SpeechJob:
    text: str
    speaker: Speaker
    sampling: Sampling
    conversion: Conversion
    skip_rvc: bool = False
    sample_rate: int = 0  # output rate; 0 keeps the rate the last stage produced
    speed: float = 1.0  # tempo of the speech, pitch unchanged
    engine: int = Engine.UNSPECIFIED  # the TTS service's default when unset
    piper: PiperChoice = field(default_factory=PiperChoice)

    def __post_init__(self) -> None:
        if not self.speaker.source and self.engine != Engine.PIPER:
            raise InvalidArgument(
                "no speaker: name a voice profile, or give a reference clip, a speaker_id "
                "or a voice description, or choose the piper engine"
            )
        check_sample_rate(self.sample_rate)
        if not MIN_SPEED <= self.speed <= MAX_SPEED:
            raise InvalidArgument(f"speed {self.speed} is outside {MIN_SPEED}..{MAX_SPEED}")


def build_job(
    voices: VoiceBook,
    voice: str,
    text: str,
    speaker: Speaker | None = None,
    sampling: Sampling | None = None,
    conversion: Conversion | None = None,
    skip_rvc: bool = False,
    sample_rate: int = 0,
    speed: float = 1.0,
    engine: int = Engine.UNSPECIFIED,
    piper: PiperChoice | None = None,
) -> SpeechJob:
    """A job from request fields, completed by the profile ``voice`` (or the default one)."""
    resolved = voices.resolve(
        voice.strip(),
        speaker or Speaker(),
        sampling or Sampling(),
        conversion or Conversion(),
        skip_rvc,
        engine,
        piper or PiperChoice(),
    )
    return SpeechJob(text, resolved.speaker, resolved.sampling, resolved.conversion,
                     resolved.skip_rvc, sample_rate, speed, resolved.engine, resolved.piper)
