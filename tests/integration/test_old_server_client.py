"""A client written from the old server's source works against our edge, route by route.

tests/integration/clients/old_server_client.py calls the routes the way the old
server's users did; here every field, header and event it reads is checked to be
present with the old type, the audio to decode, and the streams to arrive sentence
by sentence.
"""

import base64
import io
import json
import time

import numpy as np
import pytest
import requests
import soundfile

from localstack.prepare.models import DEMO_RVC_MODEL, TINY_RVC_DIR
from tests.integration.clients.old_server_client import OldServerClient, OldServerError

FIVE = "One here. Two there. Three now! Four? And five."
# The old server's answers, field by field: name -> type (bool is not an int here).
OLD_HEALTH = {"healthy": bool, "status": str, "tts_ready": bool, "rvc_ready": bool, "message": str}
OLD_STATUS = {
    "running": bool, "tts_ready": bool, "tts_model": str, "triton_server": str, "rvc_ready": bool,
    "rvc_model": str, "rvc_workers": int, "rvc_workers_alive": int, "total_requests": int,
    "successful_requests": int, "failed_requests": int, "uptime": float,
}
OLD_CONFIG = {
    "has_reference_audio": bool, "reference_text": str, "pitch_shift": int, "f0_method": str,
    "index_rate": float, "filter_radius": int, "rms_mix_rate": float, "protect": float,
}


def reference_wav() -> bytes:
    rate = 22_050
    t = np.arange(2 * rate) / rate
    phase = 2 * np.pi * np.cumsum(130 + 20 * np.sin(2 * np.pi * 3 * t)) / rate
    out = io.BytesIO()
    soundfile.write(out, 0.2 * sum(np.sin(k * phase) / k for k in range(1, 6)), rate,
                    format="WAV", subtype="PCM_16")
    return out.getvalue()


def assert_fields(answer: dict, fields: dict) -> None:
    for name, kind in fields.items():
        assert name in answer, f"{name} is missing from {sorted(answer)}"
        value = answer[name]
        if kind is float:  # JSON writes 1.0 as 1.0, but a whole double may print as 1
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (name, value)
        else:
            assert type(value) is kind, (name, value)


@pytest.fixture(scope="module")
def client(stack) -> OldServerClient:
    return OldServerClient(stack.api)


def test_health_has_the_old_fields_and_meaning(client, stack):
    health = client.health()
    assert_fields(health, OLD_HEALTH)
    assert (health["healthy"], health["status"], health["tts_ready"], health["rvc_ready"]) == (
        True, "ready", True, True)
    assert health["message"] == "All services ready"
    # Ours beside them, under other names, and at /v1/health as before.
    assert health["serving_status"] == "SERVING" and len(health["dependencies"]) == 2
    assert requests.get(f"{stack.api}/v1/health", timeout=10).json()["status"] == "SERVING"


def test_status_has_the_old_fields_with_real_values(client, stack):
    before = client.status()
    client.tts("Counted.", reference_wav())
    status = client.status()
    assert_fields(status, OLD_STATUS)
    assert status["running"] and status["tts_ready"] and status["rvc_ready"]
    assert status["tts_model"] in ("spark_tts", "piper")
    assert status["triton_server"] == f"127.0.0.1:{stack.config.triton_grpc_port}"
    assert status["rvc_model"] == DEMO_RVC_MODEL  # the default profile's RVC voice
    assert status["rvc_workers"] >= status["rvc_workers_alive"] >= 1
    assert status["total_requests"] == before["total_requests"] + 1
    assert status["successful_requests"] == before["successful_requests"] + 1
    assert status["failed_requests"] == status["total_requests"] - status["successful_requests"]
    assert status["uptime"] > before["uptime"] > 0


def test_config_describes_the_defaults_and_refuses_changes(client):
    config = client.get_config()
    assert_fields(config, OLD_CONFIG)
    duration = config["reference_audio_duration"]
    assert (duration is None) == (not config["has_reference_audio"])
    assert duration is None or duration > 0
    # The default profile (demo) converts with pm; the rest are the old server's defaults.
    assert (config["f0_method"], config["pitch_shift"], config["index_rate"]) == ("pm", 0, 0.75)
    assert (config["rms_mix_rate"], config["protect"], config["filter_radius"]) == (0.0, 0.33, 3)
    for change in (lambda: client.update_config(pitch_shift=2),
                   lambda: client.upload_reference_audio(reference_wav()),
                   client.delete_reference_audio):
        with pytest.raises(OldServerError) as refused:
            change()
        assert refused.value.response.status_code == 501
        assert "voice of your own" in refused.value.detail and "POST /v1/voices" in refused.value.detail


def test_synthesize_answers_wav_with_every_old_header(client):
    answer = client.synthesize("Hello there. Goodbye now.", reference_wav())
    headers = answer.headers
    assert headers["content-type"] == "audio/wav"
    assert float(headers["X-TTS-Time"]) > 0 and float(headers["X-RVC-Time"]) >= 0
    assert float(headers["X-Total-Time"]) >= float(headers["X-TTS-Time"])
    assert int(headers["X-Sentences"]) == 2
    assert int(headers["X-Sample-Rate"]) == answer.sample_rate
    assert float(headers["X-Audio-Duration"]) == pytest.approx(
        len(answer.audio) / answer.sample_rate, abs=0.001)
    converted = client.synthesize("Converted.", reference_wav(), f0_method="pm",
                                  extra={"model": "untrained-v1-f0-40k"})
    assert converted.sample_rate == int(converted.headers["X-Sample-Rate"]) == 40_000
    assert float(converted.headers["X-RVC-Time"]) > 0


def test_the_stream_is_the_old_multipart_part_by_part(client):
    text = "Line one\nstill the first sentence, long enough to be cut at fifty. Two. Three!"
    response, parts = client.synthesize_stream(text, reference_wav(), skip_rvc=True)
    assert response.headers["content-type"] == "multipart/mixed; boundary=boundary"
    parts = list(parts)
    assert [list(p.headers) for p in parts] == [[
        "Content-Type", "X-Sentence-Index", "X-Sentence-Text", "X-TTS-Time", "X-RVC-Time",
        "Content-Length"]] * 3
    assert [int(p.headers["X-Sentence-Index"]) for p in parts] == [0, 1, 2]
    # The first 50 characters, the line break a space so that the header stays one line.
    assert [p.headers["X-Sentence-Text"] for p in parts] == [
        "Line one still the first sentence, long enough to ", "Two.", "Three!"]
    for part in parts:
        assert part.headers["Content-Type"] == "audio/wav"
        assert float(part.headers["X-TTS-Time"]) > 0 and float(part.headers["X-RVC-Time"]) == 0
        assert part.sample_rate == 16_000 and len(part.audio) > 0


def test_the_stream_splits_on_the_literal_boundary(client):
    """Some old clients split the whole body on b"--boundary" instead of parsing it."""
    response = requests.post(
        f"{client.api_url}/synthesize/stream", data={"text": "One. Two.", "skip_rvc": True},
        files={"reference_audio": ("ref.wav", reference_wav(), "audio/wav")}, timeout=300)
    pieces = response.content.split(b"--boundary")
    assert pieces[0] == b"" and pieces[-1] == b"--\r\n"
    for piece in pieces[1:-1]:
        head, wav = piece.split(b"\r\n\r\n", 1)
        audio, rate = soundfile.read(io.BytesIO(wav[:-2]))
        assert rate == 16_000 and len(audio) > 0


def test_sse_streams_the_old_events_as_each_sentence_is_ready(client):
    started = time.monotonic()
    response, events = client.synthesize_sse(
        FIVE, reference_wav(), f0_method="pm", extra={"model": DEMO_RVC_MODEL})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = list(events)
    assert [e.data["type"] for e in events] == ["start"] + ["chunk"] * 5 + ["end"]
    start = events[0].data
    assert start == {"type": "start", "total_chunks": 5, "sample_rate": start["sample_rate"],
                     "format": "wav"}
    assert type(start["sample_rate"]) is int
    for index, event in enumerate(events[1:-1]):
        chunk = event.data
        assert set(chunk) == {"type", "index", "data", "tts_time", "rvc_time", "text"}
        assert chunk["index"] == index and isinstance(chunk["text"], str)
        assert type(chunk["tts_time"]) is float and type(chunk["rvc_time"]) is float
        audio, rate = OldServerClient.chunk_audio(event)
        assert rate == start["sample_rate"] and len(audio) > 0
    assert [e.data["text"] for e in events[1:-1]] == [
        "One here.", "Two there.", "Three now!", "Four?", "And five."]
    # Each event left when its sentence was ready, not all at the end (a buffering edge
    # would deliver them at once): the first chunk came well before the last, by at least
    # a quarter of the whole stream's time (about half here, the first sentence the slowest).
    first, last = events[1].arrived, events[-2].arrived
    assert last - first >= (last - started) / 4, (first - started, last - started)


def test_sse_without_reference_audio_speaks_with_the_default_voice(client):
    _, events = client.synthesize_sse("Just text.")
    events = list(events)
    assert [e.data["type"] for e in events] == ["start", "chunk", "end"]
    assert len(OldServerClient.chunk_audio(events[1])[0]) > 0


def test_tts_and_rvc_alone_answer_with_the_old_headers(client):
    tts = client.tts("Just speech.", reference_wav())
    assert float(tts.headers["X-Processing-Time"]) > 0
    assert float(tts.headers["X-Audio-Duration"]) == pytest.approx(
        len(tts.audio) / tts.sample_rate, abs=0.001)
    # No model, as the old server had one loaded: the default voice's (demo's) RVC voice.
    rvc = client.rvc(tts.response.content)
    assert rvc.sample_rate == int(rvc.headers["X-Sample-Rate"]) == 48_000  # untrained-v2-f0-48k
    assert float(rvc.headers["X-Processing-Time"]) > 0
    assert float(rvc.headers["X-RVC-Time"]) > 0  # the notebook reads this one


@pytest.mark.parametrize(
    "extra, status, fragments",
    [
        ({"skip_rcv": "true"}, 400, ("skip_rcv", "did you mean 'skip_rvc'")),
        ({"voice": "ghost"}, 404, ("voice 'ghost' is not defined",)),
        ({"f0_method": "magic"}, 400, ("f0_method 'magic' is unknown",)),
    ],
)
def test_errors_carry_fastapis_detail_beside_ours(client, extra, status, fragments):
    with pytest.raises(OldServerError) as failed:
        client.synthesize("Hi.", reference_wav(), extra=extra)
    response = failed.value.response
    assert response.status_code == status
    body = response.json()
    assert failed.value.detail == body["error"]["message"]
    for fragment in fragments:
        assert fragment in failed.value.detail


def test_an_error_of_envoy_itself_carries_detail_on_an_old_route(client):
    response = requests.get(f"{client.api_url}/synthesize", timeout=10)  # POST only: no route
    assert response.status_code == 404
    body = response.json()
    assert body["detail"] == body["error"]["message"] == "no such route"
    ours = requests.get(f"{client.api_url}/v1/synthesize", timeout=10)
    assert ours.status_code == 404 and "detail" not in ours.json()  # our routes keep our shape


def _message(response: requests.Response) -> str:
    assert response.status_code >= 400, response.text[:200]
    return response.json()["error"]["message"]


def test_no_error_message_names_a_path_on_the_server(client, stack):
    run_dir = str(stack.config.run_dir)
    rvc_voices = stack.config.models_dir / TINY_RVC_DIR / "voices"
    profiles = stack.config.run_dir / "voices"
    broken_voice = rvc_voices / "zz-broken.pth"
    broken_profile, no_clip = profiles / "zz-broken.json", profiles / "zz-no-clip.json"
    messages = {}
    try:
        broken_voice.write_bytes(b"not a checkpoint")
        broken_profile.write_text("{not json")
        no_clip.write_text(json.dumps({"reference_audio": "missing.wav"}))
        time.sleep(1.5)  # the gateway rescans its profiles every second
        speech = base64.b64encode(reference_wav()).decode()
        for name, path, body in (
            ("unknown model", "/rvc", {"audio": speech, "model": "ghost"}),
            ("broken voice file", "/rvc", {"audio": speech, "model": "zz-broken"}),
            ("broken profile", "/synthesize", {"text": "Hi.", "voice": "zz-broken"}),
            ("profile without its clip", "/synthesize", {"text": "Hi.", "voice": "zz-no-clip"}),
        ):
            messages[name] = _message(requests.post(f"{stack.api}{path}", json=body, timeout=120))
        messages["voices"] = json.dumps(requests.get(f"{stack.api}/v1/voices", timeout=10).json())
    finally:
        for path in (broken_voice, broken_profile, no_clip):
            path.unlink(missing_ok=True)
        time.sleep(1.5)  # gone from the listing before the next test
    assert "cannot be loaded" in messages["broken voice file"]
    assert "zz-broken" in messages["broken profile"] and "missing.wav" in messages["profile without its clip"]
    for name, message in messages.items():
        assert run_dir not in message, (name, message)
        if name != "voices":
            assert "/" not in message, (name, message)
