"""voice.v1 Audio messages to and from ``PcmAudio``, for servicers and clients."""

from __future__ import annotations

from voice.v1 import audio_pb2

from services.common.audio import PcmAudio, SampleFormat, decode_pcm, encode_pcm
from services.common.errors import InvalidArgument

_FORMATS = {
    audio_pb2.SAMPLE_FORMAT_UNSPECIFIED: SampleFormat.S16LE,
    audio_pb2.SAMPLE_FORMAT_PCM_S16LE: SampleFormat.S16LE,
    audio_pb2.SAMPLE_FORMAT_PCM_F32LE: SampleFormat.F32LE,
}
_PROTO_FORMATS = {
    SampleFormat.S16LE: audio_pb2.SAMPLE_FORMAT_PCM_S16LE,
    SampleFormat.F32LE: audio_pb2.SAMPLE_FORMAT_PCM_F32LE,
}


def audio_from_proto(message: audio_pb2.Audio, what: str = "audio") -> PcmAudio:
    if message.sample_rate == 0:
        raise InvalidArgument(f"{what}.sample_rate is required")
    sample_format = _FORMATS.get(message.sample_format)
    if sample_format is None:
        raise InvalidArgument(f"{what}.sample_format {message.sample_format} is unknown")
    try:
        return decode_pcm(message.pcm, message.sample_rate, sample_format, message.channels or 1)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{what}: {exc.message}") from None


def audio_to_proto(
    audio: PcmAudio, sample_format: SampleFormat = SampleFormat.F32LE
) -> audio_pb2.Audio:
    return audio_pb2.Audio(
        pcm=encode_pcm(audio, sample_format),
        sample_rate=audio.sample_rate,
        sample_format=_PROTO_FORMATS[sample_format],
        channels=audio.channels,
    )
