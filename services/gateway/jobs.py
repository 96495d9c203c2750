"""What to say, in which voice, and how: one request to the pipeline.

Every way in (gRPC, the old HTTP form, OpenAI's speech JSON) becomes a
``SpeechJob``. A named voice profile fills in whatever the request leaves
unset; fields the request sets win.
"""

from __future__ import annotations

from dataclasses import dataclass

from voice.v1 import gateway_pb2, rvc_pb2, tts_pb2

from services.common.errors import InvalidArgument
from services.gateway.audio_formats import check_sample_rate
from services.gateway.voices import VoiceBook

MIN_SPEED, MAX_SPEED = 0.25, 4.0


@dataclass(frozen=True)
class SpeechJob:
    text: str
    speaker: tts_pb2.SpeakerPrompt
    sampling: tts_pb2.SamplingParams
    conversion: rvc_pb2.ConversionParams
    skip_rvc: bool = False
    sample_rate: int = 0  # output rate; 0 keeps the rate the last stage produced
    speed: float = 1.0  # tempo of the speech, pitch unchanged

    def __post_init__(self) -> None:
        if not self.speaker.WhichOneof("source"):
            raise InvalidArgument(
                "no speaker: name a voice profile, or give a reference clip, a speaker_id "
                "or a voice description"
            )
        check_sample_rate(self.sample_rate)
        if not MIN_SPEED <= self.speed <= MAX_SPEED:
            raise InvalidArgument(f"speed {self.speed} is outside {MIN_SPEED}..{MAX_SPEED}")


def build_job(
    voices: VoiceBook,
    voice: str,
    text: str,
    speaker: tts_pb2.SpeakerPrompt | None = None,
    sampling: tts_pb2.SamplingParams | None = None,
    conversion: rvc_pb2.ConversionParams | None = None,
    skip_rvc: bool = False,
    sample_rate: int = 0,
    speed: float = 1.0,
) -> SpeechJob:
    """A job from request fields, completed by the profile ``voice`` (or the default one)."""
    speaker, sampling, conversion, skip_rvc = voices.resolve(
        voice.strip(),
        speaker or tts_pb2.SpeakerPrompt(),
        sampling or tts_pb2.SamplingParams(),
        conversion or rvc_pb2.ConversionParams(),
        skip_rvc,
    )
    return SpeechJob(text, speaker, sampling, conversion, skip_rvc, sample_rate, speed)


def from_request(voices: VoiceBook, request: gateway_pb2.SynthesizeRequest) -> SpeechJob:
    return build_job(
        voices,
        request.voice,
        request.text,
        request.speaker,
        request.sampling,
        request.conversion,
        request.skip_rvc,
        request.sample_rate,
    )
