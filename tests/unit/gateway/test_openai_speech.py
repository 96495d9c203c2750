"""OpenAI's speech request as its clients send it, and what is refused."""

import json

import pytest

from services.common.errors import InvalidArgument
from services.gateway.openai_speech import audio_delta, audio_done, parse_request


def parse(**fields):
    return parse_request("application/json", json.dumps(fields).encode())


def test_defaults_are_openais():
    request = parse(model="tts-1", input="Hello.", voice="demo")
    assert (request.response_format, request.speed, request.stream_format) == ("mp3", 1.0, "audio")
    assert request.sample_rate == 24_000 and request.seed is None


def test_a_voice_object_names_the_voice_and_extensions_are_read():
    request = parse(model="gpt-4o-mini-tts", input="Hi.", voice={"id": "narrator"},
                    response_format="OPUS", speed=1.5, stream_format="sse",
                    instructions="Cheerful.", sample_rate=48_000, seed=3)
    assert (request.voice, request.response_format, request.speed) == ("narrator", "opus", 1.5)
    assert (request.stream_format, request.sample_rate, request.seed) == ("sse", 48_000, 3)


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_every_openai_response_format_is_accepted(fmt):
    assert parse(model="tts-1", input="Hi.", voice="alloy", response_format=fmt).response_format == fmt


@pytest.mark.parametrize(
    "fields, fragment",
    [
        ({"input": "Hi.", "voice": "demo"}, "model is required"),
        ({"model": "tts-1", "voice": "demo"}, "input is required"),
        ({"model": "tts-1", "input": "  ", "voice": "demo"}, "input is empty"),
        ({"model": "tts-1", "input": "x" * 4097, "voice": "demo"}, "limit is 4096"),
        ({"model": "tts-1", "input": "Hi."}, "voice is required"),
        ({"model": "tts-1", "input": "Hi.", "voice": "demo", "response_format": "wma"}, "wma"),
        ({"model": "tts-1", "input": "Hi.", "voice": "demo", "speed": "fast"}, "speed must be"),
        ({"model": "tts-1", "input": "Hi.", "voice": "demo", "stream_format": "ws"}, "stream_format"),
        ({"model": "tts-1", "input": "Hi.", "voice": "demo", "sample_rate": 1.5}, "whole number"),
        ({"model": "tts-1", "input": "Hi.", "voice": "demo", "seed": -1}, "seed -1"),
        ({"model": "tts-1", "input": "Hi.", "voise": "alloy"}, "unknown field 'voise': the fields are"),
        ({"model": "tts-1", "input": "Hi.", "voice": "demo", "volume": 2, "skip_rcv": True},
         "unknown fields 'skip_rcv', 'volume'"),
        # Python's JSON reader turns NaN, Infinity and 1e999 into floats no int() takes.
        ({"model": "tts-1", "input": "Hi.", "voice": "demo", "sample_rate": float("inf")},
         "sample_rate must be a finite number"),
        ({"model": "tts-1", "input": "Hi.", "voice": "demo", "seed": float("nan")},
         "seed must be a finite number"),
        ({"model": "tts-1", "input": "Hi.", "voice": "demo", "speed": float("-inf")},
         "speed must be a finite number"),
    ],
)
def test_bad_requests_say_what_is_wrong(fields, fragment):
    with pytest.raises(InvalidArgument) as caught:
        parse(**fields)
    assert fragment in caught.value.message


def test_only_json_objects_are_accepted():
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        parse_request("application/json", b"{nope")
    with pytest.raises(InvalidArgument, match="must be an object"):
        parse_request("application/json", b"[]")
    with pytest.raises(InvalidArgument, match="nested too deeply"):
        parse_request("application/json", b"[" * 100_000)
    with pytest.raises(InvalidArgument, match="send JSON"):
        parse_request("multipart/form-data; boundary=x", b"--x--")
    # curl -d labels its body a form; JSON inside is still read.
    assert parse_request("application/x-www-form-urlencoded",
                         b'{"model": "m", "input": "Hi.", "voice": "v"}').voice == "v"
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        parse_request("text/plain", b"hi")


def test_events_are_server_sent_json():
    delta = audio_delta(b"\x00\x01")
    assert delta == b'data: {"type":"speech.audio.delta","audio":"AAE="}\n\n'
    done = json.loads(audio_done(5)[len(b"data: "):])
    assert done["type"] == "speech.audio.done" and done["usage"]["input_tokens"] == 5


@pytest.mark.parametrize("seed", [0, 2**63, 2**64 - 1])
def test_every_uint64_seed_is_taken_whole(seed):
    assert parse(model="tts-1", input="Hi.", voice="demo", seed=seed).seed == seed


@pytest.mark.parametrize("seed", [-1, 2**64, 2**70])
def test_a_seed_outside_uint64_is_refused_in_the_one_wording(seed):
    with pytest.raises(InvalidArgument) as caught:
        parse(model="tts-1", input="Hi.", voice="demo", seed=seed)
    assert caught.value.message == f"seed {seed} is outside 0..2^64-1"
