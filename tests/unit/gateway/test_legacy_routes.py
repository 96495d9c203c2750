"""The old server's routes on the gateway servicer, over real gRPC (the stack of
test_gateway_servicer: a scripted TTS service, the real RVC service on a stand-in pool)."""

import base64
import io
import json

import grpc
import pytest
import soundfile
from google.api import httpbody_pb2
from voice.v1 import gateway_pb2

from services.gateway import legacy_status, legacy_stream
from services.gateway.voices import VoiceBook
from tests.unit.gateway import test_gateway_servicer
from tests.unit.gateway.test_gateway_servicer import install_voice, write_profile
from tests.unit.rvc.fake_pool import VOICE_RATE

stack = test_gateway_servicer.stack  # the fixture, shared
CONTROL = {"gender": "male"}


def body(**fields) -> httpbody_pb2.HttpBody:
    return httpbody_pb2.HttpBody(content_type="application/json", data=json.dumps(fields).encode())


def wav_b64(seconds=0.25, rate=16_000) -> str:
    out = io.BytesIO()
    soundfile.write(out, [0.1] * int(seconds * rate), rate, format="WAV", subtype="PCM_16")
    return base64.b64encode(out.getvalue()).decode()


async def test_synthesize_sends_every_old_header(stack):
    write_profile(stack, "bob", control=CONTROL)
    call = stack["stub"].LegacySynthesize(body(text="One. Two.", voice="bob", skip_rvc=True))
    reply = await call
    headers = dict(await call.initial_metadata())
    audio, rate = soundfile.read(io.BytesIO(reply.data))
    assert int(headers["x-sentences"]) == 2
    assert int(headers["x-sample-rate"]) == rate
    assert float(headers["x-audio-duration"]) == pytest.approx(len(audio) / rate, abs=0.001)
    assert float(headers["x-total-time"]) >= float(headers["x-tts-time"]) > 0
    assert float(headers["x-rvc-time"]) == 0.0


async def test_the_stream_is_the_old_multipart_unless_audio_is_asked_for(stack):
    write_profile(stack, "bob", control=CONTROL)
    request = body(text="One. Two.", voice="bob", skip_rvc=True)
    parts = [reply async for reply in stack["stub"].LegacySynthesizeStream(request)]
    assert {p.content_type for p in parts} == {"multipart/mixed; boundary=boundary"}
    data = b"".join(p.data for p in parts)
    assert data.startswith(b"--boundary\r\nContent-Type: audio/wav\r\nX-Sentence-Index: 0\r\n")
    assert data.endswith(b"\r\n--boundary--\r\n")
    assert b"X-Sentence-Text: Two.\r\n" in data
    wanted = [reply async for reply in stack["stub"].LegacySynthesizeStream(
        request, metadata=(("accept", "audio/wav"),))]
    assert wanted[0].content_type == "audio/wav" and wanted[0].data[:4] == b"RIFF"


async def test_sse_sends_start_a_chunk_per_sentence_and_end(stack):
    write_profile(stack, "bob", control=CONTROL)
    replies = [r async for r in stack["stub"].LegacySynthesizeSse(
        body(text="One. Two.", voice="bob", skip_rvc=True))]
    assert {r.content_type for r in replies} == {"text/event-stream"}
    events = [json.loads(r.data.decode().split("data: ", 1)[1]) for r in replies]
    assert [e["type"] for e in events] == ["start", "chunk", "chunk", "end"]
    assert events[0] == {"type": "start", "total_chunks": 2, "sample_rate": 16_000, "format": "wav"}
    assert [(e["index"], e["text"]) for e in events[1:3]] == [(0, "One."), (1, "Two.")]
    audio, rate = soundfile.read(io.BytesIO(base64.b64decode(events[1]["data"])))
    assert rate == 16_000 and len(audio) > 0


async def test_sse_reports_a_failure_after_the_start_as_an_error_event(stack):
    write_profile(stack, "bob", control=CONTROL)
    replies = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # then the call fails: no end event
        async for reply in stack["stub"].LegacySynthesizeSse(
                body(text="Fine. explode", voice="bob", skip_rvc=True)):
            replies.append(reply)
    events = [json.loads(r.data.decode().split("data: ", 1)[1]) for r in replies]
    assert [e["type"] for e in events] == ["start", "chunk", "error"]
    assert events[2]["message"] == "internal error"  # no internals leak
    assert caught.value.code() is grpc.StatusCode.INTERNAL


async def test_sse_fails_with_a_status_before_its_start(stack):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stack["stub"].LegacySynthesizeSse(body(text="Hi.", voice="ghost")):
            pass
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_rvc_with_a_voice_converts_with_its_model_and_the_old_defaults(stack):
    install_voice(stack)
    write_profile(stack, "bob", control=CONTROL, rvc_model="alice", rvc={"pitch_shift": 5})
    call = stack["stub"].LegacyRvc(body(audio=wav_b64(), voice="bob", protect=0.2))
    reply = await call
    _, rate = soundfile.read(io.BytesIO(reply.data))
    assert rate == VOICE_RATE
    params = stack["pool"].calls[-1][1]["params"]
    assert (params["model"], params["pitch_shift"]) == ("alice", 5)  # the profile's
    assert params["protect"] == pytest.approx(0.2)  # the request's
    assert params["rms_mix_rate"] == 0.0  # the old server's default, not the WebUI's 0.25
    assert float(dict(await call.initial_metadata())["x-rvc-time"]) > 0


async def test_health_has_the_old_fields_and_ours(stack):
    health = await stack["stub"].GetLegacyHealth(gateway_pb2.GetHealthRequest())
    assert (health.healthy, health.status, health.tts_ready, health.rvc_ready) == (
        True, "ready", True, True)
    assert health.message == "All services ready"
    assert health.serving_status == "SERVING" and len(health.dependencies) == 2
    await stack["tts_host"].stop()
    health = await stack["stub"].GetLegacyHealth(gateway_pb2.GetHealthRequest())
    assert (health.healthy, health.status, health.message) == (True, "degraded", "TTS: False, RVC: True")
    assert health.serving_status == "DEGRADED"


async def test_status_has_the_old_fields(stack):
    install_voice(stack)  # the only voice: the RVC service's default
    write_profile(stack, "bob", control=CONTROL)
    await stack["stub"].LegacySynthesize(body(text="Hi.", voice="bob", skip_rvc=True))
    with pytest.raises(grpc.aio.AioRpcError):
        await stack["stub"].LegacySynthesize(body(text="Hi.", voice="ghost"))
    status = await stack["stub"].GetStatus(gateway_pb2.GetStatusRequest())
    assert status.running and status.rvc_ready and status.tts_ready
    assert (status.rvc_workers, status.rvc_workers_alive, status.rvc_model) == (3, 1, "alice")
    # Reports (this GetStatus among them) are not requests, as on the old server.
    assert (status.total_requests, status.successful_requests, status.failed_requests) == (2, 1, 1)
    assert status.uptime == pytest.approx(status.uptime_seconds)
    assert status.triton_server == "" and status.tts_model == ""  # the scripted TTS reports nothing


async def test_config_without_a_default_voice_is_the_old_servers(stack):
    config = await stack["stub"].GetLegacyConfig(gateway_pb2.GetLegacyConfigRequest())
    assert not config.has_reference_audio
    assert config.reference_audio_duration.WhichOneof("kind") == "null_value"
    assert (config.pitch_shift, config.f0_method, config.filter_radius) == (0, "rmvpe", 3)
    assert (config.index_rate, config.rms_mix_rate, config.protect) == (0.75, 0.0, 0.33)


async def test_changing_the_config_is_unimplemented_pointing_to_voice_profiles(stack):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack["stub"].LegacyChangeConfig(body(pitch_shift=2))
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert "voice of your own" in caught.value.details() and "POST /v1/voices" in caught.value.details()


def test_a_sentence_header_never_breaks_a_line():
    assert legacy_stream.header_text("Line one.\r\nLine two\nand\rthree " + "x" * 60) == (
        "Line one. Line two and three " + "x" * 20)
    part = legacy_stream.multipart_part("audio/wav", b"RIFF", 3, "Hi\r\nthere", 0.5, 0.25)
    assert part == (b"--boundary\r\nContent-Type: audio/wav\r\nX-Sentence-Index: 3\r\n"
                    b"X-Sentence-Text: Hi there\r\nX-TTS-Time: 0.500\r\nX-RVC-Time: 0.250\r\n"
                    b"Content-Length: 4\r\n\r\nRIFF\r\n")


@pytest.mark.parametrize(
    "accept, response_format, one_file",
    [
        ("", "", False),
        ("*/*", "", False),
        ("application/json", "", False),
        ("audio/wav", "", True),
        ("audio/*", "", True),
        ("audio/mpeg, */*;q=0.1", "", True),
        ("", "wav", True),
        ("multipart/mixed", "flac", False),
        ("multipart/mixed, audio/wav", "", False),
    ],
)
def test_the_stream_is_one_file_only_when_audio_is_asked_for(accept, response_format, one_file):
    assert legacy_stream.wants_one_file(accept, response_format) is one_file


def test_config_describes_the_default_profile_and_its_clip(tmp_path):
    soundfile.write(tmp_path / "narrator.wav", [0.1] * 24_000, 16_000, subtype="PCM_16")
    (tmp_path / "narrator.json").write_text(json.dumps({
        "reference_audio": "narrator.wav", "reference_text": "What it says.",
        "rvc": {"pitch_shift": -3, "f0_method": "crepe-tiny", "protect": 0.2},
    }))
    config = legacy_status.legacy_config(
        VoiceBook(tmp_path, "narrator").usable_default())
    assert (config.voice, config.has_reference_audio, config.reference_text) == (
        "narrator", True, "What it says.")
    assert config.reference_audio_duration.number_value == pytest.approx(1.5)
    assert (config.pitch_shift, config.f0_method, config.protect) == (-3, "crepe-tiny", 0.2)
    assert (config.index_rate, config.rms_mix_rate) == (0.75, 0.0)  # the old defaults
    # A default that cannot be used describes the old defaults.
    assert VoiceBook(tmp_path, "ghost").usable_default() is None


async def test_tts_alone_speaks_the_profiles_speaker_unconverted(stack):
    write_profile(stack, "bob", control=CONTROL, sampling={"seed": 11})
    call = stack["stub"].LegacyTts(body(text="Just speech.", voice="bob"))
    reply = await call
    speech, rate = soundfile.read(io.BytesIO(reply.data))
    assert rate == test_gateway_servicer.RATE and speech.shape[0] > 0
    seen = stack["tts"].seen[-1]
    assert (seen["text"], seen["speaker"], seen["seed"]) == ("Just speech.", "control", 11)
    assert "x-rvc-time" not in dict(await call.initial_metadata())
