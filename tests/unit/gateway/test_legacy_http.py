"""The old server's form contract: parsing bodies, mapping fields, writing WAV."""

import base64
import io
import json

import numpy as np
import pytest
import soundfile
from urllib3 import encode_multipart_formdata
from voice.v1 import rvc_pb2, tts_pb2

from services.common.errors import InvalidArgument
from services.gateway.legacy_http import (
    conversion_params,
    job,
    parse_form,
    response_format,
)
from services.gateway.pipeline import Pipeline
from services.gateway.voices import VoiceBook

NO_VOICES = VoiceBook(None)


def wav(seconds=0.5, rate=22_050) -> bytes:
    out = io.BytesIO()
    tone = 0.3 * np.sin(np.arange(int(seconds * rate)) * 2 * np.pi * 200 / rate)
    soundfile.write(out, tone, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def test_multipart_fields_and_files_are_read_as_requests_sends_them():
    body, content_type = encode_multipart_formdata({
        "text": "Hello.", "pitch_shift": "3", "f0_method": "harvest",
        "reference_audio": ("ref.wav", wav(), "audio/wav"),
    })
    form = parse_form(content_type, body)
    assert form.fields == {"text": "Hello.", "pitch_shift": "3", "f0_method": "harvest"}
    assert form.files["reference_audio"] == wav()
    request = job(form, NO_VOICES)
    assert request.text == "Hello."
    assert request.speaker.reference.audio.sample_rate == 22_050
    params = conversion_params(form)
    assert (params.pitch_shift, params.f0_method) == (3, rvc_pb2.F0_METHOD_HARVEST)
    assert not params.HasField("index_rate")  # absent: the WebUI default applies
    assert not request.sampling.HasField("seed")
    seeded = parse_form("application/json", json.dumps(
        {"seed": 7, "reference_audio": base64.b64encode(wav()).decode()}).encode())
    assert job(seeded, NO_VOICES).sampling.seed == 7


def test_json_and_url_encoded_bodies_carry_the_same_fields():
    body = json.dumps({"text": "Hi.", "skip_rvc": True, "index_rate": 0.5,
                       "reference_audio": base64.b64encode(wav()).decode()}).encode()
    form = parse_form("application/json", body)
    assert form.flag("skip_rvc") is True
    assert conversion_params(form).index_rate == 0.5
    assert form.audio("reference_audio").sample_rate == 22_050
    form = parse_form("application/x-www-form-urlencoded", b"text=Hi.&skip_rvc=0&protect=0.2")
    assert form.flag("skip_rvc") is False
    assert conversion_params(form).protect == pytest.approx(0.2)


@pytest.mark.parametrize(
    "content_type, body, fragment",
    [
        ("text/plain", b"hello", "content type 'text/plain' is not accepted"),
        ("application/json", b"{nope", "not valid JSON"),
        ("application/json", b"[1, 2]", "must be an object"),
        ("application/json", b'{"reference_audio": "%%%"}', "not base64"),
        ("multipart/form-data", b"garbage", "cannot be parsed"),
        ("application/json", b'{"text": ' * 50_000, "nested too deeply"),
        ("application/x-www-form-urlencoded", b"text=caf%E9", "form is not valid UTF-8"),
        ("application/x-www-form-urlencoded", b"text=caf\xe9", "form is not valid UTF-8"),
        (*reversed(encode_multipart_formdata({"text": b"caf\xe9"})),
         "the field 'text' is not valid UTF-8"),
    ],
)
def test_unreadable_bodies_are_invalid(content_type, body, fragment):
    with pytest.raises(InvalidArgument, match=fragment):
        parse_form(content_type, body)


@pytest.mark.parametrize(
    "fields, fragment",
    [
        ({"f0_method": "magic"}, "f0_method 'magic' is unknown"),
        ({"pitch_shift": "1.5"}, "pitch_shift '1.5' is not a int"),
        ({"index_rate": "lots"}, "index_rate 'lots' is not a float"),
        # Numbers the proto's integer fields cannot hold are refused, not a crash.
        ({"pitch_shift": "99999999999"}, "pitch_shift 99999999999 is out of range"),
        ({"filter_radius": "-1"}, "filter_radius -1 is out of range"),
        ({"resample_sr": "-8000"}, "resample_sr -8000 is out of range"),
    ],
)
def test_bad_fields_are_invalid(fields, fragment):
    form = parse_form("application/json", json.dumps(fields).encode())
    with pytest.raises(InvalidArgument, match=fragment):
        conversion_params(form)


def test_flags_and_files_are_checked():
    form = parse_form("application/json", b'{"skip_rvc": "maybe"}')
    with pytest.raises(InvalidArgument, match="skip_rvc 'maybe' is not true or false"):
        form.flag("skip_rvc")
    with pytest.raises(InvalidArgument, match="the file reference_audio is required"):
        job(form, NO_VOICES)
    form = parse_form("application/json", json.dumps(
        {"audio": base64.b64encode(b"not a wav").decode()}).encode())
    with pytest.raises(InvalidArgument, match="^audio: "):
        form.audio("audio")


def test_with_a_default_profile_text_alone_is_enough(tmp_path):
    (tmp_path / "demo.json").write_text(json.dumps({"engine": "piper", "rvc_model": "bob"}))
    spoken = job(parse_form("application/json", b'{"text": "Hi."}'), VoiceBook(tmp_path, "demo"))
    assert (spoken.engine, spoken.conversion.model) == (tts_pb2.ENGINE_PIPER, "bob")
    assert not spoken.speaker.WhichOneof("source")


def test_absent_fields_stay_unset_so_a_profile_can_fill_them(tmp_path):
    (tmp_path / "bob.json").write_text(json.dumps(
        {"control": {"gender": "male"}, "rvc_model": "bob",
         "rvc": {"pitch_shift": 4, "f0_method": "pm"}}))
    voices = VoiceBook(tmp_path)
    named = job(parse_form("application/json", b'{"text": "Hi.", "voice": "bob"}'), voices)
    assert named.speaker.WhichOneof("source") == "control"
    assert (named.conversion.model, named.conversion.pitch_shift) == ("bob", 4)
    assert named.conversion.f0_method == rvc_pb2.F0_METHOD_PM
    overridden = job(parse_form("application/json", json.dumps(
        {"text": "Hi.", "voice": "bob", "pitch_shift": 0, "f0_method": "harvest"}).encode()), voices)
    assert overridden.conversion.pitch_shift == 0
    assert overridden.conversion.f0_method == rvc_pb2.F0_METHOD_HARVEST
    # Without a voice nothing is filled in: the RVC service applies the WebUI defaults.
    plain = conversion_params(parse_form("application/json", b"{}"))
    assert not plain.HasField("pitch_shift") and plain.f0_method == rvc_pb2.F0_METHOD_UNSPECIFIED


def test_the_answer_format_is_wav_unless_asked():
    assert response_format(parse_form("application/json", b"{}")) == "wav"
    assert response_format(parse_form("application/json", b'{"response_format": "FLAC"}')) == "flac"
    with pytest.raises(InvalidArgument, match="mp4"):
        response_format(parse_form("application/json", b'{"response_format": "mp4"}'))


async def test_text_beyond_the_gateway_limit_is_refused_before_any_synthesis():
    body = json.dumps({"text": "Word. " * 4_000, "reference_audio": base64.b64encode(wav()).decode()})
    form = parse_form("application/json", body.encode())
    # No stages: a request over the limit must not reach them.
    pipeline = Pipeline(tts=None, rvc=None, max_text_chars=20_000)
    with pytest.raises(
        InvalidArgument, match=r"text has 24000 characters; the limit is 20000 \(GATEWAY_MAX_TEXT_CHARS\)"
    ):
        await pipeline.synthesize(job(form, NO_VOICES))
    form.fields["text"] = "Word. " * 3_000
    assert job(form, NO_VOICES).text == form.fields["text"]


