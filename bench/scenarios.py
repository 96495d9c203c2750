"""What `python -m bench` times: one request of each kind, through the public edge.

Every scenario is ``async def name(client, inputs) -> Sample``. gRPC goes to
Envoy's port (the same port serves REST), so every figure includes the edge.
Failures are samples too (``ok=False``, ``code`` the gRPC status name), never
exceptions, so a run under overload still finishes and counts its errors.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from voice.v1 import audio_pb2, gateway_pb2, gateway_pb2_grpc, rvc_pb2, tts_pb2

from bench.rvc_workers import speech_like
from bench.samples import Sample
from piper_serving.speech import PackagedSpeaker
from services.common.audio import PcmAudio, resample
from services.common.audio_proto import audio_to_proto

TEXTS = Path(__file__).resolve().parent / "texts" / "v2.json"
DEADLINE_S = 600.0
_HTTP_THREADS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="bench-http")
_WIDTH = {audio_pb2.SAMPLE_FORMAT_PCM_S16LE: 2, audio_pb2.SAMPLE_FORMAT_PCM_F32LE: 4}


@dataclass(frozen=True)
class Inputs:
    """The fixed, versioned inputs (texts/v*.json) with their clips made."""

    version: str
    seed: int
    short: str
    paragraph: str
    reference: PcmAudio
    reference_transcript: str
    rvc_clip: PcmAudio
    rvc_voice: str
    voice_profile: str
    # --max-tokens, sent in every TTS request: set only against a stack the bench
    # did not start (a local one is capped through TTS_MAX_TOKENS).
    max_tokens: int | None = None


def load_inputs(path: Path = TEXTS) -> Inputs:
    spec = json.loads(path.read_text())

    def clip(part: dict) -> PcmAudio:
        rate = int(part["sample_rate"])
        if part["generator"] == "piper":  # real speech, by Piper's packaged voice
            samples, spoken_rate = PackagedSpeaker().speak(part["text"])
            return resample(PcmAudio(samples, spoken_rate), rate)
        if part["generator"] == "bench.rvc_workers.speech_like":
            return PcmAudio(speech_like(float(part["seconds"]), rate), rate)
        raise ValueError(f"{path}: unknown clip generator {part['generator']!r}")

    return Inputs(
        version=spec["version"], seed=int(spec["seed"]), short=spec["short"],
        paragraph=spec["paragraph"], reference=clip(spec["reference"]),
        reference_transcript=spec["reference"].get("transcript", ""),
        rvc_clip=clip(spec["rvc_clip"]), rvc_voice=spec["rvc_clip"]["voice"],
        voice_profile=spec["voice_profile"],
    )


@dataclass
class Client:
    """One edge address shared by every request of a run: a gRPC channel and the
    HTTP base URL. Pipeline scenarios append the gateway's per-stage timing to
    ``stages`` (for the breakdown chart)."""

    address: str  # host:port of Envoy
    channel: grpc.aio.Channel | None = None
    stages: list[dict] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://{self.address}"

    @property
    def gateway(self) -> gateway_pb2_grpc.GatewayStub:
        if self.channel is None:
            options = [("grpc.max_receive_message_length", 256 << 20),
                       ("grpc.max_send_message_length", 256 << 20)]
            self.channel = grpc.aio.insecure_channel(self.address, options=options)
        return gateway_pb2_grpc.GatewayStub(self.channel)

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None


def audio_seconds(audio: audio_pb2.Audio) -> float:
    if not audio.sample_rate:
        return 0.0
    width = _WIDTH.get(audio.sample_format, 2) * (audio.channels or 1)
    return len(audio.pcm) / width / audio.sample_rate


def timing_dict(timing: gateway_pb2.PipelineTiming) -> dict:
    return {
        "tts_queue": timing.tts.queue_seconds, "tts_compute": timing.tts.compute_seconds,
        "rvc_queue": timing.rvc.queue_seconds, "rvc_compute": timing.rvc.compute_seconds,
        "first_audio": timing.first_audio_seconds, "total": timing.total_seconds,
    }


def failed(code: str, start: float) -> Sample:
    elapsed = time.perf_counter() - start
    return Sample(ok=False, code=code, first_audio_seconds=elapsed, total_seconds=elapsed,
                  audio_seconds=0.0, started=start)


def sampling(inputs: Inputs) -> tts_pb2.SamplingParams:
    # A token cap is sent only against a stack the bench did not start (--api):
    # a local stack caps every request through TTS_MAX_TOKENS instead, as the
    # in-process baseline does.
    return tts_pb2.SamplingParams(seed=inputs.seed, max_tokens=inputs.max_tokens or None)


def reference_speaker(inputs: Inputs) -> tts_pb2.SpeakerPrompt:
    return tts_pb2.SpeakerPrompt(reference=tts_pb2.ReferenceAudio(
        audio=audio_to_proto(inputs.reference), transcript=inputs.reference_transcript))


def tts_request(inputs: Inputs) -> tts_pb2.SynthesizeSpeechRequest:
    """The short text, cloning the reference clip."""
    return tts_pb2.SynthesizeSpeechRequest(
        text=inputs.short, speaker=reference_speaker(inputs), sampling=sampling(inputs))


def rvc_request(inputs: Inputs) -> rvc_pb2.ConvertRequest:
    """The fixed speech-like clip into an untrained voice, PM."""
    return rvc_pb2.ConvertRequest(
        params=rvc_pb2.ConversionParams(model=inputs.rvc_voice, f0_method=rvc_pb2.F0_METHOD_PM),
        audio=audio_to_proto(inputs.rvc_clip))


async def unary(method, request) -> Sample:
    """One unary call whose reply carries ``audio``: first audio = total."""
    start = time.perf_counter()
    try:
        reply = await method(request, timeout=DEADLINE_S)
    except grpc.aio.AioRpcError as exc:
        return failed(exc.code().name, start)
    total = time.perf_counter() - start
    return Sample(True, "OK", total, total, audio_seconds(reply.audio), start)


async def tts(client: Client, inputs: Inputs) -> Sample:
    """Gateway.Tts (unary): the TTS stage alone, cloning the reference clip."""
    return await unary(client.gateway.Tts, tts_request(inputs))


async def rvc(client: Client, inputs: Inputs) -> Sample:
    """Gateway.Rvc (unary): one fixed speech-like clip into an untrained voice, PM."""
    return await unary(client.gateway.Rvc, rvc_request(inputs))


def synthesize_request(inputs: Inputs, text: str) -> gateway_pb2.SynthesizeRequest:
    return gateway_pb2.SynthesizeRequest(text=text, voice=inputs.voice_profile,
                                         sampling=sampling(inputs))


async def pipeline(client: Client, inputs: Inputs) -> Sample:
    """Gateway.Synthesize: TTS then RVC (the `demo` profile), the whole clip at once."""
    start = time.perf_counter()
    try:
        reply = await client.gateway.Synthesize(synthesize_request(inputs, inputs.short),
                                                timeout=DEADLINE_S)
    except grpc.aio.AioRpcError as exc:
        return failed(exc.code().name, start)
    total = time.perf_counter() - start
    client.stages.append({"scenario": "pipeline", **timing_dict(reply.timing)})
    if not reply.rvc_applied:
        return Sample(False, "RVC_NOT_APPLIED", total, total, audio_seconds(reply.audio), start)
    return Sample(True, "OK", total, total, audio_seconds(reply.audio), start)


async def pipeline_stream(client: Client, inputs: Inputs) -> Sample:
    """Gateway.SynthesizeStream, five sentences: first audio is the first message."""
    start = time.perf_counter()
    first = None
    seconds = 0.0
    try:
        call = client.gateway.SynthesizeStream(synthesize_request(inputs, inputs.paragraph),
                                               timeout=DEADLINE_S)
        async for reply in call:
            if first is None:
                first = time.perf_counter() - start
            seconds += audio_seconds(reply.chunk.audio)
            if reply.HasField("timing"):
                client.stages.append({"scenario": "pipeline_stream", **timing_dict(reply.timing)})
    except grpc.aio.AioRpcError as exc:
        return failed(exc.code().name, start)
    total = time.perf_counter() - start
    return Sample(True, "OK", total if first is None else first, total, seconds, start)


def _http_speech(base_url: str, inputs: Inputs) -> Sample:
    import requests  # a dev dependency; imported here so gRPC-only runs need nothing else

    body = {"model": "tts-1", "voice": inputs.voice_profile, "input": inputs.paragraph,
            "response_format": "pcm", "seed": inputs.seed}
    start = time.perf_counter()
    try:
        with requests.post(f"{base_url}/v1/audio/speech", json=body, stream=True,
                           timeout=DEADLINE_S) as response:
            if response.status_code != 200:
                try:
                    code = response.json()["error"]["status"]
                except (ValueError, KeyError, TypeError):
                    code = f"HTTP_{response.status_code}"
                return failed(code, start)
            rate = int(response.headers.get("X-Sample-Rate", 24_000))
            first = None
            size = 0
            for chunk in response.iter_content(chunk_size=None):
                if chunk and first is None:
                    first = time.perf_counter() - start
                size += len(chunk)
    except requests.RequestException as exc:
        return failed(type(exc).__name__, start)
    total = time.perf_counter() - start
    return Sample(True, "OK", total if first is None else first, total, size / 2 / rate, start)


async def http_stream(client: Client, inputs: Inputs) -> Sample:
    """POST /v1/audio/speech (OpenAI's API) through Envoy, raw PCM, read as it streams
    (requests in a worker thread: one thread per request in flight; the default
    executor would cap that at cpu_count + 4)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_HTTP_THREADS, _http_speech, client.base_url, inputs)


Scenario = Callable[[Client, Inputs], Awaitable[Sample]]
SCENARIOS: dict[str, Scenario] = {
    "tts": tts,
    "rvc": rvc,
    "pipeline": pipeline,
    "pipeline_stream": pipeline_stream,
    "http_stream": http_stream,
}
# The text each scenario speaks (for the report and the baseline).
SCENARIO_TEXT = {"tts": "short", "rvc": "rvc_clip", "pipeline": "short",
                 "pipeline_stream": "paragraph", "http_stream": "paragraph"}
