"""A battery of bad (and odd but valid) inputs against the real stack.

Through the edge (the old multipart API, OpenAI's speech API, the transcoded
JSON routes, gRPC through Envoy) and straight at each service's gRPC port.
Every bad input gets INVALID_ARGUMENT or NOT_FOUND (HTTP 400/404 in the
edge's error shape) with a message naming the problem; every valid one is
served. After each case the gateway still reports SERVING, and the last test
runs a real conversion and a real synthesis.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import numpy as np
import pytest
import requests
import soundfile
from google.protobuf import json_format
from google.protobuf.message import Message
from voice.v1 import (
    audio_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    rvc_pb2,
    rvc_pb2_grpc,
    tts_pb2,
    tts_pb2_grpc,
)

MODEL = "untrained-v1-nof0-32k"  # an installed generated voice: no pitch estimation, quick
VOICE = "demo-spark"  # the stack's generated Spark TTS profile
TIMEOUT = 60
F32 = audio_pb2.SAMPLE_FORMAT_PCM_F32LE
S16 = audio_pb2.SAMPLE_FORMAT_PCM_S16LE
PORTS = {"edge": "api_port", "gateway": "gateway_port", "tts": "tts_port", "rvc": "rvc_port"}
STATUS_NAMES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 413: "RESOURCE_EXHAUSTED"}
LONG_TEXT = "Word after word, on and on. " * 3572  # 100,016 characters
MODEL_RATE = 32_000  # MODEL's output rate
SPARK_RATE = 16_000
# Seeds are the proto's uint64 on every route; one past it is refused in one wording.
PAST_SEED = 2**64
PAST_SEED_MESSAGE = "18446744073709551616 is outside 0..2^64-1"
LEGACY_SPEECH_ROUTES = ("/synthesize", "/synthesize/stream", "/synthesize/sse", "/tts")


# --- audio ---------------------------------------------------------------------------


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.3 * np.sin(2 * np.pi * 180 * t) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    return np.repeat(mono[:, None], channels, axis=1) if channels > 1 else mono


def wav(samples: np.ndarray, rate: int = 16_000, subtype: str = "PCM_16", fmt="WAV") -> bytes:
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format=fmt, subtype=subtype)
    return out.getvalue()


WAVE = tone(0.3, 16_000)
SPEECH = wav(WAVE)


def silent_flac(seconds: int = 610, rate: int = 48_000, channels: int = 2) -> bytes:
    """A decode bomb: 112 kB of FLAC, 234 MB of float32 samples."""
    out = io.BytesIO()
    with soundfile.SoundFile(out, "w", rate, channels, format="FLAC", subtype="PCM_16") as file:
        for _ in range(seconds // 10):
            file.write(np.zeros((rate * 10, channels), np.int16))
    return out.getvalue()


LONG_FLAC = silent_flac()


def without_length(flac: bytes) -> bytes:
    """``flac`` with STREAMINFO's total sample count zeroed, as a streaming writer leaves it."""
    data = bytearray(flac)
    data[21] &= 0xF0
    data[22:26] = bytes(4)
    return bytes(data)


def with_sizes(data: bytes, riff: int, chunk: int) -> bytes:
    """A 44-byte-header WAV with its RIFF and data sizes replaced."""
    assert data[36:40] == b"data"
    return data[:4] + struct.pack("<I", riff) + data[8:40] + struct.pack("<I", chunk) + data[44:]


def float_wav_with(value: float) -> bytes:
    samples = tone(0.3, 16_000).astype(np.float32)
    samples[100] = value
    return wav(samples, subtype="FLOAT")


def pcm(samples, rate=16_000, fmt=F32, channels=1) -> audio_pb2.Audio:
    dtype = "<f4" if fmt == F32 else "<i2"
    data = np.asarray(samples, np.float64)
    if fmt == S16:
        data = np.round(data * 32767)
    return audio_pb2.Audio(pcm=data.astype(dtype).tobytes(), sample_rate=rate,
                           sample_format=fmt, channels=channels)


def invalid_utf8(message: Message) -> bytes:
    """``message`` serialized with its one "é" swapped for bytes that are not UTF-8."""
    raw = message.SerializeToString()
    assert raw.count("é".encode()) == 1
    return raw.replace("é".encode(), b"\xff\xfe")


# --- HTTP cases ----------------------------------------------------------------------


@dataclass(frozen=True)
class Http:
    """One request to the edge; ``status`` 200 means it must succeed."""

    id: str
    path: str
    status: int
    fragment: str = ""  # in the error message; for a success, in the content type
    fields: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    body: bytes | None = None
    content_type: str = ""


def rvc_upload(id, data, status=200, fragment="audio/wav", filename="a.wav", **fields) -> Http:
    return Http(id, "/rvc", status, fragment, {"model": MODEL, **fields},
                {"audio": (filename, data, "audio/wav")})


def rvc_field(id, status, fragment, **fields) -> Http:
    return rvc_upload(id, SPEECH, status, fragment, **fields)


def speak(id, path, status, fragment, **fields) -> Http:
    """A legacy speech request in the demo voice, failing before any synthesis."""
    return Http(id, path, status, fragment, {"voice": VOICE, "text": "Hello.", **fields})


def openai(id, status, fragment, body: dict | bytes, content_type="application/json") -> Http:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Http(id, "/v1/audio/speech", status, fragment, body=raw, content_type=content_type)


def speech_json(**fields) -> dict:
    return {"model": "tts-1", "voice": VOICE, "input": "Hello.", **fields}


def as_json(id, path, status, fragment, body: dict | bytes) -> Http:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Http(id, path, status, fragment, body=raw, content_type="application/json")


HTTP_CASES = [
    # Sample encodings, channel counts and rates an upload may use: all valid.
    *(rvc_upload(f"wav-{subtype.lower()}", wav(tone(0.3, 16_000), subtype=subtype))
      for subtype in ("PCM_U8", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")),
    rvc_upload("flac", wav(tone(0.3, 16_000), subtype="PCM_16", fmt="FLAC"), filename="a.flac"),
    rvc_upload("stereo", wav(tone(0.3, 16_000, channels=2))),
    rvc_upload("six-channels", wav(tone(0.3, 16_000, channels=6))),
    *(rvc_upload(f"rate-{rate}", wav(tone(0.3, rate), rate)) for rate in (8_000, 44_100, 192_000)),
    rvc_upload("silence", wav(np.zeros(4_800), 16_000)),
    # Our own streamed WAVs leave both sizes at 0xFFFFFFFF: the audio present counts.
    rvc_upload("wav-sizes-unknown", with_sizes(SPEECH, 0xFFFFFFFF, 0xFFFFFFFF)),
    rvc_upload("wav-header-claims-more", with_sizes(SPEECH, 10 * len(SPEECH), 10 * len(SPEECH))),
    # Containers that give no length: a streamed FLAC, Ogg.
    rvc_upload("flac-without-length", without_length(wav(WAVE, fmt="FLAC")), filename="a.flac"),
    rvc_upload("ogg-vorbis", wav(WAVE, subtype="VORBIS", fmt="OGG"), filename="a.ogg"),
    # Broken or empty audio.
    rvc_upload("truncated-header", SPEECH[:30], 400, "not a readable audio file"),
    rvc_upload("header-only", with_sizes(SPEECH[:44], 36 + 9_600, 9_600), 400, "audio is empty"),
    rvc_upload("zero-frames", wav(np.zeros(0)), 400, "audio is empty"),
    rvc_upload("zero-bytes", b"", 400, "the file audio is empty (0 bytes)"),
    as_json("rvc-json-audio-empty", "/rvc", 400, "the file audio is empty (0 bytes)",
            {"model": MODEL, "audio": ""}),
    rvc_upload("one-sample", wav(np.array([0.25])), 400, "audio lasts 0.0001 s; at least 0.01 s"),
    rvc_upload("corrupt", bytes(range(256)) * 8, 400, "not a readable audio file"),
    rvc_upload("text-as-audio", b"hello, not audio", 400, "not a readable audio file",
               filename="a.txt"),
    rvc_upload("rate-4000", wav(tone(0.3, 4_000), 4_000), 400,
               "sample_rate 4000 Hz is outside 8000..192000"),
    rvc_upload("float-nan", float_wav_with(np.nan), 400, "audio: audio contains NaN"),
    rvc_upload("float-inf", float_wav_with(np.inf), 400, "NaN or infinite samples"),
    # Conversion parameters: out of range, wrong type, beyond the proto's integer types.
    rvc_field("pitch-99", 400, "pitch_shift 99 is outside -24..24", pitch_shift="99"),
    rvc_field("pitch-word", 400, "pitch_shift 'high' is not a int", pitch_shift="high"),
    rvc_field("pitch-int32-overflow", 400, "pitch_shift 99999999999 is out of range",
              pitch_shift="99999999999"),
    rvc_field("filter-radius-negative", 400, "filter_radius -1 is out of range",
              filter_radius="-1"),
    rvc_field("resample-sr-negative", 400, "resample_sr -8000 is out of range",
              resample_sr="-8000"),
    rvc_field("resample-sr-1000", 400, "resample_sr 1000 is outside 8000..192000",
              resample_sr="1000"),
    rvc_field("index-rate-nan", 400, "index_rate nan is outside 0..1", index_rate="nan"),
    rvc_field("f0-method-unknown", 400, "f0_method 'yin' is unknown", f0_method="yin"),
    rvc_field("sample-rate-7", 400, "sample_rate 7 Hz is outside 8000..48000", sample_rate="7"),
    rvc_field("format-wma", 400, "audio format 'wma' is unknown", response_format="wma"),
    # Voices and models: unknown, and names that look like paths.
    rvc_field("model-unknown", 404, "no RVC model named 'nobody' is installed", model="nobody"),
    *(rvc_field(f"model-path-{i}", 400, f"model name {name!r} is invalid", model=name)
      for i, name in enumerate(("../../etc/passwd", "/abs/path", "a/b"))),
    rvc_field("voice-path", 400, "voice name '../x' is malformed", model="", voice="../x"),
    # Bodies the form reader refuses.
    Http("rvc-text-plain", "/rvc", 400, "content type 'text/plain' is not accepted",
         body=b"model=x", content_type="text/plain"),
    Http("rvc-multipart-without-boundary", "/rvc", 400, "cannot be parsed",
         body=b"--x\r\n\r\n", content_type="multipart/form-data"),
    as_json("rvc-json-audio-not-base64", "/rvc", 400, "audio is not base64",
            {"model": MODEL, "audio": "not base64!"}),
    as_json("rvc-json-nested-deep", "/rvc", 400, "nested too deeply", b"[" * 100_000),
    as_json("rvc-json-broken", "/rvc", 400, "the body is not valid JSON", b'{"model": '),
    Http("rvc-no-file", "/rvc", 400, "the file audio is required", {"model": MODEL}),
    # Text: bytes that are not UTF-8, control characters, far too much of it.
    Http("synthesize-text-not-utf8", "/synthesize", 400, "the field 'text' is not valid UTF-8",
         files={"voice": (None, VOICE), "text": (None, b"caf\xe9 \xff")}),
    Http("synthesize-urlencoded-not-utf8", "/synthesize", 400, "form is not valid UTF-8",
         body=b"voice=demo&text=caf%E9", content_type="application/x-www-form-urlencoded"),
    speak("synthesize-control-character", "/synthesize", 400,
          "text contains the control character U+0000", text="Hello\x00 there."),
    speak("tts-escape-sequence", "/tts", 400, "control character U+001B",
          text="\x1b[31mred\x1b[0m"),
    speak("synthesize-100kB", "/synthesize", 400,
          f"text has {len(LONG_TEXT)} characters; the limit is 20000", text=LONG_TEXT),
    # /tts is one synthesis: the TTS service's own limit is the one that applies.
    speak("tts-100kB", "/tts", 400,
          f"text has {len(LONG_TEXT)} characters; the limit is 5000 (TTS_MAX_TEXT_CHARS)",
          text=LONG_TEXT),
    speak("synthesize-empty-text", "/synthesize", 400, "text is empty", text=" \n "),
    speak("tts-reserved-token", "/tts", 400, "reserved token '<|end_content|>'",
          text="Hi <|end_content|>"),
    speak("synthesize-voice-unknown", "/synthesize", 404, "voice 'nobody' is not defined",
          voice="nobody"),
    speak("synthesize-voice-path", "/synthesize", 400,
          "voice name '../../etc/passwd' is malformed", voice="../../etc/passwd"),
    speak("synthesize-seed-negative", "/synthesize", 400, "seed -1 is outside 0..2^64-1",
          seed="-1"),
    *(speak(f"{path[1:].replace('/', '-')}-seed-2^64", path, 400, f"seed {PAST_SEED_MESSAGE}",
            seed=str(PAST_SEED))
      for path in LEGACY_SPEECH_ROUTES),
    speak("synthesize-sample-rate-high", "/synthesize", 400,
          "sample_rate 200000 Hz is outside 8000..48000", sample_rate="200000"),
    speak("synthesize-skip-rvc-maybe", "/synthesize", 400, "skip_rvc 'maybe' is not true or false",
          skip_rvc="maybe"),
    # Reference clips that cannot be a voice.
    # An empty reference_audio file is refused, not taken for none (with no voice named,
    # the default profile would speak without it).
    *(Http(f"{path[1:].replace('/', '-')}-reference-audio-0-bytes", path, 400,
           "the file reference_audio is empty (0 bytes)", {"text": "Hello."},
           {"reference_audio": ("r.wav", b"", "audio/wav")})
      for path in LEGACY_SPEECH_ROUTES),
    Http("tts-reference-audio-blank-file-input", "/tts", 400,
         "the file reference_audio is empty (0 bytes)", {"text": "Hello.", "voice": VOICE},
         {"reference_audio": ("", b"", "application/octet-stream")}),
    as_json("tts-json-reference-audio-empty", "/tts", 400,
            "the file reference_audio is empty (0 bytes)",
            {"text": "Hello.", "reference_audio": ""}),
    Http("tts-reference-corrupt", "/tts", 400, "reference_audio: not a readable audio file",
         {"text": "Hello."}, {"reference_audio": ("r.wav", b"RIFF....WAVEjunk", "audio/wav")}),
    Http("tts-reference-zero-frames", "/tts", 400, "speaker.reference.audio is empty",
         {"text": "Hello."}, {"reference_audio": ("r.wav", wav(np.zeros(0)), "audio/wav")}),
    Http("tts-reference-one-sample", "/tts", 400, "at least 0.1 s is needed",
         {"text": "Hello."}, {"reference_audio": ("r.wav", wav(np.array([0.1])), "audio/wav")}),
    Http("tts-reference-nan", "/tts", 400, "reference_audio: audio contains NaN",
         {"text": "Hello."}, {"reference_audio": ("r.wav", float_wav_with(np.nan), "audio/wav")}),
    Http("tts-reference-610s", "/tts", 400,
         "reference_audio: the file is 610.0 s long; the limit is 30 s (TTS_MAX_REFERENCE_SECONDS)",
         {"text": "Hello."}, {"reference_audio": ("r.flac", LONG_FLAC, "audio/flac")}),
    rvc_upload("rvc-audio-610s", LONG_FLAC, 400,
               "audio: the file is 610.0 s long; the limit is 600 s (RVC_MAX_AUDIO_SECONDS)",
               filename="a.flac"),
    # OpenAI's speech API.
    openai("speech-100kB", 400, f"input is {len(LONG_TEXT)} characters; the limit is 4096",
           speech_json(input=LONG_TEXT)),
    openai("speech-unknown-field", 400, "unknown field 'temprature': the fields are",
           speech_json(temprature=0.5)),
    openai("speech-speed-9", 400, "speed 9.0 is outside 0.25..4.0", speech_json(speed=9)),
    openai("speech-speed-word", 400, "speed must be a number", speech_json(speed="fast")),
    openai("speech-sample-rate-infinity", 400, "sample_rate must be a finite number",
           b'{"model": "tts-1", "voice": "demo", "input": "Hi.", "sample_rate": Infinity}'),
    openai("speech-sample-rate-nan", 400, "sample_rate must be a finite number",
           b'{"model": "tts-1", "voice": "demo", "input": "Hi.", "sample_rate": NaN}'),
    openai("speech-seed-2^64", 400, f"seed {PAST_SEED_MESSAGE}", speech_json(seed=PAST_SEED)),
    openai("speech-seed-1e999", 400, "seed must be a finite number",
           b'{"model": "tts-1", "voice": "demo", "input": "Hi.", "seed": 1e999}'),
    openai("speech-sample-rate-fraction", 400, "sample_rate must be a whole number",
           speech_json(sample_rate=16000.5)),
    openai("speech-voice-unknown", 404, "voice 'nobody' is not defined",
           speech_json(voice="nobody")),
    openai("speech-voice-path", 400, "voice name 'a/b' is malformed", speech_json(voice="a/b")),
    openai("speech-not-utf8", 400, "the body is not valid JSON",
           b'{"model": "tts-1", "voice": "demo", "input": "caf\xe9"}'),
    openai("speech-multipart", 400, "is not accepted: send JSON", b"--x--",
           content_type="multipart/form-data; boundary=x"),
    openai("speech-array", 400, "the JSON body must be an object", b"[1, 2]"),
    openai("speech-control-character", 400, "control character U+0007",
           speech_json(input="Ding\x07 dong.")),
    # The transcoded JSON routes: the edge's check for unknown fields, which the
    # transcoder would drop (edge/fields.py), the transcoder's own
    # checks, then the services'.
    as_json("v1-rvc-unknown-field", "/v1/rvc", 400,
            "unknown field 'bogus' (voice.v1.ConvertRequest has no such field)",
            {"params": {"model": MODEL}, "bogus": 1, "audio": {
                "pcm": base64.b64encode(np.asarray(WAVE * 32767, "<i2").tobytes()).decode(),
                "sample_rate": 16000}}),
    as_json("rvc-json-unknown-field", "/rvc", 400, "unknown field 'bogus': the fields are",
            {"model": MODEL, "bogus": 1, "audio": base64.b64encode(SPEECH).decode()}),
    as_json("v1-tts-wrong-type", "/v1/tts", 400, "temperature",
            {"text": "Hi.", "sampling": {"temperature": "hot"}}),
    # A uint64 seed past the range: as the proto JSON mapping writes it (a string), and
    # as a number (which the transcoder reads as a double).
    *(as_json(f"v1-{route}-seed-2^64-{kind}", f"/v1/{route}", 400, f"sampling.seed {shown}",
              {"text": "Hi.", **extra, "sampling": {"seed": value}})
      for route, extra in (("tts", {}), ("synthesize", {"voice": VOICE}))
      for kind, value, shown in (
          ("string", str(PAST_SEED), PAST_SEED_MESSAGE),
          ("number", PAST_SEED, "1.8446744073709552e+19 is outside 0..2^64-1"))),
    as_json("v1-tts-seed-negative", "/v1/tts", 400, "sampling.seed -1 is outside 0..2^64-1",
            {"text": "Hi.", "sampling": {"seed": "-1"}}),
    # An empty reference clip is refused, even for Piper, which would ignore a clip.
    as_json("v1-tts-reference-empty", "/v1/tts", 400, "speaker.reference.audio is empty",
            {"text": "Hi.", "engine": "ENGINE_PIPER",
             "speaker": {"reference": {"audio": {"pcm": "", "sample_rate": 16000}}}}),
    as_json("v1-synthesize-reference-empty", "/v1/synthesize", 400,
            "speaker.reference.audio is empty",
            {"text": "Hi.", "voice": "demo", "speaker": {"reference": {"transcript": "Hi."}}}),
    as_json("v1-tts-max-tokens-0", "/v1/tts", 400, "sampling.max_tokens 0 is outside 1..10000",
            {"text": "Hi.", "speaker": {"control": {"gender": "GENDER_MALE"}},
             "sampling": {"max_tokens": 0}}),
    as_json("v1-rvc-nan", "/v1/rvc", 400, "audio: audio contains NaN",
            {"params": {"model": MODEL},
             "audio": {"pcm": "AADAfw==",  # one float32 NaN
                       "sample_rate": 16000, "sample_format": "SAMPLE_FORMAT_PCM_F32LE"}}),
    as_json("v1-rvc-model-path", "/v1/rvc", 400, "model name '../../etc/passwd' is invalid",
            {"params": {"model": "../../etc/passwd"},
             "audio": {"pcm": "AAA=", "sample_rate": 16000}}),
    # The unknown-field check on every spelling of a JSON route (it once missed these).
    as_json("v1-synthesize-slash-unknown-field", "/v1/synthesize/", 400,
            "unknown field 'skip_rcv' (voice.v1.SynthesizeRequest has no such field)",
            {"text": "Hi.", "voice": VOICE, "skip_rcv": True}),
    as_json("v1-tts-slash-unknown-field", "/v1/tts/", 400,
            "unknown field 'skip_rcv' (voice.v1.SynthesizeSpeechRequest has no such field)",
            {"text": "Hi.", "skip_rcv": True}),
    Http("v1-synthesize-grpc-web-unknown-field", "/v1/synthesize", 400,
         "unknown field 'skip_rcv'", body=b'{"text": "Hi.", "voice": "demo", "skip_rcv": true}',
         content_type="application/grpc-web"),
    # The old routes' JSON form holds one value per field, as a form does.
    as_json("legacy-json-array", "/tts", 400, "text must be a string, a number or a boolean",
            {"text": ["Hi."]}),
    # No path trick reaches an internal service (once 503: the gateway reset it).
    *(as_json(f"path-trick-{n}", path, 404, "no such route", {}) for n, path in enumerate([
        "/voice.v1.Gateway/../voice.v1.VoiceConversion/ListModels",
        "/voice.v1.Gateway/%2e%2e/voice.v1.VoiceConversion/ListModels",
        "/voice.v1.Gateway/..%2Fvoice.v1.VoiceConversion%2FLoadModel",
        "/voice.v1.Gateway/ListVoices",  # a gRPC path, asked in JSON
    ])),
]


def assert_edge_error(reply: requests.Response, status: int, fragment: str) -> None:
    assert reply.status_code == status, reply.text[:500]
    assert reply.headers["content-type"] == "application/json", reply.headers
    error = reply.json()["error"]
    assert error["code"] == status and error["status"] == STATUS_NAMES[status], error
    assert fragment in error["message"], error["message"]


@pytest.mark.parametrize("case", HTTP_CASES, ids=lambda c: c.id)
def test_http(stack, case: Http):
    url = stack.api + case.path
    if case.body is not None:
        reply = requests.post(url, data=case.body, headers={"content-type": case.content_type},
                              timeout=TIMEOUT)
    else:
        reply = requests.post(url, data=case.fields, files=case.files or None, timeout=TIMEOUT)
    if case.status != 200:
        assert_edge_error(reply, case.status, case.fragment)
        return
    assert reply.status_code == 200, reply.text[:500]
    assert case.fragment in reply.headers["content-type"]
    if case.fragment == "application/json":
        assert base64.b64decode(reply.json()["audio"]["pcm"])
        return
    audio, rate = soundfile.read(io.BytesIO(reply.content))
    assert rate == int(reply.headers["x-sample-rate"]) and np.all(np.isfinite(audio))
    assert audio.shape[0] > 0, "no audio"
    if case.path == "/rvc":  # converted by MODEL, as long as the upload (every one: 0.3 s)
        assert rate == MODEL_RATE
        assert audio.shape[0] / rate == pytest.approx(0.3, abs=0.011)


@pytest.mark.parametrize("path", ["/v1/synthesize", "/synthesize"])
def test_a_declared_body_past_the_edge_limit_is_413_before_any_100_continue(stack, path):
    """Refused from the headers: the body is never sent, and no 100 Continue invites it."""
    with socket.create_connection(("127.0.0.1", stack.config.api_port), timeout=30) as conn:
        conn.sendall(f"POST {path} HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {2**31}\r\nExpect: 100-continue\r\n\r\n".encode())
        reply = conn.makefile("rb")
        status = reply.readline().split()
        assert status[1] == b"413", status
        headers = {}
        for line in iter(reply.readline, b"\r\n"):
            name, _, value = line.decode().partition(":")
            headers[name.lower()] = value.strip()
        body = json.loads(reply.read(int(headers["content-length"])))
    assert body["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert "EDGE_MAX_BODY_BYTES=" in body["error"]["message"], body


# --- gRPC cases ----------------------------------------------------------------------


@dataclass(frozen=True)
class Rpc:
    """One call, sent to each of ``targets``; ``code`` OK means it must succeed (with
    audio lasting ``seconds``, when given)."""

    id: str
    targets: tuple[str, ...]
    send: Callable[[grpc.Channel], object]
    code: grpc.StatusCode
    fragment: str = ""
    seconds: float | None = None


def drained(result):
    return result if isinstance(result, Message) else list(result)


def gateway(method: str, request: Message) -> Callable[[grpc.Channel], object]:
    return lambda ch: drained(
        getattr(gateway_pb2_grpc.GatewayStub(ch), method)(request, timeout=TIMEOUT)
    )


def tts(request: Message) -> Callable[[grpc.Channel], object]:
    return lambda ch: list(tts_pb2_grpc.TextToSpeechStub(ch).Synthesize(request, timeout=TIMEOUT))


def rvc(method: str, request) -> Callable[[grpc.Channel], object]:
    return lambda ch: drained(
        getattr(rvc_pb2_grpc.VoiceConversionStub(ch), method)(request, timeout=TIMEOUT)
    )


def raw(path: str, data: bytes, reply: type[Message], streaming=False):
    def send(ch: grpc.Channel):
        call = (ch.unary_stream if streaming else ch.unary_unary)(
            path, response_deserializer=reply.FromString
        )
        return drained(call(data, timeout=TIMEOUT))

    return send


def convert(audio: audio_pb2.Audio, **params) -> rvc_pb2.ConvertRequest:
    return rvc_pb2.ConvertRequest(
        params=rvc_pb2.ConversionParams(**{"model": MODEL, **params}), audio=audio
    )


# A cloned voice: its 32 global tokens come from the clip, so a few semantic tokens make speech
# (in control mode the untrained LLM may spend a small max_tokens before its globals are done).
CLONE = tts_pb2.SpeakerPrompt(reference=tts_pb2.ReferenceAudio(audio=pcm(tone(1.0, 16_000))))


def say(text: str = "Hello.", **sampling) -> tts_pb2.SynthesizeSpeechRequest:
    return tts_pb2.SynthesizeSpeechRequest(
        text=text, speaker=CLONE,
        sampling=tts_pb2.SamplingParams(**{"seed": 3, "max_tokens": 12, **sampling}),
    )


OK, BAD, MISSING = grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
EMPTY_REFERENCE = tts_pb2.SpeakerPrompt(reference=tts_pb2.ReferenceAudio(
    audio=audio_pb2.Audio(pcm=b"", sample_rate=16_000)))
EDGE_AND_GATEWAY = ("edge", "gateway")
NAN = np.array([0.0, np.nan, 0.1] * 100)
INF = np.array([0.0, np.inf, 0.1] * 100)
RVC_DIRECT_AND_VIA_GATEWAY = [
    ("rvc", lambda request: rvc("Convert", request)),
    *((target, lambda request: gateway("Rvc", request)) for target in EDGE_AND_GATEWAY),
]


def rvc_everywhere(id, request, code, fragment="") -> list[Rpc]:
    seconds = None
    if code is OK:  # a conversion lasts as long as its input
        audio = request.audio
        seconds = len(audio.pcm) / (4 if audio.sample_format == F32 else 2) / (
            audio.channels or 1) / audio.sample_rate
    return [Rpc(id, (target,), make(request), code, fragment, seconds)
            for target, make in RVC_DIRECT_AND_VIA_GATEWAY]


def tts_everywhere(id, request, code, fragment="") -> list[Rpc]:
    return [Rpc(id, ("tts",), tts(request), code, fragment),
            Rpc(id, EDGE_AND_GATEWAY, gateway("Tts", request), code, fragment)]


RPC_CASES = [
    # Valid PCM in every shape the proto allows: served.
    *rvc_everywhere("pcm-f32-8k-stereo", convert(pcm(tone(0.3, 8_000, 2), 8_000, channels=2)), OK),
    *rvc_everywhere("pcm-s16-96k-6ch", convert(pcm(tone(0.2, 96_000, 6), 96_000, S16, 6)), OK),
    Rpc("pcm-silence-192k", ("rvc",), rvc("Convert", convert(pcm(np.zeros(19_200), 192_000))), OK,
        seconds=0.1),
    # Bad PCM.
    *rvc_everywhere("pcm-nan", convert(pcm(NAN)), BAD, "audio: audio contains NaN"),
    *rvc_everywhere("pcm-inf", convert(pcm(INF)), BAD, "NaN or infinite"),
    *rvc_everywhere("pcm-empty", convert(pcm([])), BAD, "audio is empty"),
    *rvc_everywhere("pcm-one-sample", convert(pcm([0.2])), BAD,
                    "audio lasts 0.0001 s; at least 0.01 s is needed"),
    Rpc("stream-one-sample", ("rvc",), rvc("ConvertStream", iter([
        rvc_pb2.ConvertStreamRequest(params=rvc_pb2.ConversionParams(model=MODEL)),
        rvc_pb2.ConvertStreamRequest(chunk=audio_pb2.AudioChunk(audio=pcm([0.2])))])), BAD,
        "the stream's audio lasts 0.0001 s"),
    *rvc_everywhere("pcm-no-rate", convert(pcm(WAVE, 0)), BAD, "audio.sample_rate is required"),
    *rvc_everywhere("pcm-rate-1", convert(pcm(WAVE, 1)), BAD, "sample_rate 1 Hz is outside"),
    *rvc_everywhere("pcm-ragged-frames", convert(pcm(WAVE[:301], 16_000, S16, 6)), BAD,
                    "not a whole number of 12-byte frames"),
    Rpc("pcm-9-channels", ("rvc",), rvc("Convert", convert(pcm(np.zeros(90), channels=9))), BAD,
        "channels 9 is outside 1..8"),
    Rpc("pcm-format-unknown", ("rvc",), rvc("Convert", convert(audio_pb2.Audio(
        pcm=b"\0" * 8, sample_rate=16_000, sample_format=7))), BAD, "sample_format 7 is unknown"),
    # Conversion parameters and model names.
    *rvc_everywhere("pitch-25", convert(pcm(WAVE), pitch_shift=25), BAD,
                    "pitch_shift 25 is outside -24..24"),
    Rpc("f0-method-99", ("rvc",), rvc("Convert", convert(pcm(WAVE), f0_method=99)), BAD,
        "f0_method 99 is unknown"),
    Rpc("protect-0.9", ("rvc",), rvc("Convert", convert(pcm(WAVE), protect=0.9)), BAD,
        "protect 0.9 is outside 0..0.5"),
    Rpc("resample-sr-1000", ("rvc",), rvc("Convert", convert(pcm(WAVE), resample_sr=1000)), BAD,
        "resample_sr 1000 is outside 8000..192000"),
    *rvc_everywhere("model-unknown", convert(pcm(WAVE), model="nobody"), MISSING,
                    "no RVC model named 'nobody' is installed"),
    *(Rpc(f"model-path-{i}", ("rvc",), rvc("Convert", convert(pcm(WAVE), model=name)), BAD,
          f"model name {name!r} is invalid")
      for i, name in enumerate(("../../etc/passwd", "/abs/path", "a/b"))),
    Rpc("load-model-path", ("rvc",), rvc("LoadModel", rvc_pb2.LoadModelRequest(name="../x")),
        BAD, "model name '../x' is invalid"),
    Rpc("load-model-unknown", ("rvc",), rvc("LoadModel", rvc_pb2.LoadModelRequest(name="nobody")),
        MISSING, "no RVC model named 'nobody'"),
    Rpc("stream-without-params", ("rvc",), rvc("ConvertStream", iter([rvc_pb2.ConvertStreamRequest(
        chunk=audio_pb2.AudioChunk(audio=pcm(WAVE)))])), BAD, "must carry params"),
    Rpc("stream-without-audio", ("rvc",), rvc("ConvertStream", iter([rvc_pb2.ConvertStreamRequest(
        params=rvc_pb2.ConversionParams(model=MODEL))])), BAD, "the stream carried no audio"),
    # Strings that are not UTF-8 on the wire.
    Rpc("convert-model-not-utf8", ("rvc",), raw(
        "/voice.v1.VoiceConversion/Convert", invalid_utf8(convert(pcm(WAVE), model="é")),
        rvc_pb2.ConvertResponse), BAD, "voice.v1.ConvertRequest"),
    Rpc("tts-text-not-utf8", ("tts",), raw(
        "/voice.v1.TextToSpeech/Synthesize", invalid_utf8(say("café")),
        tts_pb2.SynthesizeSpeechResponse, streaming=True), BAD, "must be valid UTF-8"),
    Rpc("synthesize-text-not-utf8", EDGE_AND_GATEWAY, raw(
        "/voice.v1.Gateway/Synthesize", invalid_utf8(gateway_pb2.SynthesizeRequest(
            text="café", voice=VOICE)), gateway_pb2.SynthesizeResponse), BAD, "cannot be parsed"),
    # Text and sampling.
    *tts_everywhere("text-100kB", say(LONG_TEXT), BAD,
                    f"text has {len(LONG_TEXT)} characters; the limit is 5000"),
    *tts_everywhere("text-control-character", say("a\x00b"), BAD, "control character U+0000"),
    *tts_everywhere("temperature-nan", say(temperature=float("nan")), BAD,
                    "sampling.temperature nan is outside (0, 5]"),
    # The proto's whole uint64 range (test_every_uint64_seed_... checks reproducibility).
    *tts_everywhere("seed-2^63", say(seed=2**63), OK),
    *tts_everywhere("seed-2^64-1", say(seed=2**64 - 1), OK),
    # An empty reference clip is refused, even for Piper, which would ignore a clip.
    *tts_everywhere("reference-empty", tts_pb2.SynthesizeSpeechRequest(
        text="Hi.", engine=tts_pb2.ENGINE_PIPER, speaker=EMPTY_REFERENCE), BAD,
        "speaker.reference.audio is empty"),
    *(Rpc(f"{method.lower()}-reference-empty", EDGE_AND_GATEWAY, gateway(method,
          gateway_pb2.SynthesizeRequest(text="Hi.", voice="demo", speaker=EMPTY_REFERENCE)),
          BAD, "speaker.reference.audio is empty")
      for method in ("Synthesize", "SynthesizeStream")),
    Rpc("top-k-20000", ("tts",), tts(say(top_k=20_000)), BAD,
        "sampling.top_k 20000 is above 10000"),
    Rpc("max-tokens-0", ("tts",), tts(say(max_tokens=0)), BAD, "sampling.max_tokens 0"),
    Rpc("no-speaker", ("tts",), tts(tts_pb2.SynthesizeSpeechRequest(
        text="Hi.", engine=tts_pb2.ENGINE_SPARK)), BAD, "speaker is required by the spark engine"),
    Rpc("reference-9-channels", ("tts",), tts(tts_pb2.SynthesizeSpeechRequest(
        text="Hi.", speaker=tts_pb2.SpeakerPrompt(reference=tts_pb2.ReferenceAudio(
            audio=pcm(np.zeros(9 * 1600), channels=9))))), BAD, "channels 9 is outside 1..8"),
    *tts_everywhere("emoji", say("🎤🎶 ✨"), OK),
    # The gateway's own checks.
    Rpc("synthesize-100kB", EDGE_AND_GATEWAY, gateway("Synthesize", gateway_pb2.SynthesizeRequest(
        text=LONG_TEXT, voice=VOICE)), BAD, "the limit is 20000"),
    Rpc("synthesize-sample-rate", EDGE_AND_GATEWAY, gateway("Synthesize",
        gateway_pb2.SynthesizeRequest(text="Hi.", voice=VOICE, sample_rate=7_999)), BAD,
        "sample_rate 7999 Hz is outside"),
    Rpc("synthesize-voice-unknown", EDGE_AND_GATEWAY, gateway("SynthesizeStream",
        gateway_pb2.SynthesizeRequest(text="Hi.", voice="nobody")), MISSING,
        "voice 'nobody' is not defined"),
    Rpc("synthesize-voice-path", EDGE_AND_GATEWAY, gateway("Synthesize",
        gateway_pb2.SynthesizeRequest(text="Hi.", voice="/abs/path")), BAD,
        "voice name '/abs/path' is malformed"),
    Rpc("synthesize-control-character", EDGE_AND_GATEWAY, gateway("SynthesizeStream",
        gateway_pb2.SynthesizeRequest(text="Ring\x07.", voice=VOICE)), BAD,
        "control character U+0007"),
]
RPC_PARAMS = [pytest.param(case, target, id=f"{target}-{case.id}")
              for case in RPC_CASES for target in case.targets]


@pytest.fixture(scope="module")
def channels(stack):
    opened = {name: grpc.insecure_channel(f"127.0.0.1:{getattr(stack.config, port)}")
              for name, port in PORTS.items()}
    yield opened
    for channel in opened.values():
        channel.close()


def pcm_seconds(audio: audio_pb2.Audio) -> float:
    width = 4 if audio.sample_format == F32 else 2
    assert audio.sample_rate > 0 and len(audio.pcm) % (width * (audio.channels or 1)) == 0
    return len(audio.pcm) / width / (audio.channels or 1) / audio.sample_rate


def check_served(reply, seconds: float | None) -> None:
    """The audio a served call must carry, at the rate its stage produces."""
    if isinstance(reply, rvc_pb2.ConvertResponse):
        assert reply.audio.sample_rate == MODEL_RATE and reply.audio.pcm, reply.audio.sample_rate
        if seconds is not None:
            assert pcm_seconds(reply.audio) == pytest.approx(seconds, abs=0.011)
        return
    if isinstance(reply, gateway_pb2.TtsResponse):
        assert (reply.engine, reply.audio.sample_rate) == (tts_pb2.ENGINE_SPARK, SPARK_RATE)
        assert pcm_seconds(reply.audio) > 0
        return
    # The TTS service's stream: chunks in order, the last one final, audio in them.
    assert isinstance(reply, list) and reply, reply
    assert all(isinstance(r, tts_pb2.SynthesizeSpeechResponse) for r in reply)
    assert [r.chunk.sequence for r in reply] == list(range(len(reply)))
    assert reply[-1].chunk.final and reply[0].engine == tts_pb2.ENGINE_SPARK
    assert {r.chunk.audio.sample_rate for r in reply} == {SPARK_RATE}
    assert sum(pcm_seconds(r.chunk.audio) for r in reply) > 0


@pytest.mark.parametrize("case, target", RPC_PARAMS)
def test_grpc(channels, case: Rpc, target: str):
    if case.code is OK:
        check_served(case.send(channels[target]), case.seconds)
        return
    with pytest.raises(grpc.RpcError) as caught:
        case.send(channels[target])
    assert caught.value.code() is case.code, caught.value.details()
    assert case.fragment in caught.value.details(), caught.value.details()


# --- seeds: the proto's uint64, whole, on every route ------------------------------


def spoken_with_seed(stack, channels, family: str, seed: int) -> bytes:
    """The audio one route family answers for the same words with ``seed``."""
    if family == "grpc-tts":
        return b"".join(r.chunk.audio.pcm for r in tts(say(seed=seed))(channels["tts"]))
    if family == "grpc-edge":
        return gateway("Tts", say(seed=seed))(channels["edge"]).audio.pcm
    if family == "v1-json":  # the proto JSON mapping: the seed as a string
        body = json_format.MessageToDict(say(seed=seed), preserving_proto_field_name=True)
        assert body["sampling"]["seed"] == str(seed)
        reply = requests.post(f"{stack.api}/v1/tts", json=body, timeout=TIMEOUT)
        assert reply.status_code == 200, reply.text[:300]
        return base64.b64decode(reply.json()["audio"]["pcm"])
    if family == "legacy":
        reply = requests.post(f"{stack.api}/tts", data={
            "voice": VOICE, "text": "Hello.", "seed": str(seed)}, timeout=TIMEOUT)
    else:  # OpenAI's speech API: TTS, then RVC with the profile's voice
        reply = requests.post(f"{stack.api}/v1/audio/speech", timeout=TIMEOUT,
                              json=speech_json(seed=seed, response_format="pcm"))
    assert reply.status_code == 200, reply.text[:300]
    return reply.content


@pytest.mark.parametrize("family", ["grpc-tts", "grpc-edge", "v1-json", "legacy", "openai"])
def test_every_uint64_seed_is_taken_whole_and_reproduces(stack, channels, family):
    """2^63 and 2^64-1 (past int64) are served, the same seed twice gives the same
    audio, and the two seeds give different audio: the seed reaches the sampler."""
    audio = {seed: [spoken_with_seed(stack, channels, family, seed) for _ in range(2)]
             for seed in (2**63, 2**64 - 1)}
    for seed, (first, again) in audio.items():
        assert len(first) > 1_000 and first == again, (family, seed)
    assert audio[2**63][0] != audio[2**64 - 1][0], family


def test_a_seed_past_uint64_cannot_leave_a_grpc_client():
    """The gRPC family's range is the field's: 2^64 does not fit a uint64, so no stub sends
    it (the REST routes above refuse it in the services' words)."""
    with pytest.raises(ValueError, match="out of range"):
        tts_pb2.SamplingParams(seed=PAST_SEED)


# --- still serving -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def still_serving(request, channels):
    """After every case, the gateway and both stages still report SERVING."""
    yield
    health = gateway_pb2_grpc.GatewayStub(channels["gateway"]).GetHealth(
        gateway_pb2.GetHealthRequest(), timeout=10
    )
    assert health.status == "SERVING", health


def test_the_stack_serves_real_work_after_the_battery(stack, channels):
    converted = requests.post(
        f"{stack.api}/rvc", data={"model": MODEL}, files={"audio": ("a.wav", SPEECH, "audio/wav")},
        timeout=TIMEOUT,
    )
    assert converted.status_code == 200, converted.text[:300]
    audio, rate = soundfile.read(io.BytesIO(converted.content))
    assert rate == 32_000 and audio.shape[0] == pytest.approx(0.3 * rate, abs=0.011 * rate)
    spoken = gateway_pb2_grpc.GatewayStub(channels["edge"]).Tts(say("All good."), timeout=TIMEOUT)
    assert spoken.audio.sample_rate > 0 and len(spoken.audio.pcm) > 0
