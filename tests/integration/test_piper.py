"""Piper, the second TTS engine, on the real stack: real English speech from the
packaged voice, streamed a sentence at a time, through the TTS service, the
gateway (TTS then RVC) and the old HTTP API; the engines and voices in /status."""

import io
import time

import grpc
import numpy as np
import parselmouth
import pytest
import requests
import soundfile
from voice.v1 import gateway_pb2, gateway_pb2_grpc, rvc_pb2, tts_pb2, tts_pb2_grpc

from services.common.audio import PcmAudio
from services.common.audio_proto import audio_from_proto
from tests.integration.http_client import call
from tests.integration.test_tts import clone_request

PACKAGED_VOICE = "en_US-joe-medium"
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A voice pipeline turns text into speech.",
    "Every sentence is sent as soon as it is ready.",
    "Nobody waits for the whole paragraph.",
    "This is the fifth sentence of the test.",
    "And this one is the last.",
]


def speech_measures(audio: PcmAudio) -> dict[str, float]:
    """Loudness, and how much of the sounding part is voiced at a speaking pitch."""
    samples = audio.samples.astype(np.float64).reshape(-1)
    hop = audio.sample_rate // 100  # 10 ms frames
    frames = samples[: samples.size // hop * hop].reshape(-1, hop)
    energy = np.sqrt((frames**2).mean(axis=1))
    sounding = energy > 0.1 * np.percentile(energy, 95)
    pitch = parselmouth.Sound(samples, audio.sample_rate).to_pitch(
        time_step=0.01, pitch_floor=60, pitch_ceiling=400).selected_array["frequency"]
    n = min(pitch.size, sounding.size)
    speaking = (pitch[:n] >= 70) & (pitch[:n] <= 300)
    return {
        "rms": float(np.sqrt((samples**2).mean())),
        "voiced": float(speaking[sounding[:n]].mean()),
        "seconds": audio.duration,
    }


def assert_speech_like(audio: PcmAudio) -> dict[str, float]:
    measures = speech_measures(audio)
    assert measures["rms"] > 0.03, measures  # silence and faint noise are far below
    assert measures["voiced"] > 0.5, measures  # most of what sounds is voiced, 70-300 Hz
    return measures


@pytest.fixture
async def tts(stack):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.config.tts_port}") as channel:
        yield tts_pb2_grpc.TextToSpeechStub(channel)


def piper_request(text, **extra):
    return tts_pb2.SynthesizeSpeechRequest(text=text, engine=tts_pb2.ENGINE_PIPER, **extra)


async def timed(call_):
    start = time.perf_counter()
    arrivals, replies = [], []
    async for reply in call_:
        arrivals.append(time.perf_counter() - start)
        replies.append(reply)
    return arrivals, replies


def joined(replies) -> PcmAudio:
    pieces = [audio_from_proto(r.chunk.audio) for r in replies if r.chunk.audio.pcm]
    return PcmAudio(np.concatenate([p.samples for p in pieces]), pieces[0].sample_rate)


async def test_piper_streams_one_sentence_at_a_time(tts):
    arrivals, replies = await timed(tts.Synthesize(piper_request(" ".join(SENTENCES)), timeout=120))
    audible = [r for r in replies if r.chunk.audio.pcm]
    assert len(audible) == len(SENTENCES)
    assert replies[-1].chunk.final and not any(r.chunk.final for r in replies[:-1])
    assert (replies[0].engine, list(replies[0].notes)) == (tts_pb2.ENGINE_PIPER, [])
    assert {audio_from_proto(r.chunk.audio).sample_rate for r in audible} == {22_050}
    # The first sentence was out long before the last one was synthesised.
    assert arrivals[0] < 0.5 * arrivals[-1], arrivals
    assert_speech_like(joined(replies))


async def test_piper_speech_grows_with_the_text(tts):
    seconds = []
    for count in (1, 2, 4):
        _, replies = await timed(tts.Synthesize(piper_request(" ".join(SENTENCES[:count]))))
        seconds.append(assert_speech_like(joined(replies))["seconds"])
    assert seconds[0] < seconds[1] < seconds[2], seconds
    assert seconds[2] > 1.5 * seconds[0] * 2, seconds  # four sentences, well over twice one


async def test_piper_ignores_a_reference_and_sampling_and_says_so(tts):
    request = piper_request("Hello there.", speaker=clone_request().speaker,
                            sampling=tts_pb2.SamplingParams(seed=3))
    _, replies = await timed(tts.Synthesize(request))
    assert replies[0].engine == tts_pb2.ENGINE_PIPER
    assert [note.split(":")[0] for note in replies[0].notes] == [
        "piper ignores the speaker", "piper ignores sampling"]
    assert "a reference clip was given" in replies[0].notes[0]
    assert not replies[0].speaker_id  # nothing was cloned or cached
    assert_speech_like(joined(replies))


async def test_piper_pace_and_voice_choices(tts):
    _, normal = await timed(tts.Synthesize(piper_request(SENTENCES[0])))
    _, slow = await timed(tts.Synthesize(piper_request(
        SENTENCES[0], piper=tts_pb2.PiperOptions(voice=PACKAGED_VOICE, length_scale=1.6))))
    assert joined(slow).duration > 1.3 * joined(normal).duration
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await timed(tts.Synthesize(piper_request("Hi.", piper=tts_pb2.PiperOptions(voice="nobody"))))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "unknown voice 'nobody'" in caught.value.details()
    assert PACKAGED_VOICE in caught.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await timed(tts.Synthesize(piper_request("...")))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "nothing to speak" in caught.value.details()


def test_status_shows_the_engines_and_voices(stack):
    body = call("GET", f"{stack.api}/v1/status").json()["tts"]
    # No Spark TTS weights here: requests that name no engine go to Piper.
    assert body["default_engine"] == "ENGINE_PIPER"
    engines = {e["engine"]: e for e in body["engines"]}
    assert engines["ENGINE_SPARK"]["ready"] is True
    assert engines["ENGINE_PIPER"]["ready"] is True
    assert PACKAGED_VOICE in engines["ENGINE_PIPER"]["voices"]
    assert engines["ENGINE_PIPER"]["default_voice"] == PACKAGED_VOICE


async def test_the_default_voice_speaks_through_tts_then_rvc(stack):
    """A request naming nothing but text: Piper speaks, the demo's RVC voice converts."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.config.api_port}") as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        tts_only = await stub.Synthesize(gateway_pb2.SynthesizeRequest(
            text=" ".join(SENTENCES[:2]), skip_rvc=True), timeout=120)
        both = await stub.Synthesize(gateway_pb2.SynthesizeRequest(
            text=" ".join(SENTENCES[:2])), timeout=120)
        streamed = [r async for r in stub.SynthesizeStream(gateway_pb2.SynthesizeRequest(
            text=" ".join(SENTENCES[:3]),
            conversion=rvc_pb2.ConversionParams(f0_method=rvc_pb2.F0_METHOD_PM)), timeout=120)]
    assert tts_only.engine == both.engine == tts_pb2.ENGINE_PIPER
    assert_speech_like(audio_from_proto(tts_only.audio))
    assert both.rvc_applied and not tts_only.rvc_applied
    converted = audio_from_proto(both.audio)
    assert converted.duration == pytest.approx(audio_from_proto(tts_only.audio).duration, rel=0.05)
    assert speech_measures(converted)["rms"] > 0.01
    assert [r.sentence_index for r in streamed] == [0, 1, 2]
    assert streamed[0].engine == tts_pb2.ENGINE_PIPER and all(r.rvc_applied for r in streamed)


def test_the_old_api_speaks_text_alone(stack):
    """The old client's /synthesize with only a text, as on a machine with no model files."""
    text = {"text": "Hello from the old API. It still works."}
    reply = requests.post(f"{stack.api}/synthesize", data=text, timeout=120)
    assert reply.status_code == 200, reply.text[:300]
    assert reply.headers["X-RVC-Applied"] == "true"
    assert reply.headers["X-TTS-Engine"] == "piper" and "X-TTS-Notes" not in reply.headers
    samples, rate = soundfile.read(io.BytesIO(reply.content), dtype="float32")
    assert samples.size / rate > 1.0
    tts = requests.post(f"{stack.api}/tts", data=text, timeout=120)
    assert tts.status_code == 200, tts.text[:300]
    speech, rate = soundfile.read(io.BytesIO(tts.content), dtype="float32")
    assert rate == 22_050  # Piper's, unconverted
    assert_speech_like(PcmAudio(speech, rate))


def test_the_old_api_says_when_piper_ignored_the_clip(stack):
    """An old client's reference clip sent with a Piper profile: spoken anyway, and said."""
    clip = io.BytesIO()
    soundfile.write(clip, np.zeros(16_000, np.float32) + 0.01, 16_000, format="WAV")
    reply = requests.post(
        f"{stack.api}/tts", data={"text": "Hello.", "voice": "demo-piper"},
        files={"reference_audio": ("ref.wav", clip.getvalue(), "audio/wav")}, timeout=120)
    assert reply.status_code == 200, reply.text[:300]
    assert reply.headers["X-TTS-Engine"] == "piper"
    assert reply.headers["X-TTS-Notes"].startswith(
        "piper ignores the speaker: a reference clip was given")
