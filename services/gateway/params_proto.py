"""services.gateway.speech_params to and from voice.v1 messages.

The adapters read a request's parameters with the ``*_from_proto`` functions;
the stage clients write the TTS and RVC services' requests with the
``*_to_proto`` ones. Field names are the same on both sides.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from google.protobuf.message import Message
from voice.v1 import gateway_pb2, rvc_pb2, tts_pb2

from services.common.audio_proto import audio_from_proto, audio_to_proto
from services.common.errors import InvalidArgument
from services.gateway.speech_params import (
    Control,
    Conversion,
    PiperChoice,
    Reference,
    Sampling,
    Speaker,
    SpeakerTokens,
    VoiceSpec,
)


def _fields_from(message: Message, kind: type) -> Any:
    """``kind``'s fields read off ``message``: an unset optional one is None."""
    descriptor = message.DESCRIPTOR.fields_by_name
    values = {}
    for item in dataclasses.fields(kind):
        field = descriptor[item.name]
        if field.has_presence and not message.HasField(item.name):
            values[item.name] = None
        else:
            values[item.name] = getattr(message, item.name)
    return kind(**values)


def _fields_to(params: Any, message_type: type[Message]) -> Message:
    """``params``' set fields as a ``message_type``; a number the field cannot
    hold is the caller's mistake."""
    message = message_type()
    for item in dataclasses.fields(params):
        value = getattr(params, item.name)
        if value is None:
            continue
        try:
            setattr(message, item.name, value)
        except (ValueError, TypeError):
            raise InvalidArgument(f"{item.name} {value} is out of range") from None
    return message


def sampling_from_proto(message: tts_pb2.SamplingParams) -> Sampling:
    return _fields_from(message, Sampling)


def sampling_to_proto(sampling: Sampling) -> tts_pb2.SamplingParams:
    return _fields_to(sampling, tts_pb2.SamplingParams)


def conversion_from_proto(message: rvc_pb2.ConversionParams) -> Conversion:
    return _fields_from(message, Conversion)


def conversion_to_proto(conversion: Conversion) -> rvc_pb2.ConversionParams:
    return _fields_to(conversion, rvc_pb2.ConversionParams)


def piper_from_proto(message: tts_pb2.PiperOptions) -> PiperChoice:
    return _fields_from(message, PiperChoice)


def piper_to_proto(piper: PiperChoice) -> tts_pb2.PiperOptions:
    return _fields_to(piper, tts_pb2.PiperOptions)


def speaker_from_proto(message: tts_pb2.SpeakerPrompt, what: str = "speaker") -> Speaker:
    source = message.WhichOneof("source")
    if source == "reference":
        if not message.reference.audio.pcm:
            raise InvalidArgument(f"{what}.reference.audio is empty (no PCM bytes)")
        audio = audio_from_proto(message.reference.audio, f"{what}.reference.audio")
        return Speaker(reference=Reference(audio, message.reference.transcript))
    if source == "speaker_id":
        return Speaker(speaker_id=message.speaker_id)
    if source == "control":
        control = message.control
        return Speaker(control=Control(control.gender, control.pitch, control.speed))
    if source == "tokens":
        return Speaker(tokens=tokens_from_proto(message.tokens))
    return Speaker()


def tokens_from_proto(message: tts_pb2.SpeakerTokens) -> SpeakerTokens:
    return SpeakerTokens(tuple(message.global_ids), tuple(message.semantic_ids), message.codec,
                         message.transcript)


def tokens_to_proto(tokens: SpeakerTokens) -> tts_pb2.SpeakerTokens:
    return tts_pb2.SpeakerTokens(global_ids=tokens.global_ids, semantic_ids=tokens.semantic_ids,
                                 transcript=tokens.transcript, codec=tokens.codec)


def speaker_to_proto(speaker: Speaker) -> tts_pb2.SpeakerPrompt:
    if speaker.tokens is not None:  # a profile's clip goes only if they are refused
        return tts_pb2.SpeakerPrompt(tokens=tokens_to_proto(speaker.tokens))
    if speaker.reference is not None:
        return tts_pb2.SpeakerPrompt(reference=tts_pb2.ReferenceAudio(
            audio=audio_to_proto(speaker.reference.audio),
            transcript=speaker.reference.transcript,
        ))
    if speaker.speaker_id:
        return tts_pb2.SpeakerPrompt(speaker_id=speaker.speaker_id)
    if speaker.control is not None:
        control = speaker.control
        return tts_pb2.SpeakerPrompt(control=tts_pb2.VoiceControl(
            gender=control.gender, pitch=control.pitch, speed=control.speed,
        ))
    return tts_pb2.SpeakerPrompt()


def voice_spec_from_proto(message: gateway_pb2.VoiceSpec) -> VoiceSpec:
    """The voice ``message`` describes."""
    if message.HasField("reference") and message.HasField("control"):
        raise InvalidArgument("give at most one of reference and control")
    if message.HasField("reference"):
        speaker = speaker_from_proto(tts_pb2.SpeakerPrompt(reference=message.reference), "voice")
    elif message.HasField("control"):
        speaker = speaker_from_proto(tts_pb2.SpeakerPrompt(control=message.control), "voice")
    else:
        speaker = Speaker()
    return VoiceSpec(
        name=message.name,
        description=message.description,
        speaker=speaker,
        engine=message.engine,
        piper=piper_from_proto(message.piper),
        conversion=conversion_from_proto(message.conversion),
        sampling=sampling_from_proto(message.sampling),
        skip_rvc=message.skip_rvc,
    )
