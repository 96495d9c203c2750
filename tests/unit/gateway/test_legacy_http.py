"""The old server's form contract: parsing bodies, mapping fields, writing WAV."""

import base64
import io
import json

import numpy as np
import pytest
import soundfile
from urllib3 import encode_multipart_formdata

from services.common.errors import InvalidArgument, NotFound
from services.gateway.legacy_http import (
    KNOWN_FIELDS,
    OLD_DEFAULTS,
    OLD_FIELDS,
    conversion_params,
    job,
    parse_form,
    response_format,
    rvc_params,
)
from services.gateway.pipeline import Pipeline
from services.gateway.speech_params import F0_METHODS, Engine
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
    assert (params.pitch_shift, params.f0_method) == (3, F0_METHODS["harvest"])
    assert params.index_rate is None  # absent: the WebUI default applies
    assert request.sampling.seed is None
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
    assert (spoken.engine, spoken.conversion.model) == (Engine.PIPER, "bob")
    assert not spoken.speaker.source


def test_absent_fields_stay_unset_so_a_profile_can_fill_them(tmp_path):
    (tmp_path / "bob.json").write_text(json.dumps(
        {"control": {"gender": "male"}, "rvc_model": "bob",
         "rvc": {"pitch_shift": 4, "f0_method": "pm"}}))
    voices = VoiceBook(tmp_path)
    named = job(parse_form("application/json", b'{"text": "Hi.", "voice": "bob"}'), voices)
    assert named.speaker.source == "control"
    assert (named.conversion.model, named.conversion.pitch_shift) == ("bob", 4)
    assert named.conversion.f0_method == F0_METHODS["pm"]
    overridden = job(parse_form("application/json", json.dumps(
        {"text": "Hi.", "voice": "bob", "pitch_shift": 0, "f0_method": "harvest"}).encode()), voices)
    assert overridden.conversion.pitch_shift == 0
    assert overridden.conversion.f0_method == F0_METHODS["harvest"]
    # The form's own fields stay unset where absent, so that a profile can fill them.
    plain = conversion_params(parse_form("application/json", b"{}"))
    assert plain.pitch_shift is None and plain.f0_method == 0


def test_request_then_profile_then_the_old_servers_defaults(tmp_path):
    (tmp_path / "bob.json").write_text(json.dumps(
        {"control": {"gender": "male"}, "rvc": {"rms_mix_rate": 0.5, "f0_method": "pm"}}))
    voices = VoiceBook(tmp_path)
    clip = base64.b64encode(wav()).decode()
    # Neither request nor profile: the old server's defaults (rms_mix_rate 0.0, not the WebUI's 0.25).
    plain = job(parse_form("application/json", json.dumps(
        {"text": "Hi.", "reference_audio": clip}).encode()), voices).conversion
    assert plain == OLD_DEFAULTS and plain.rms_mix_rate is not None
    assert (plain.f0_method, plain.index_rate, plain.filter_radius) == (F0_METHODS["rmvpe"], 0.75, 3)
    named = job(parse_form("application/json", json.dumps(
        {"text": "Hi.", "voice": "bob", "protect": 0.1}).encode()), voices).conversion
    assert named.rms_mix_rate == 0.5 and named.f0_method == F0_METHODS["pm"]  # the profile's
    assert named.protect == pytest.approx(0.1)  # the request's
    assert named.index_rate == 0.75  # the old default
    request = job(parse_form("application/json", json.dumps(
        {"text": "Hi.", "voice": "bob", "rms_mix_rate": 0}).encode()), voices).conversion
    assert request.rms_mix_rate == 0.0  # the request's zero wins over the profile


def test_rvc_without_a_model_converts_with_the_default_voices(tmp_path):
    (tmp_path / "demo.json").write_text(json.dumps(
        {"engine": "piper", "rvc_model": "bob", "rvc": {"pitch_shift": 2}}))
    (tmp_path / "other.json").write_text(json.dumps({"engine": "piper", "rvc_model": "carol"}))
    form = parse_form("application/json", b"{}")
    params = rvc_params(form, VoiceBook(tmp_path, "demo"))
    assert (params.model, params.pitch_shift, params.rms_mix_rate) == ("bob", 2, 0.0)
    named = rvc_params(parse_form("application/json", b'{"voice": "other"}'), VoiceBook(tmp_path, "demo"))
    assert named.model == "carol"
    chosen = rvc_params(parse_form("application/json", b'{"model": "dave"}'), VoiceBook(tmp_path, "demo"))
    assert (chosen.model, chosen.pitch_shift) == ("dave", 2)
    # No default profile, or one that cannot be used: the RVC service's default (RVC_MODEL).
    assert rvc_params(form, VoiceBook(tmp_path)).model == ""
    assert rvc_params(form, VoiceBook(tmp_path, "ghost")).model == ""
    with pytest.raises(NotFound, match="voice 'ghost' is not defined"):
        rvc_params(parse_form("application/json", b'{"voice": "ghost"}'), VoiceBook(tmp_path))


def test_a_clip_without_a_voice_converts_with_the_default_voices(tmp_path):
    # The old server converted every request's speech with its loaded voice; the clip
    # only gives the speaker.
    (tmp_path / "demo.json").write_text(json.dumps(
        {"engine": "piper", "rvc_model": "bob", "rvc": {"pitch_shift": 2}}))
    (tmp_path / "plain.json").write_text(json.dumps({"engine": "piper", "skip_rvc": True}))
    clip = base64.b64encode(wav()).decode()

    def conversion(voices, **fields):
        body = json.dumps({"text": "Hi.", "reference_audio": clip, **fields}).encode()
        spoken = job(parse_form("application/json", body), voices)
        assert spoken.speaker.source == "reference"  # the clip still speaks
        return spoken.conversion

    params = conversion(VoiceBook(tmp_path, "demo"))
    assert (params.model, params.pitch_shift, params.rms_mix_rate) == ("bob", 2, 0.0)
    assert conversion(VoiceBook(tmp_path, "demo"), model="dave").model == "dave"
    assert conversion(VoiceBook(tmp_path, "demo"), pitch_shift=-3).pitch_shift == -3
    # A default that speaks unconverted lends no voice; without a default, RVC_MODEL decides.
    assert conversion(VoiceBook(tmp_path, "plain")).model == ""
    assert conversion(VoiceBook(tmp_path)).model == ""


@pytest.mark.parametrize(
    "content_type, body, fragment",
    [
        ("application/json", b'{"text": "Hi.", "skip_rcv": true}',
         "unknown field 'skip_rcv' \\(did you mean 'skip_rvc'\\?\\)"),
        ("application/x-www-form-urlencoded", b"text=Hi.&pitch=3", "unknown field 'pitch'"),
        (*reversed(encode_multipart_formdata({"text": "Hi.", "referense_audio": ("r.wav", b"x")})),
         "unknown field 'referense_audio' \\(did you mean 'reference_audio'\\?\\)"),
    ],
)
def test_an_unknown_field_is_refused_by_name(content_type, body, fragment):
    with pytest.raises(InvalidArgument, match=fragment):
        parse_form(content_type, body)


def test_every_field_the_old_clients_send_is_accepted():
    # The old server's notebook and README, as they call each route (requests sends bools as text).
    synthesize = {"text": "Hi.", "reference_text": "", "pitch_shift": 0, "f0_method": "rmvpe",
                  "index_rate": 1.0, "filter_radius": 3, "rms_mix_rate": 0.0, "protect": 0.33,
                  "skip_rvc": False}
    rvc = {k: synthesize[k] for k in ("pitch_shift", "f0_method", "index_rate", "filter_radius",
                                      "rms_mix_rate", "protect")}
    for fields, files in ((synthesize, {"reference_audio": ("reference.wav", wav(), "audio/wav")}),
                          ({"text": "Hi.", "reference_text": ""},
                           {"reference_audio": ("reference.wav", wav(), "audio/wav")}),
                          (rvc, {"audio": ("input.wav", wav(), "audio/wav")})):
        body, content_type = encode_multipart_formdata(
            {**{k: str(v) for k, v in fields.items()}, **files})
        form = parse_form(content_type, body)
        assert set(form.fields) | set(form.files) == set(fields) | set(files)
    assert KNOWN_FIELDS >= OLD_FIELDS | {"voice", "seed", "sample_rate", "response_format", "model",
                                         "resample_sr"}


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




@pytest.mark.parametrize("seed", [0, 2**63, 2**64 - 1])
def test_every_uint64_seed_is_taken_whole(seed):
    form = parse_form("application/json", json.dumps(
        {"seed": str(seed), "reference_audio": base64.b64encode(wav()).decode()}).encode())
    assert job(form, NO_VOICES).sampling.seed == seed


@pytest.mark.parametrize("seed", [-1, 2**64, 2**70])
def test_a_seed_outside_uint64_is_refused_in_the_one_wording(seed):
    form = parse_form("application/json", json.dumps(
        {"seed": str(seed), "reference_audio": base64.b64encode(wav()).decode()}).encode())
    with pytest.raises(InvalidArgument) as caught:
        job(form, NO_VOICES)
    assert caught.value.message == f"seed {seed} is outside 0..2^64-1"


def empty_file_bodies(name: str) -> dict[str, tuple[str, bytes]]:
    """``name`` sent as a file of 0 bytes, as each body kind carries it."""
    multipart = encode_multipart_formdata({"text": "Hi.", name: ("a.wav", b"", "audio/wav")})
    blank = encode_multipart_formdata({"text": "Hi.", name: ("", b"", "application/octet-stream")})
    return {
        "multipart": (multipart[1], multipart[0]),
        # A browser form's file input left blank: filename="", no bytes.
        "multipart-blank-input": (blank[1], blank[0]),
        "json": ("application/json", json.dumps({"text": "Hi.", name: ""}).encode()),
    }


@pytest.mark.parametrize("kind", ["multipart", "multipart-blank-input", "json"])
def test_an_empty_reference_audio_is_refused_not_ignored(tmp_path, kind):
    # Even where a default profile would speak without a clip.
    (tmp_path / "demo.json").write_text(json.dumps({"engine": "piper"}))
    content_type, body = empty_file_bodies("reference_audio")[kind]
    form = parse_form(content_type, body)
    for voices in (NO_VOICES, VoiceBook(tmp_path, "demo")):
        with pytest.raises(InvalidArgument) as caught:
            job(form, voices)
        assert caught.value.message == "the file reference_audio is empty (0 bytes)"


@pytest.mark.parametrize("kind", ["multipart", "multipart-blank-input", "json"])
def test_an_empty_audio_file_is_refused_as_empty(kind):
    content_type, body = empty_file_bodies("audio")[kind]
    with pytest.raises(InvalidArgument) as caught:
        parse_form(content_type, body).audio("audio")
    assert caught.value.message == "the file audio is empty (0 bytes)"


def test_a_null_file_in_json_is_no_file():
    form = parse_form("application/json", b'{"text": "Hi.", "reference_audio": null}')
    assert form.audio("reference_audio", required=False) is None


@pytest.mark.parametrize(("value", "kind"), [('["Hi."]', "array"), ('{"a": 1}', "object")])
def test_a_json_array_or_object_is_no_form_value(value, kind):
    # It once became Python's text of it: {"text": ["Hi."]} spoke "['Hi.']".
    with pytest.raises(InvalidArgument, match=f"text must be a string, a number or a boolean, "
                                              f"not a JSON {kind}"):
        parse_form("application/json", b'{"text": ' + value.encode() + b'}')
