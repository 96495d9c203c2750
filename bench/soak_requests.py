"""The soak's clients: one function per kind of request sent through the public
edge (REST and gRPC on the same port), each returning its Outcome, and the
fixed mix the clients cycle through (KINDS, CYCLE).
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import requests
import soundfile
from voice.v1 import gateway_pb2, gateway_pb2_grpc, rvc_pb2, tts_pb2

from bench.scenarios import Inputs, load_inputs, reference_speaker
from services.common.audio_proto import audio_to_proto

# Semantic tokens per sentence of the gRPC requests (50 a second of speech): the
# local stack serves random weights, which never predict the end of speech.
GRPC_MAX_TOKENS = 80
REQUEST_TIMEOUT_S = 120.0
# REST texts are short: REST requests cannot cap tokens, and the TTS service's
# own cap grows with the text (100 + 7 per character).
SHORT = "Hello."
TWO = "Hi. Bye."
FOUR = "One. Two. Three. Four."
OPENAI_FORMATS = ("pcm", "wav", "mp3", "opus", "flac", "aac")


@dataclass(frozen=True)
class Outcome:
    ok: bool  # what was expected happened (a bad request's 4xx included)
    code: str  # "OK", a gRPC status name, HTTP_<status>, or an exception's name
    seconds: float
    detail: str = ""


class Edge:
    """The public edge: one gRPC channel (shared by the clients, as a service's
    client would share it) and the REST base URL; counters that rotate the
    variants of a kind."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.base_url = f"http://{address}"
        options = [("grpc.max_receive_message_length", 64 << 20),
                   ("grpc.max_send_message_length", 64 << 20)]
        self.channel = grpc.insecure_channel(address, options=options)
        self.gateway = gateway_pb2_grpc.GatewayStub(self.channel)
        self._turns: dict[str, itertools.count] = {}
        self._lock = threading.Lock()

    def turn(self, kind: str) -> int:
        with self._lock:
            return next(self._turns.setdefault(kind, itertools.count()))

    def close(self) -> None:
        self.channel.close()


@dataclass(frozen=True)
class Mix:
    """What the requests carry (the bench's versioned inputs)."""

    inputs: Inputs
    reference_wav: bytes
    rvc_wav: bytes

    @classmethod
    def load(cls) -> Mix:
        inputs = load_inputs()
        return cls(inputs, _wav(inputs.reference), _wav(inputs.rvc_clip))

    def sampling(self) -> tts_pb2.SamplingParams:
        return tts_pb2.SamplingParams(seed=self.inputs.seed, max_tokens=GRPC_MAX_TOKENS)

    def conversion(self) -> rvc_pb2.ConversionParams:
        return rvc_pb2.ConversionParams(model=self.inputs.rvc_voice,
                                        f0_method=rvc_pb2.F0_METHOD_PM)


def _wav(audio) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, audio.samples, audio.sample_rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def _http(response: requests.Response, start: float, want: str | None = None,
          size: int | None = None) -> Outcome:
    """A REST answer: 200, with content type ``want``, and a body (``size`` bytes
    when the caller read a stream itself; else the body is read here)."""
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        return Outcome(False, f"HTTP_{response.status_code}", elapsed, response.text[:200])
    kind = response.headers.get("content-type", "")
    if want is not None and not kind.startswith(want):
        return Outcome(False, "WRONG_CONTENT_TYPE", elapsed, kind)
    if not (len(response.content) if size is None else size):
        return Outcome(False, "EMPTY_BODY", elapsed)
    return Outcome(True, "OK", elapsed)


def legacy_synthesize(edge: Edge, mix: Mix) -> Outcome:
    """The old client: POST /synthesize, multipart with its reference clip, into a voice."""
    start = time.perf_counter()
    response = requests.post(
        f"{edge.base_url}/synthesize",
        data={"text": SHORT, "reference_text": "", "model": mix.inputs.rvc_voice,
              "f0_method": "pm", "seed": str(mix.inputs.seed)},
        files={"reference_audio": ("ref.wav", mix.reference_wav, "audio/wav")},
        timeout=REQUEST_TIMEOUT_S)
    outcome = _http(response, start, "audio/wav")
    if outcome.ok and float(response.headers.get("X-RVC-Time", 0)) <= 0:
        return Outcome(False, "RVC_NOT_APPLIED", outcome.seconds)
    return outcome


def legacy_stream(edge: Edge, mix: Mix) -> Outcome:
    """POST /synthesize/stream with the ``demo`` profile, asking for audio (without, it is
    the old server's multipart): one open-ended WAV, read to the end."""
    start = time.perf_counter()
    with requests.post(f"{edge.base_url}/synthesize/stream",
                       data={"text": TWO, "voice": mix.inputs.voice_profile, "f0_method": "pm",
                             "seed": str(mix.inputs.seed)},
                       headers={"Accept": "audio/wav"},
                       stream=True, timeout=REQUEST_TIMEOUT_S) as response:
        body = b"".join(response.iter_content(None)) if response.status_code == 200 else b""
        outcome = _http(response, start, "audio/wav", len(body))
    if outcome.ok and body[:4] != b"RIFF":
        return Outcome(False, "NOT_WAV", outcome.seconds)
    return outcome


def legacy_rvc(edge: Edge, mix: Mix) -> Outcome:
    """RVC alone over REST: POST /rvc with a WAV file."""
    start = time.perf_counter()
    response = requests.post(f"{edge.base_url}/rvc",
                             data={"model": mix.inputs.rvc_voice, "f0_method": "pm"},
                             files={"audio": ("clip.wav", mix.rvc_wav, "audio/wav")},
                             timeout=REQUEST_TIMEOUT_S)
    return _http(response, start, "audio/wav")


def grpc_rvc(edge: Edge, mix: Mix) -> Outcome:
    """RVC alone over gRPC: Gateway.Rvc."""
    start = time.perf_counter()
    request = rvc_pb2.ConvertRequest(params=mix.conversion(),
                                     audio=audio_to_proto(mix.inputs.rvc_clip))
    try:
        reply = edge.gateway.Rvc(request, timeout=REQUEST_TIMEOUT_S)
    except grpc.RpcError as exc:
        return Outcome(False, exc.code().name, time.perf_counter() - start, exc.details() or "")
    elapsed = time.perf_counter() - start
    return Outcome(bool(reply.audio.pcm), "OK" if reply.audio.pcm else "EMPTY_AUDIO", elapsed)


def grpc_stream(edge: Edge, mix: Mix) -> Outcome:
    """gRPC SynthesizeStream cloning the reference clip, converted into an RVC voice."""
    start = time.perf_counter()
    request = gateway_pb2.SynthesizeRequest(
        text=TWO, speaker=reference_speaker(mix.inputs), sampling=mix.sampling(),
        conversion=mix.conversion())
    replies = 0
    try:
        for reply in edge.gateway.SynthesizeStream(request, timeout=REQUEST_TIMEOUT_S):
            replies += 1
            if not reply.rvc_applied:
                return Outcome(False, "RVC_NOT_APPLIED", time.perf_counter() - start)
    except grpc.RpcError as exc:
        return Outcome(False, exc.code().name, time.perf_counter() - start, exc.details() or "")
    elapsed = time.perf_counter() - start
    return Outcome(replies > 0, "OK" if replies else "NO_REPLIES", elapsed)


def openai_speech(edge: Edge, mix: Mix) -> Outcome:
    """POST /v1/audio/speech with the profile, streamed; each response format in turn."""
    fmt = OPENAI_FORMATS[edge.turn("openai_speech") % len(OPENAI_FORMATS)]
    body = {"model": "tts-1", "voice": mix.inputs.voice_profile, "input": TWO,
            "response_format": fmt, "seed": mix.inputs.seed}
    start = time.perf_counter()
    with requests.post(f"{edge.base_url}/v1/audio/speech", json=body, stream=True,
                       timeout=REQUEST_TIMEOUT_S) as response:
        size = sum(len(c) for c in response.iter_content(None)) if response.ok else 0
        outcome = _http(response, start, size=size)
    return dataclasses.replace(outcome, detail=f"{fmt} {outcome.detail}".strip())


def disconnect_grpc(edge: Edge, mix: Mix) -> Outcome:
    """A gRPC client that cancels its four-sentence stream after the first sentence."""
    start = time.perf_counter()
    request = gateway_pb2.SynthesizeRequest(
        text=FOUR, voice=mix.inputs.voice_profile, sampling=mix.sampling())
    call = edge.gateway.SynthesizeStream(request, timeout=REQUEST_TIMEOUT_S)
    try:
        first = next(call, None)
    except grpc.RpcError as exc:
        return Outcome(False, exc.code().name, time.perf_counter() - start, exc.details() or "")
    finally:
        call.cancel()
    elapsed = time.perf_counter() - start
    return Outcome(first is not None, "OK" if first is not None else "NO_REPLIES", elapsed)


def disconnect_http(edge: Edge, mix: Mix) -> Outcome:
    """An HTTP client that closes its connection after the first bytes of the stream."""
    body = {"model": "tts-1", "voice": mix.inputs.voice_profile, "input": FOUR,
            "response_format": "pcm", "seed": mix.inputs.seed}
    start = time.perf_counter()
    with requests.Session() as session, session.post(
            f"{edge.base_url}/v1/audio/speech", json=body, stream=True,
            timeout=REQUEST_TIMEOUT_S) as response:
        if response.status_code != 200:
            return _http(response, start)
        first = next(response.iter_content(1024), b"")
        # Leaving the block closes the response unread: its connection is dropped.
    elapsed = time.perf_counter() - start
    return Outcome(bool(first), "OK" if first else "EMPTY_BODY", elapsed)


# Bad requests and the status each must get: (what, send -> status or code name, wanted).
def _bad_http(method: str, path: str, **kwargs) -> Callable[[Edge, Mix], str]:
    def send(edge: Edge, mix: Mix) -> str:
        response = requests.request(method, f"{edge.base_url}{path}", timeout=30, **kwargs)
        return str(response.status_code)
    return send


def _bad_grpc(method: str, build: Callable[[Mix], object]) -> Callable[[Edge, Mix], str]:
    def send(edge: Edge, mix: Mix) -> str:
        try:
            getattr(edge.gateway, method)(build(mix), timeout=30)
        except grpc.RpcError as exc:
            return exc.code().name
        return "OK"
    return send


BAD_REQUESTS: tuple[tuple[str, Callable[[Edge, Mix], str], str], ...] = (
    ("legacy: unknown f0_method", _bad_http(
        "POST", "/synthesize", data={"text": "Hi.", "voice": "demo", "f0_method": "magic"}), "400"),
    ("openai: unknown voice", _bad_http(
        "POST", "/v1/audio/speech", json={"model": "tts-1", "voice": "nobody", "input": "Hi."}),
     "404"),
    ("openai: empty input", _bad_http(
        "POST", "/v1/audio/speech", json={"model": "tts-1", "voice": "demo", "input": ""}), "400"),
    ("unknown route", _bad_http("GET", "/v1/nowhere"), "404"),
    ("grpc: empty text", _bad_grpc(
        "Synthesize", lambda mix: gateway_pb2.SynthesizeRequest(text="", voice="demo")),
     "INVALID_ARGUMENT"),
    ("grpc: unknown RVC voice", _bad_grpc("Rvc", lambda mix: rvc_pb2.ConvertRequest(
        params=rvc_pb2.ConversionParams(model="ghost"),
        audio=audio_to_proto(mix.inputs.rvc_clip))), "NOT_FOUND"),
)


def bad_request(edge: Edge, mix: Mix) -> Outcome:
    """One of BAD_REQUESTS in turn; ok when it gets its 4xx (gRPC: its status)."""
    what, send, wanted = BAD_REQUESTS[edge.turn("bad_request") % len(BAD_REQUESTS)]
    start = time.perf_counter()
    got = send(edge, mix)
    elapsed = time.perf_counter() - start
    if got == wanted:
        return Outcome(True, "OK", elapsed, what)
    code = got if not got.isdigit() else f"HTTP_{got}"
    return Outcome(False, code, elapsed, f"{what}: wanted {wanted}")


KINDS: dict[str, Callable[[Edge, Mix], Outcome]] = {
    "legacy_synthesize": legacy_synthesize,
    "legacy_stream": legacy_stream,
    "legacy_rvc": legacy_rvc,
    "grpc_stream_rvc": grpc_stream,
    "grpc_rvc": grpc_rvc,
    "openai_speech": openai_speech,
    "disconnect_grpc": disconnect_grpc,
    "disconnect_http": disconnect_http,
    "bad_request": bad_request,
}
# The order in which the clients take requests (every kind, the heavier ones twice).
CYCLE = ("grpc_stream_rvc", "openai_speech", "legacy_synthesize", "bad_request", "grpc_rvc",
         "disconnect_grpc", "legacy_stream", "openai_speech", "legacy_rvc", "bad_request",
         "disconnect_http", "grpc_stream_rvc")
