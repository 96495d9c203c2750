"""OpenAI's speech API (POST /v1/audio/speech): the JSON request and the SSE events.

``voice`` names a voice profile, or an alias such as OpenAI's voice names
(services.gateway.voice_aliases). ``model`` is accepted as clients send it
(tts-1, gpt-4o-mini-tts, ...) and chooses nothing: the TTS service has two
engines, Spark TTS and Piper, and the voice profile picks one (its
``engine``: Spark TTS unless it says ``"piper"``); this route has no engine
field of its own. Audio is 24 kHz unless ``sample_rate`` (an extension) asks
otherwise, which is what clients that play OpenAI's raw ``pcm`` assume;
``seed`` (another) makes Spark TTS's sampling reproducible (Piper ignores it).
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass

from services.common.errors import InvalidArgument
from services.common.seeds import check_seed
from services.gateway.audio_formats import parse_format
from services.gateway.json_body import json_object

MAX_INPUT_CHARS = 4096
DEFAULT_SAMPLE_RATE = 24_000
STREAM_FORMATS = ("audio", "sse")
_FIELDS = (
    "model", "input", "voice", "response_format", "speed", "stream_format", "instructions",
    "sample_rate", "seed",
)


@dataclass(frozen=True)
class SpeechRequest:
    model: str
    input: str
    voice: str
    response_format: str = "mp3"
    speed: float = 1.0
    stream_format: str = "audio"  # "sse": base64 audio in server-sent events
    sample_rate: int = DEFAULT_SAMPLE_RATE
    seed: int | None = None


def _string(data: dict, name: str, default: str | None = None) -> str:
    value = data.get(name, default)
    if value is None:
        raise InvalidArgument(f"{name} is required")
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string")
    return value


def _voice(data: dict) -> str:
    # Newer clients may send a voice object {"id": ...} instead of a name.
    value = data.get("voice")
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument("voice is required: a voice profile or alias (GET /v1/voices)")
    return value.strip()


def _number(data: dict, name: str, kind: type, default):
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{name} must be a number")
    if isinstance(value, float) and not math.isfinite(value):  # JSON's NaN, Infinity, 1e999
        raise InvalidArgument(f"{name} must be a finite number")
    if kind is int and value != int(value):
        raise InvalidArgument(f"{name} must be a whole number")
    try:
        return kind(value)
    except OverflowError:  # an integer no float holds (JSON integers have no size limit)
        raise InvalidArgument(f"{name} is out of range") from None


def parse_request(content_type: str, body: bytes) -> SpeechRequest:
    """The request as OpenAI's clients send it: a JSON object.

    The body is read as JSON whatever its content type says (``curl -d``
    labels JSON as a form); only a multipart upload is refused outright.
    """
    media = content_type.split(";", 1)[0].strip().lower()
    if media.startswith("multipart/"):
        raise InvalidArgument(f"content type {media!r} is not accepted: send JSON")
    data = json_object(body)
    unknown = sorted(set(data).difference(_FIELDS))
    if unknown:
        # Named, not dropped: a misspelt "voise" would otherwise speak in another voice.
        names = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise InvalidArgument(f"unknown field{'s' if len(unknown) > 1 else ''} {names}: "
                              f"the fields are {', '.join(_FIELDS)}")
    text = _string(data, "input")
    if not text.strip():
        raise InvalidArgument("input is empty")
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidArgument(f"input is {len(text)} characters; the limit is {MAX_INPUT_CHARS}")
    stream_format = _string(data, "stream_format", "audio")
    if stream_format not in STREAM_FORMATS:
        raise InvalidArgument(f"stream_format {stream_format[:40]!r} is not one of {STREAM_FORMATS}")
    return SpeechRequest(
        model=_string(data, "model"),
        input=text,
        voice=_voice(data),
        response_format=parse_format(_string(data, "response_format", "mp3")),
        speed=_number(data, "speed", float, 1.0),
        stream_format=stream_format,
        sample_rate=_number(data, "sample_rate", int, DEFAULT_SAMPLE_RATE),
        seed=_seed(data),
    )


def _seed(data: dict) -> int | None:
    if data.get("seed") is None:
        return None
    return check_seed(_number(data, "seed", int, None))


def sse_event(payload: dict) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def audio_delta(data: bytes) -> bytes:
    return sse_event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})


def audio_done(input_chars: int) -> bytes:
    # There are no tokens to bill; the usage block keeps the event's documented shape.
    usage = {"input_tokens": input_chars, "output_tokens": 0, "total_tokens": input_chars}
    return sse_event({"type": "speech.audio.done", "usage": usage})
