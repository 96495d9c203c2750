"""OpenAI's own Python client against the edge: /v1/audio/speech in every format, plain
and streamed, with OpenAI's voice names (aliases of the stack's default profile, the
generated ``demo``) and with the stack's profiles."""

import io
import time

import av
import numpy as np
import openai
import pytest
import requests
import soundfile

FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
# How much longer a lossy file may decode than the same speech as WAV: MP3 and AAC
# streams cannot say how much of their first and last frames is padding.
LOSSY_SLACK_SECONDS = {"mp3": 0.1, "opus": 0.03, "aac": 2 * 1024 / 24_000}


@pytest.fixture(scope="module")
def client(stack):
    return openai.OpenAI(base_url=f"{stack.api}/v1", api_key="not-checked", max_retries=0,
                         timeout=300)


def decode(data: bytes, fmt: str) -> tuple[np.ndarray, int]:
    if fmt == "pcm":  # OpenAI's raw format: 24 kHz, 16-bit, mono
        return np.frombuffer(data, "<i2").astype(np.float32) / 32768, 24_000
    if fmt == "aac":  # ADTS, which libsndfile does not read
        with av.open(io.BytesIO(data), format="adts") as container:
            (stream,) = container.streams.audio
            frames = [frame.to_ndarray() for frame in container.decode(stream)]
        assert all(frame.shape[0] == 1 for frame in frames)  # mono
        return np.concatenate(frames, axis=1)[0], stream.rate
    return soundfile.read(io.BytesIO(data), dtype="float32")


def assert_playable(data: bytes, fmt: str) -> float:
    """Decodes ``data`` as 24 kHz mono speech; returns its duration in seconds."""
    audio, rate = decode(data, fmt)
    assert rate == 24_000
    assert audio.ndim == 1 and 0.2 < audio.shape[0] / rate < 30
    assert np.all(np.isfinite(audio)) and np.abs(audio).max() > 0
    return audio.shape[0] / rate


@pytest.mark.parametrize("fmt", FORMATS)
def test_speech_in_every_format_is_playable(client, fmt):
    response = client.audio.speech.create(
        model="tts-1", voice="alloy", input="Hello from the edge.", response_format=fmt
    )
    assert_playable(response.content, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_streamed_speech_in_every_format_is_one_playable_file(client, fmt):
    with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="alloy", input="Streamed. In two sentences.",
        response_format=fmt,
    ) as response:
        assert response.status_code == 200
        data = b"".join(response.iter_bytes())
    assert_playable(data, fmt)


def test_every_format_carries_the_same_speech(client):
    # Spark TTS with a fixed seed says the same thing every time (Piper, the default
    # voice's engine, samples its own noise): the formats differ only in their codecs.
    def seconds(fmt):
        response = client.audio.speech.create(
            model="tts-1", voice="demo-spark", input="Same speech.", response_format=fmt,
            extra_body={"seed": 5},
        )
        return assert_playable(response.content, fmt)

    durations = {fmt: seconds(fmt) for fmt in FORMATS}
    for fmt in ("pcm", "flac"):
        assert durations[fmt] == pytest.approx(durations["wav"], abs=1e-3), durations
    for fmt, slack in LOSSY_SLACK_SECONDS.items():
        assert -0.01 <= durations[fmt] - durations["wav"] <= slack, durations


def test_openai_voice_names_work_on_every_route_and_are_listed(stack):
    voices = requests.get(f"{stack.api}/v1/voices", timeout=30).json()["voices"]
    aliases = {voice["name"]: voice["aliases"] for voice in voices}
    assert aliases["demo"] == ["alloy", "ash", "ballad", "coral", "echo", "fable", "nova",
                               "onyx", "sage", "shimmer", "verse"]
    assert aliases["demo-spark"] == []

    synthesized = requests.post(f"{stack.api}/v1/synthesize",
                                json={"text": "Hi.", "voice": "echo", "skip_rvc": True}, timeout=300)
    assert synthesized.status_code == 200, synthesized.text[:300]
    legacy = requests.post(f"{stack.api}/tts", files={"text": (None, "Hi."), "voice": (None, "nova")},
                           timeout=300)
    assert legacy.status_code == 200, legacy.text[:300]
    assert soundfile.read(io.BytesIO(legacy.content))[0].shape[0] > 0


def test_streamed_speech_arrives_in_pieces_before_the_end(client):
    # A short first sentence and two long ones, with a fixed seed: the token
    # caps (which grow with the text) and the sampling are the same every run,
    # so the first sentence is the small part of the work on any machine.
    text = ("Hi. Then comes a much longer second sentence with many more words in it. "
            "And a third, just as long, to finish the request off at last.")
    start = time.perf_counter()
    arrivals = []
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="demo", input=text, response_format="mp3",
        extra_body={"seed": 21},
    ) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        data = b""
        for chunk in response.iter_bytes():
            arrivals.append(time.perf_counter() - start)
            data += chunk
    audio, rate = soundfile.read(io.BytesIO(data))
    assert rate == 24_000 and audio.shape[0] > 0
    # The first audio left while the two long sentences were still to come.
    assert len(arrivals) > 1 and arrivals[0] < arrivals[-1] * 0.6, arrivals


def test_server_sent_events_carry_base64_audio(stack):
    response = requests.post(
        f"{stack.api}/v1/audio/speech",
        json={"model": "tts-1", "voice": "demo", "input": "Events.", "response_format": "pcm",
              "stream_format": "sse"},
        stream=True, timeout=300,
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    lines = [line for line in response.iter_lines() if line.startswith(b"data: ")]
    assert lines[-1].startswith(b'data: {"type":"speech.audio.done"')
    assert all(b'"speech.audio.delta"' in line for line in lines[:-1]) and len(lines) > 1


def test_speed_shortens_the_speech(client):
    def seconds(speed):
        response = client.audio.speech.create(
            model="tts-1", voice="demo-spark", input="Speed.", response_format="wav", speed=speed,
            extra_body={"sample_rate": 16_000, "seed": 11},
        )
        audio, rate = soundfile.read(io.BytesIO(response.content))
        assert rate == 16_000
        return audio.shape[0] / rate

    # The same text and seed, so the same speech before the stretch: Spark TTS, which
    # the seed fixes (Piper, the demo's engine, samples its own noise).
    normal, fast = seconds(1.0), seconds(2.0)
    assert fast == pytest.approx(normal / 2, rel=0.05), (normal, fast)


def test_errors_are_openai_style_and_the_service_keeps_serving(client, stack):
    with pytest.raises(openai.NotFoundError) as caught:
        client.audio.speech.create(model="tts-1", voice="nobody", input="Hi.")
    assert "nobody" in caught.value.message and "demo" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(model="tts-1", voice="demo", input="Hi.",
                                   response_format="wma")
    assert "wma" in caught.value.message
    # A misspelt or foreign field is named, not dropped.
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.",
                                   extra_body={"skip_rcv": True})
    assert "unknown field 'skip_rcv'" in caught.value.message
    reply = requests.post(f"{stack.api}/v1/audio/speech",
                          json={"model": "tts-1", "voise": "alloy", "input": "Hi."}, timeout=30)
    assert reply.status_code == 400
    assert reply.json()["error"]["message"].startswith("unknown field 'voise': the fields are")
    with pytest.raises(openai.BadRequestError):
        client.audio.speech.create(model="tts-1", voice="demo", input="Hi.", speed=9)
    with pytest.raises(openai.BadRequestError):
        client.audio.speech.create(model="tts-1", voice="demo", input="")
    voices = requests.get(f"{stack.api}/v1/voices", timeout=30).json()
    assert "demo" in [v["name"] for v in voices["voices"]]
