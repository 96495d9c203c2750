"""Unknown JSON fields on the transcoded REST routes are a 400 naming the field.

Envoy's transcoder alone drops them: {"text": "hi", "skip_rcv": true} used to
speak, converted, as if the misspelt skip_rvc had never been sent.
"""

import base64

import numpy as np
import pytest

from tests.integration.http_client import call

TEXT = {"text": "Hi.", "voice": "demo"}


@pytest.mark.parametrize(("path", "body", "field", "message"), [
    ("/v1/synthesize", {**TEXT, "skip_rcv": True}, "skip_rcv", "SynthesizeRequest"),
    ("/v1/synthesize:stream", {**TEXT, "skip_rcv": True}, "skip_rcv", "SynthesizeRequest"),
    ("/v1/tts", {"text": "Hi.", "voise": "demo"}, "voise", "SynthesizeSpeechRequest"),
    ("/v1/rvc", {"params": {"pitch_shfit": 2}}, "params.pitch_shfit", "ConversionParams"),
    # Inside nested messages and repeated ones, after fields with escapes and long strings.
    ("/v1/synthesize", {"text": "a \"quoted\" \\ text", "speaker": {"control": {"gendr": 1}}},
     "speaker.control.gendr", "VoiceControl"),
])
def test_an_unknown_field_is_400_naming_it(stack, path, body, field, message):
    reply = call("POST", f"{stack.api}{path}", body)

    assert reply.status == 400, reply.body[:300]
    assert reply.json() == {"error": {
        "code": 400, "status": "INVALID_ARGUMENT",
        "message": f"unknown field '{field}' (voice.v1.{message} has no such field)",
    }}


def test_known_fields_pass_in_either_spelling(stack):
    # Proto names and their JSON names, as the transcoder takes them.
    reply = call("POST", f"{stack.api}/v1/synthesize",
                 {**TEXT, "skipRvc": True, "sample_rate": 16_000, "sampling": {"seed": 3}})

    assert reply.status == 200, reply.body[:300]
    assert reply.json()["audio"]["sample_rate"] == 16_000


def test_a_large_body_is_read_whole_before_its_last_field_is_judged(stack):
    pcm = base64.b64encode(np.zeros(2 * 44_100 * 12, "<f4").tobytes()).decode()  # ~4 MB of JSON
    audio = {"pcm": pcm, "sample_rate": 44_100, "sample_format": "SAMPLE_FORMAT_PCM_F32LE"}

    unknown = call("POST", f"{stack.api}/v1/rvc", {"audio": audio, "params": {"pitch": 1}})
    known = call("POST", f"{stack.api}/v1/rvc", {"audio": audio, "params": {"pitch_shift": 99}})

    assert unknown.status == 400 and "'params.pitch'" in unknown.json()["error"]["message"]
    # The gateway's own check: the body went through the filter and the transcoder.
    assert known.status == 400 and "pitch_shift 99" in known.json()["error"]["message"]


def test_bodies_that_are_not_json_still_get_the_transcoders_answer(stack):
    reply = call("POST", f"{stack.api}/v1/synthesize", raw=b'{"text": ')

    assert reply.status == 400
    assert reply.json()["error"]["status"] == "INVALID_ARGUMENT"
