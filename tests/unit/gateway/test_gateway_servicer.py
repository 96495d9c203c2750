"""The gateway servicer over real gRPC, with the real RVC service behind it and a
scripted TTS service (Spark TTS itself arrives with issue #3)."""

import asyncio
import base64
import io
import json
import time
import urllib.request

import grpc
import numpy as np
import pytest
import soundfile
from google.api import httpbody_pb2
from voice.v1 import (
    audio_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    rvc_pb2,
    rvc_pb2_grpc,
    tts_pb2,
    tts_pb2_grpc,
)

from services.common.audio import PcmAudio
from services.common.audio_proto import audio_from_proto, audio_to_proto
from services.common.metrics import ServerMetrics
from services.common.request_context import current_request_id, time_remaining
from services.common.server import Servicer
from services.gateway.pipeline import Pipeline
from services.gateway.servicer import SERVICE_NAME, GatewayServicer
from services.gateway.speech import SpeechService
from services.gateway.stages import RvcStage, TtsStage
from services.gateway.voices import VoiceBook
from services.rvc.conversion import Converter
from services.rvc.model_store import ModelStore
from services.rvc.servicer import VoiceConversionServicer
from services.rvc.settings import RvcSettings
from tests.grpc_hosts import channel_to, hosted
from tests.unit.rvc.fake_pool import VOICE_RATE, FakePool

RATE = 16_000


class ScriptedTts(tts_pb2_grpc.TextToSpeechServicer):
    """Answers with two chunks of a tone and remembers what each call carried."""

    def __init__(self):
        self.seen = []
        self.changed = asyncio.Event()
        self.forget = 0  # speaker_id requests to refuse as a restarted Triton does
        self.tokens = None  # tts_pb2.SpeakerTokens a clip's first reply carries, if any
        # The codec tokens must have, as a model with these weights; None takes any.
        self.codec = None

    async def Synthesize(self, request, context):
        self.seen.append({
            "request_id": current_request_id(), "remaining": time_remaining(),
            "text": request.text, "speaker": request.speaker.WhichOneof("source"),
            "seed": request.sampling.seed, "engine": request.engine,
            "piper_voice": request.piper.voice,
        })
        self.changed.set()
        if request.text == "explode":
            raise RuntimeError("secret internals")
        if self.forget and request.speaker.WhichOneof("source") == "speaker_id":
            self.forget -= 1
            await context.abort(grpc.StatusCode.NOT_FOUND, "speaker 'spk-1' is not cached (any more)")
        given = request.speaker.tokens
        if request.speaker.WhichOneof("source") == "tokens" and self.codec not in (None, given.codec):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "tokens of another codec")
        tone = np.sin(np.arange(RATE // 4) * 2 * np.pi * 200 / RATE).astype(np.float32) * 0.3
        piper = request.engine == tts_pb2.ENGINE_PIPER
        for sequence in range(2):
            reply = tts_pb2.SynthesizeSpeechResponse(
                chunk=audio_pb2.AudioChunk(
                    audio=audio_to_proto(PcmAudio(tone, RATE)), sequence=sequence,
                    final=sequence == 1,
                ),
                speaker_id="" if piper else "spk-1",
            )
            if sequence == 0:  # as the TTS service does: engine and notes come first
                reply.engine = request.engine or tts_pb2.ENGINE_SPARK
                if piper and request.speaker.WhichOneof("source"):
                    reply.notes.append("piper ignores the speaker")
                if self.tokens is not None and request.speaker.WhichOneof("source") == "reference":
                    reply.speaker_tokens.CopyFrom(self.tokens)
            yield reply


def servicer(impl, module, name):
    add = getattr(module, f"add_{name}Servicer_to_server")
    full_name = {
        tts_pb2_grpc: tts_pb2, rvc_pb2_grpc: rvc_pb2, gateway_pb2_grpc: gateway_pb2
    }[module].DESCRIPTOR.services_by_name[name].full_name
    return Servicer(impl, add, full_name)


@pytest.fixture
async def stack(tmp_path):
    tts = ScriptedTts()
    pool = FakePool()
    converter = Converter(RvcSettings(), ModelStore(tmp_path / "rvc"), pool)
    async with hosted([servicer(tts, tts_pb2_grpc, "TextToSpeech")]) as tts_host, hosted(
        [servicer(VoiceConversionServicer(converter), rvc_pb2_grpc, "VoiceConversion")]
    ) as rvc_host:
        stages = (
            TtsStage(f"127.0.0.1:{tts_host.grpc_port}"),
            RvcStage(f"127.0.0.1:{rvc_host.grpc_port}"),
        )
        voices = tmp_path / "voices"
        voices.mkdir()
        metrics = ServerMetrics()
        gateway = servicer(
            GatewayServicer(SpeechService(Pipeline(*stages), VoiceBook(voices), 2.0, metrics,
                                          service_name=SERVICE_NAME)),
            gateway_pb2_grpc, "Gateway",
        )
        async with hosted([gateway], metrics=metrics) as gateway_host:
            async with channel_to(gateway_host) as channel:
                yield {
                    "stub": gateway_pb2_grpc.GatewayStub(channel),
                    "tts": tts,
                    "tts_host": tts_host,
                    "gateway_host": gateway_host,
                    "models": tmp_path / "rvc",
                    "voices": voices,
                    "pool": pool,
                }
        for stage in stages:
            await stage.close()


def request(text="Hello.", **kwargs):
    return gateway_pb2.SynthesizeRequest(
        text=text,
        speaker=tts_pb2.SpeakerPrompt(control=tts_pb2.VoiceControl(gender=tts_pb2.GENDER_MALE)),
        **kwargs,
    )


async def test_skip_rvc_returns_the_tts_audio_and_says_so(stack):
    reply = await stack["stub"].Synthesize(request(skip_rvc=True))
    audio = audio_from_proto(reply.audio)
    assert audio.sample_rate == RATE
    assert audio.frames == 2 * (RATE // 4)
    assert not reply.rvc_applied
    assert reply.rvc_skipped_reason == "skip_rvc was requested"
    assert reply.timing.tts.audio_seconds == pytest.approx(0.5)
    assert reply.timing.total_seconds >= reply.timing.tts.compute_seconds > 0


async def test_without_any_rvc_voice_the_tts_audio_comes_back_unconverted(stack):
    reply = await stack["stub"].Synthesize(request())
    assert not reply.rvc_applied
    assert reply.rvc_skipped_reason == "no RVC voice is installed"


async def test_an_unknown_voice_is_not_found_through_the_gateway(stack):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack["stub"].Synthesize(request(conversion=rvc_pb2.ConversionParams(model="ghost")))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "ghost" in caught.value.details()


async def test_a_path_like_voice_name_is_rejected(stack):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack["stub"].Synthesize(
            request(conversion=rvc_pb2.ConversionParams(model="../../etc/passwd"))
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_installed_voice_converts_the_tts_audio(stack):
    voice = stack["models"] / "alice"
    voice.mkdir(parents=True)
    (voice / "alice.pth").write_bytes(b"not loaded in this test")
    reply = await stack["stub"].Synthesize(request())
    assert reply.rvc_applied
    # The stand-in pool converts by resampling to the voice's rate.
    assert reply.audio.sample_rate == VOICE_RATE


async def test_request_id_and_deadline_travel_downstream(stack):
    call = stack["stub"].Synthesize(
        request(skip_rvc=True), metadata=(("x-request-id", "req-42"),), timeout=5.0
    )
    await call
    seen = stack["tts"].seen[-1]
    assert seen["request_id"] == "req-42"
    assert 0 < seen["remaining"] <= 5.5  # gRPC rounds the timeout it sends up
    assert ("x-request-id", "req-42") in tuple(await call.trailing_metadata())


async def test_a_missing_request_id_is_generated(stack):
    await stack["stub"].Synthesize(request(skip_rvc=True))
    assert len(stack["tts"].seen[-1]["request_id"]) == 32


async def test_unexpected_errors_are_internal_without_leaking_details(stack):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack["stub"].Synthesize(request("explode", skip_rvc=True))
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert "secret" not in caught.value.details()


async def test_tts_alone(stack):
    reply = await stack["stub"].Tts(
        tts_pb2.SynthesizeSpeechRequest(text="Hi.", speaker=request().speaker)
    )
    assert reply.speaker_id == "spk-1"
    assert audio_from_proto(reply.audio).duration == pytest.approx(0.5)


def write_profile(stack, name, **profile):
    (stack["voices"] / f"{name}.json").write_text(json.dumps(profile))


async def test_voices_list_the_profiles(stack):
    write_profile(stack, "bob", control={"gender": "male"}, description="Bob")
    write_profile(stack, "alice", control={"gender": "female"}, rvc_model="alice")
    reply = await stack["stub"].ListVoices(gateway_pb2.ListVoicesRequest())
    assert [(v.name, v.rvc_model, v.speaker) for v in reply.voices] == [
        ("alice", "alice", "control"), ("bob", "", "control")
    ]
    assert reply.voices[1].description == "Bob"
    assert not any(v.is_default for v in reply.voices)


async def test_a_named_voice_supplies_speaker_rvc_voice_and_defaults(stack):
    install_voice(stack)
    write_profile(stack, "narrator", control={"gender": "female"}, rvc_model="alice",
                  rvc={"pitch_shift": 5, "index_rate": 0.3})
    reply = await stack["stub"].Synthesize(
        gateway_pb2.SynthesizeRequest(text="Hello.", voice="narrator")
    )
    assert reply.rvc_applied
    assert stack["tts"].seen[-1]["speaker"] == "control"
    op, meta, _ = stack["pool"].calls[-1]
    assert (meta["params"]["model"], meta["params"]["pitch_shift"]) == ("alice", 5)
    assert meta["params"]["index_rate"] == pytest.approx(0.3)
    # Fields the request sets win over the profile's, even when set to zero.
    await stack["stub"].Synthesize(gateway_pb2.SynthesizeRequest(
        text="Hello.", voice="narrator", conversion=rvc_pb2.ConversionParams(pitch_shift=0)
    ))
    assert stack["pool"].calls[-1][1]["params"]["pitch_shift"] == 0


async def test_an_unknown_profile_is_not_found_and_no_speaker_is_invalid(stack):
    write_profile(stack, "bob", control={"gender": "male"})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack["stub"].Synthesize(gateway_pb2.SynthesizeRequest(text="Hi.", voice="ghost"))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "bob" in caught.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack["stub"].Synthesize(gateway_pb2.SynthesizeRequest(text="Hi."))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "no speaker" in caught.value.details()
    assert stack["tts"].seen == []


async def test_output_rate_is_selectable(stack):
    reply = await stack["stub"].Synthesize(request(skip_rvc=True, sample_rate=24_000))
    audio = audio_from_proto(reply.audio)
    assert audio.sample_rate == 24_000
    assert audio.duration == pytest.approx(0.5, abs=0.002)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack["stub"].Synthesize(request(skip_rvc=True, sample_rate=96_000))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_stage_timings_travel_in_trailers(stack):
    for call in (stack["stub"].Synthesize(request(THREE, skip_rvc=True)),
                 stack["stub"].SynthesizeStream(request(THREE, skip_rvc=True))):
        if hasattr(call, "read"):
            [r async for r in call]
        else:
            await call
        trailers = dict(tuple(await call.trailing_metadata()))
        assert float(trailers["x-tts-seconds"]) > 0
        assert float(trailers["x-rvc-seconds"]) == 0
        assert 0 < float(trailers["x-first-audio-seconds"]) <= float(trailers["x-total-seconds"])
        assert "x-request-id" in trailers


async def test_speed_changes_the_duration_not_the_rate(stack):
    write_profile(stack, "bob", control={"gender": "male"}, skip_rvc=True)
    body = json.dumps({"model": "tts-1", "input": "Hello.", "voice": "bob",
                       "response_format": "wav", "speed": 2.0, "sample_rate": 16_000})
    parts = [r async for r in stack["stub"].CreateSpeech(
        httpbody_pb2.HttpBody(content_type="application/json", data=body.encode())
    )]
    audio, rate = soundfile.read(io.BytesIO(b"".join(p.data for p in parts)))
    assert rate == 16_000
    assert len(audio) / rate == pytest.approx(0.25, abs=0.02)


async def test_openai_speech_streams_each_format_and_sse(stack):
    write_profile(stack, "bob", control={"gender": "male"}, skip_rvc=True)
    for fmt, content_type in (("wav", "audio/wav"), ("mp3", "audio/mpeg"), ("flac", "audio/flac")):
        body = json.dumps({"model": "tts-1", "input": THREE, "voice": "bob",
                           "response_format": fmt})
        call = stack["stub"].CreateSpeech(
            httpbody_pb2.HttpBody(content_type="application/json", data=body.encode())
        )
        parts = [r async for r in call]
        assert parts[0].content_type.startswith(content_type)
        assert dict(tuple(await call.initial_metadata()))["x-sample-rate"] == "24000"
        audio, rate = soundfile.read(io.BytesIO(b"".join(p.data for p in parts)))
        assert rate == 24_000
        assert len(audio) / rate == pytest.approx(1.5, abs=0.1)
    body = json.dumps({"model": "tts-1", "input": "Hi.", "voice": "bob",
                       "response_format": "pcm", "stream_format": "sse"})
    parts = [r async for r in stack["stub"].CreateSpeech(
        httpbody_pb2.HttpBody(content_type="application/json", data=body.encode())
    )]
    events = [json.loads(line[len("data: "):]) for p in parts
              for line in p.data.decode().split("\n") if line.startswith("data: ")]
    assert [e["type"] for e in events][-1] == "speech.audio.done"
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert len(pcm) == 2 * int(0.5 * 24_000)


async def test_status_counts_requests_and_reports_uptime(stack):
    await stack["stub"].Synthesize(request(skip_rvc=True))
    status = await stack["stub"].GetStatus(gateway_pb2.GetStatusRequest())
    assert status.uptime_seconds > 0
    counts = {(r.method, r.code): r.count for r in status.requests}
    assert counts[("Synthesize", "OK")] == 1


async def test_health_and_status_report_each_dependency(stack):
    health = await stack["stub"].GetHealth(gateway_pb2.GetHealthRequest())
    assert health.status == "SERVING"
    assert {d.name: d.status for d in health.dependencies} == {"tts": "SERVING", "rvc": "SERVING"}
    status = await stack["stub"].GetStatus(gateway_pb2.GetStatusRequest())
    assert (status.rvc.workers_configured, status.rvc.workers_alive) == (3, 1)
    assert status.rvc.workers[0].jobs_done == 5
    # The scripted TTS has no GetStatus: its section stays empty, the rest still reports.
    assert not status.HasField("tts")


async def test_health_degrades_when_a_dependency_goes_away(stack):
    await stack["tts_host"].stop()
    health = await stack["stub"].GetHealth(gateway_pb2.GetHealthRequest())
    assert health.status == "DEGRADED"
    tts = next(d for d in health.dependencies if d.name == "tts")
    assert tts.status == "UNREACHABLE"


async def test_metrics_count_calls_by_method_and_code(stack):
    port = stack["gateway_host"].metrics_port

    def scrape() -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()

    def handled(body: str, code: str) -> float:
        line = (f'grpc_server_handled_total{{grpc_code="{code}",grpc_method="Synthesize",'
                'grpc_service="voice.v1.Gateway"} ')
        found = [float(row[len(line):]) for row in body.splitlines() if row.startswith(line)]
        return found[0] if found else 0.0

    before = scrape()
    await stack["stub"].Synthesize(request(skip_rvc=True))
    with pytest.raises(grpc.aio.AioRpcError):
        await stack["stub"].Synthesize(request(conversion=rvc_pb2.ConversionParams(model="ghost")))
    # Counted by the server as each call ends; another test's call that ended late may
    # add to the same series, so each count must have risen by one at least.
    deadline = time.monotonic() + 10
    while True:
        body = scrape()
        risen = [handled(body, code) - handled(before, code) for code in ("OK", "NOT_FOUND")]
        if min(risen) >= 1 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert risen[0] >= 1, body
    assert risen[1] >= 1, body
    assert "grpc_server_handling_seconds_bucket" in body


def install_voice(stack, name="alice"):
    voice = stack["models"] / name
    voice.mkdir(parents=True)
    (voice / f"{name}.pth").write_bytes(b"not loaded in this test")


THREE = "First sentence here. Second one, a little longer! And the third?"


async def test_stream_sends_each_sentence_in_order_with_timing_at_the_end(stack):
    install_voice(stack)
    replies = [r async for r in stack["stub"].SynthesizeStream(request(THREE))]
    assert [r.sentence_index for r in replies] == [0, 1, 2]
    assert [r.chunk.final for r in replies] == [False, False, True]
    assert all(r.rvc_applied for r in replies)
    assert {audio_from_proto(r.chunk.audio).sample_rate for r in replies} == {VOICE_RATE}
    assert [s["text"] for s in stack["tts"].seen] == [
        "First sentence here.", "Second one, a little longer!", "And the third?"
    ]
    # One seed for the whole request, so every sentence is sampled alike.
    assert len({s["seed"] for s in stack["tts"].seen}) == 1
    timing = replies[-1].timing
    assert timing.tts.audio_seconds == pytest.approx(1.5)
    assert timing.rvc.audio_seconds == pytest.approx(1.5)
    assert 0 < timing.first_audio_seconds <= timing.total_seconds


async def test_whole_clip_synthesis_joins_the_sentences(stack):
    reply = await stack["stub"].Synthesize(request(THREE, skip_rvc=True))
    assert audio_from_proto(reply.audio).frames == 3 * 2 * (RATE // 4)
    assert reply.timing.tts.audio_seconds == pytest.approx(1.5)


async def test_a_cloned_speaker_is_encoded_once_then_reused_by_id(stack):
    clone = gateway_pb2.SynthesizeRequest(
        text=THREE,
        speaker=tts_pb2.SpeakerPrompt(
            reference=tts_pb2.ReferenceAudio(
                audio=audio_to_proto(PcmAudio(np.zeros(RATE, np.float32), RATE))
            )
        ),
        skip_rvc=True,
    )
    [r async for r in stack["stub"].SynthesizeStream(clone)]
    assert [s["speaker"] for s in stack["tts"].seen] == ["reference", "speaker_id", "speaker_id"]


async def test_a_speaker_the_tts_service_forgot_is_encoded_again_from_the_reference(stack):
    stack["tts"].forget = 1  # as after a Triton restart: its speaker cache is empty
    clone = gateway_pb2.SynthesizeRequest(
        text=THREE,
        speaker=tts_pb2.SpeakerPrompt(
            reference=tts_pb2.ReferenceAudio(
                audio=audio_to_proto(PcmAudio(np.zeros(RATE, np.float32), RATE))
            )
        ),
        skip_rvc=True,
    )
    replies = [r async for r in stack["stub"].SynthesizeStream(clone)]
    assert [r.sentence_index for r in replies] == [0, 1, 2]
    assert [s["speaker"] for s in stack["tts"].seen] == [
        "reference", "speaker_id", "reference", "speaker_id"]


async def test_the_next_sentence_is_synthesised_while_this_one_is_converted(stack):
    install_voice(stack)
    pool = stack["pool"]
    pool.gate = asyncio.Event()
    call = stack["stub"].SynthesizeStream(request(THREE))
    reading = asyncio.ensure_future(call.read())
    # The first conversion is held; TTS must still get to the second sentence.
    while len(stack["tts"].seen) < 2:
        stack["tts"].changed.clear()
        await asyncio.wait_for(stack["tts"].changed.wait(), 10)
    assert not reading.done()
    pool.gate.set()
    first = await reading
    assert first.sentence_index == 0
    rest = [await call.read(), await call.read()]
    assert [r.sentence_index for r in rest] == [1, 2]
    assert await call.read() is grpc.aio.EOF


async def test_empty_text_is_invalid_before_any_work(stack):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack["stub"].Synthesize(request("   "))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "text is empty" in caught.value.details()
    assert stack["tts"].seen == []


async def test_a_full_rvc_queue_is_resource_exhausted(stack):
    install_voice(stack)
    stack["pool"].full = True
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack["stub"].Synthesize(request())
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "queue is full" in caught.value.details()


async def test_a_stage_that_is_down_is_unavailable(stack):
    await stack["tts_host"].stop()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack["stub"].Synthesize(request(skip_rvc=True), timeout=10)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_the_callers_deadline_ends_a_held_conversion(stack):
    install_voice(stack)
    stack["pool"].gate = asyncio.Event()  # never set: the conversion waits for the deadline
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack["stub"].Synthesize(request(), timeout=1.0)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    # The gateway still serves the next request.
    stack["pool"].gate.set()
    assert (await stack["stub"].Synthesize(request())).rvc_applied


async def test_a_piper_request_needs_no_speaker_and_says_which_engine_spoke(stack):
    reply = await stack["stub"].Synthesize(gateway_pb2.SynthesizeRequest(
        text="Hi. There.", engine=tts_pb2.ENGINE_PIPER, piper=tts_pb2.PiperOptions(voice="joe"),
        skip_rvc=True,
    ))
    seen = stack["tts"].seen
    assert [(s["engine"], s["piper_voice"], s["speaker"], s["seed"]) for s in seen] == [
        (tts_pb2.ENGINE_PIPER, "joe", None, 0)] * 2  # per sentence; no seed made up for Piper
    assert (reply.engine, list(reply.notes)) == (tts_pb2.ENGINE_PIPER, [])


async def test_what_the_tts_engine_ignored_reaches_the_caller_once(stack):
    write_profile(stack, "joe", engine="piper")
    reply = await stack["stub"].Synthesize(request(text="One. Two.", voice="joe", skip_rvc=True))
    assert reply.engine == tts_pb2.ENGINE_PIPER
    assert list(reply.notes) == ["piper ignores the speaker"]  # two sentences, one note
    replies = [r async for r in stack["stub"].SynthesizeStream(
        request(text="One. Two.", voice="joe", skip_rvc=True))]
    assert [(r.engine, list(r.notes)) for r in replies] == [
        (tts_pb2.ENGINE_PIPER, ["piper ignores the speaker"]), (tts_pb2.ENGINE_UNSPECIFIED, [])]
    tts = await stack["stub"].Tts(tts_pb2.SynthesizeSpeechRequest(
        text="Hi.", engine=tts_pb2.ENGINE_PIPER))
    assert (tts.engine, list(tts.notes)) == (tts_pb2.ENGINE_PIPER, [])


@pytest.mark.parametrize("method", ["Synthesize", "SynthesizeStream"])
@pytest.mark.parametrize("reference", [
    tts_pb2.ReferenceAudio(audio=audio_pb2.Audio(pcm=b"", sample_rate=RATE)),
    tts_pb2.ReferenceAudio(transcript="Hello."),
])
async def test_an_empty_reference_clip_is_invalid_before_any_work(stack, method, reference):
    """Even for Piper, which would ignore a clip: an empty one is a mistake, never none."""
    for engine in (tts_pb2.ENGINE_UNSPECIFIED, tts_pb2.ENGINE_PIPER):
        call = getattr(stack["stub"], method)(gateway_pb2.SynthesizeRequest(
            text="Hi.", speaker=tts_pb2.SpeakerPrompt(reference=reference), engine=engine,
            skip_rvc=True))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            if method == "Synthesize":
                await call
            else:
                [r async for r in call]
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == "speaker.reference.audio is empty (no PCM bytes)"
    assert stack["tts"].seen == []


async def test_the_seed_drawn_for_a_request_is_any_uint64(stack, monkeypatch):
    import random

    monkeypatch.setattr(random, "getrandbits", lambda bits: 2**bits - 1)
    await stack["stub"].Synthesize(request("Hi.", skip_rvc=True))
    assert [s["seed"] for s in stack["tts"].seen] == [2**64 - 1]
