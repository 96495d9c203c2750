"""What to say, in which voice, and how: one request to the pipeline.

Every way in (gRPC, the old HTTP form, OpenAI's speech JSON) becomes a
``SpeechJob``. A named voice profile fills in whatever the request leaves
unset; fields the request sets win.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    engine: int = tts_pb2.ENGINE_UNSPECIFIED  # the TTS service's default when unset
    piper: tts_pb2.PiperOptions = field(default_factory=tts_pb2.PiperOptions)

    def __post_init__(self) -> None:
        if not self.speaker.WhichOneof("source") and self.engine != tts_pb2.ENGINE_PIPER:
            raise InvalidArgument(
                "no speaker: name a voice profile, or give a reference clip, a speaker_id "
                "or a voice description, or choose the piper engine"
            )
        if self.speaker.WhichOneof("source") == "reference" and not self.speaker.reference.audio.pcm:
            # Refused whatever the engine (Piper ignores a clip): an empty one is a mistake.
            raise InvalidArgument("speaker.reference.audio is empty (no PCM bytes)")
        check_sample_rate(self.sample_rate)
        if not MIN_SPEED <= self.speed <= MAX_SPEED:
            raise InvalidArgument(f"speed {self.speed} is outside {MIN_SPEED}..{MAX_SPEED}")

    def tts_request(self, text: str, speaker: tts_pb2.SpeakerPrompt | None = None,
                    sampling: tts_pb2.SamplingParams | None = None,
                    ) -> tts_pb2.SynthesizeSpeechRequest:
        """The TTS service's request for ``text`` (a sentence, or the whole text)."""
        return tts_pb2.SynthesizeSpeechRequest(
            text=text, speaker=speaker or self.speaker, sampling=sampling or self.sampling,
            engine=self.engine, piper=self.piper,
        )


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
    engine: int = tts_pb2.ENGINE_UNSPECIFIED,
    piper: tts_pb2.PiperOptions | None = None,
) -> SpeechJob:
    """A job from request fields, completed by the profile ``voice`` (or the default one)."""
    resolved = voices.resolve(
        voice.strip(),
        speaker or tts_pb2.SpeakerPrompt(),
        sampling or tts_pb2.SamplingParams(),
        conversion or rvc_pb2.ConversionParams(),
        skip_rvc,
        engine,
        piper,
    )
    return SpeechJob(text, resolved.speaker, resolved.sampling, resolved.conversion,
                     resolved.skip_rvc, sample_rate, speed, resolved.engine, resolved.piper)


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
        engine=request.engine,
        piper=request.piper,
    )
