"""The old server's HTTP contract: form fields in, WAV bytes out.

Requests arrive as raw bodies (``google.api.HttpBody`` through Envoy):
multipart/form-data as the old clients send it, URL-encoded forms, or JSON
with files as base64. Field names, types and defaults are the old server's.
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import json
import struct
import urllib.parse
from dataclasses import dataclass, field

import numpy as np
from voice.v1 import rvc_pb2, tts_pb2

from services.common.audio import PcmAudio, decode_container, to_mono
from services.common.audio_proto import audio_to_proto
from services.common.errors import InvalidArgument

_F0_METHODS = {
    "rmvpe": rvc_pb2.F0_METHOD_RMVPE,
    "crepe": rvc_pb2.F0_METHOD_CREPE,
    "crepe-tiny": rvc_pb2.F0_METHOD_CREPE_TINY,
    "harvest": rvc_pb2.F0_METHOD_HARVEST,
    "dio": rvc_pb2.F0_METHOD_DIO,
    "pm": rvc_pb2.F0_METHOD_PM,
}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)

    def text(self, name: str, default: str = "") -> str:
        return self.fields.get(name, default)

    def number(self, name: str, kind: type, default=None):
        raw = self.fields.get(name, "").strip()
        if not raw:
            return default
        try:
            return kind(raw)
        except ValueError:
            raise InvalidArgument(f"{name} {raw[:40]!r} is not a {kind.__name__}") from None

    def flag(self, name: str) -> bool:
        raw = self.fields.get(name, "").strip().lower()
        if raw in _TRUE:
            return True
        if raw in _FALSE:
            return False
        raise InvalidArgument(f"{name} {raw[:40]!r} is not true or false")

    def audio(self, name: str, required: bool = True) -> PcmAudio | None:
        data = self.files.get(name)
        if not data:
            if required:
                raise InvalidArgument(f"the file {name} is required")
            return None
        try:
            return to_mono(decode_container(data))
        except InvalidArgument as exc:
            raise InvalidArgument(f"{name}: {exc.message}") from None


def parse_form(content_type: str, body: bytes) -> Form:
    """The fields and files of a multipart, URL-encoded or JSON body."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        return _multipart(content_type, body)
    if media == "application/x-www-form-urlencoded":
        pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        return Form(fields=dict(pairs))
    if media in ("application/json", ""):
        return _json(body)
    raise InvalidArgument(
        f"content type {media!r} is not accepted: send multipart/form-data, a URL-encoded "
        "form or JSON"
    )


def _multipart(content_type: str, body: bytes) -> Form:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart() or message.defects:
        raise InvalidArgument("the multipart/form-data body cannot be parsed")
    form = Form()
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            form.files[name] = payload
        else:
            form.fields[name] = payload.decode("utf-8", "replace")
    return form


def _json(body: bytes) -> Form:
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidArgument("the JSON body must be an object")
    form = Form()
    for name, value in data.items():
        if name in ("reference_audio", "audio"):
            try:
                form.files[name] = base64.b64decode(str(value), validate=True)
            except binascii.Error:
                raise InvalidArgument(f"{name} is not base64") from None
        elif isinstance(value, bool):
            form.fields[name] = "true" if value else "false"
        elif value is not None:
            form.fields[name] = str(value)
    return form


def conversion_params(form: Form) -> rvc_pb2.ConversionParams:
    """The RVC fields of a legacy form; absent ones keep the WebUI defaults."""
    method = form.text("f0_method", "rmvpe").strip().lower()
    if method not in _F0_METHODS:
        raise InvalidArgument(f"f0_method {method[:40]!r} is unknown: use one of {sorted(_F0_METHODS)}")
    params = rvc_pb2.ConversionParams(
        model=form.text("model").strip(),
        pitch_shift=form.number("pitch_shift", int, 0),
        f0_method=_F0_METHODS[method],
        resample_sr=form.number("resample_sr", int, 0),
    )
    for name, kind in (("index_rate", float), ("filter_radius", int),
                       ("rms_mix_rate", float), ("protect", float)):
        value = form.number(name, kind)
        if value is not None:
            setattr(params, name, value)
    return params


def wav_bytes(audio: PcmAudio) -> bytes:
    """16-bit PCM WAV, as the old server answered."""
    pcm = pcm16(audio)
    return wav_header(audio.sample_rate, len(pcm)) + pcm


def pcm16(audio: PcmAudio) -> bytes:
    samples = to_mono(audio).samples
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """A mono PCM16 WAV header; ``None`` for a stream of unknown length (sizes set to max)."""
    data = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    return (
        b"RIFF" + struct.pack("<I", riff) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data" + struct.pack("<I", data)
    )


def tts_request(form: Form) -> tts_pb2.SynthesizeSpeechRequest:
    """``text`` in the voice of ``reference_audio`` (transcript ``reference_text``).

    ``seed`` (not in the old API, optional) makes the sampling reproducible.
    """
    reference = form.audio("reference_audio")
    seed = form.number("seed", int)
    if seed is not None and not 0 <= seed < 2**64:
        raise InvalidArgument(f"seed {seed} is outside 0..2^64-1")
    return tts_pb2.SynthesizeSpeechRequest(
        text=form.text("text"),
        speaker=tts_pb2.SpeakerPrompt(
            reference=tts_pb2.ReferenceAudio(
                audio=audio_to_proto(reference), transcript=form.text("reference_text")
            )
        ),
        sampling=tts_pb2.SamplingParams(seed=seed) if seed is not None else None,
    )


def multipart_part(boundary: str, audio: PcmAudio, headers: dict[str, str]) -> bytes:
    """One WAV part of a multipart/mixed stream, with its own headers."""
    lines = [f"--{boundary}", "Content-Type: audio/wav", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + wav_bytes(audio) + b"\r\n"
