"""Voice profiles: loading, validation, merging with requests, reloading."""

import json
import os

import numpy as np
import pytest
import soundfile

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.gateway.speech_params import (
    F0_METHODS,
    GENDERS,
    LEVELS,
    Control,
    Conversion,
    Engine,
    PiperChoice,
    Sampling,
    Speaker,
)
from services.gateway.voice_profiles import MAX_CLIP_BYTES, load_profile
from services.gateway.voices import VoiceBook

RATE = 16_000


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def write_clip(directory, name="narrator.wav", channels=1):
    t = np.arange(RATE) / RATE
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    samples = tone if channels == 1 else np.stack([tone] * channels, axis=1)
    soundfile.write(directory / name, samples, RATE)


def write_profile(directory, name, **fields):
    path = directory / f"{name}.json"
    path.write_text(json.dumps(fields))
    return path


def reference_profile(directory, name="narrator", **extra):
    write_clip(directory)
    fields = {"reference_audio": "narrator.wav", "reference_text": "What the clip says."}
    return write_profile(directory, name, **fields, **extra)


def control_profile(directory, name="robot", **extra):
    control = {"gender": "male", "pitch": "low", "speed": "very_high"}
    return write_profile(directory, name, control=control, **extra)


def request(speaker=None, sampling=None, conversion=None):
    return (
        speaker or Speaker(),
        sampling or Sampling(),
        conversion or Conversion(),
    )


def test_f0_method_names_are_the_webui_names():
    assert sorted(F0_METHODS) == ["crepe", "crepe-tiny", "dio", "harvest", "pm", "rmvpe"]


def test_a_reference_profile_loads_its_clip_as_mono_audio(tmp_path):
    write_clip(tmp_path, channels=2)
    write_profile(tmp_path, "narrator", reference_audio="narrator.wav",
                  reference_text="What the clip says.", description="Warm narrator",
                  rvc_model="alice-v2")
    profile = load_profile(tmp_path / "narrator.json")
    assert profile.name == "narrator"
    assert profile.description == "Warm narrator"
    assert profile.speaker.source == "reference"
    assert profile.speaker.reference.transcript == "What the clip says."
    audio = profile.speaker.reference.audio
    assert (audio.sample_rate, audio.frames, audio.channels) == (RATE, RATE, 1)
    assert np.abs(audio.samples).max() == pytest.approx(0.3, abs=1e-3)
    assert profile.conversion.model == "alice-v2"
    assert not profile.skip_rvc


def test_a_control_profile_with_every_parameter(tmp_path):
    rvc = {"pitch_shift": -3, "f0_method": "crepe-tiny", "index_rate": 0.5, "filter_radius": 7,
           "rms_mix_rate": 1, "protect": 0.5, "resample_sr": 48000}
    sampling = {"temperature": 0.8, "top_k": 0, "top_p": 1, "max_tokens": 2048,
                "seed": 2**64 - 1}
    control_profile(tmp_path, skip_rvc=True, rvc=rvc, sampling=sampling)
    profile = load_profile(tmp_path / "robot.json")
    assert profile.speaker.control == Control(
        gender=GENDERS["male"], pitch=LEVELS["low"], speed=LEVELS["very_high"]
    )
    assert profile.skip_rvc
    assert profile.conversion == Conversion(
        pitch_shift=-3, f0_method=F0_METHODS["crepe-tiny"], index_rate=0.5,
        filter_radius=7, rms_mix_rate=1.0, protect=0.5, resample_sr=48000,
    )
    assert profile.sampling == Sampling(temperature=0.8, top_k=0, top_p=1, max_tokens=2048,
                                        seed=2**64 - 1)


def test_control_levels_default_to_moderate_and_unset_parameters_stay_unset(tmp_path):
    write_profile(tmp_path, "plain", control={"gender": "female"})
    profile = load_profile(tmp_path / "plain.json")
    assert profile.speaker.control == Control(
        gender=GENDERS["female"], pitch=LEVELS["moderate"], speed=LEVELS["moderate"]
    )
    assert profile.sampling == Sampling()
    assert profile.conversion == Conversion()


def test_the_profile_fills_what_the_request_leaves_unset(tmp_path):
    reference_profile(tmp_path, rvc_model="alice-v2",
                      rvc={"pitch_shift": 12, "f0_method": "harvest", "protect": 0.2},
                      sampling={"seed": 7, "temperature": 0.5})
    book = VoiceBook(tmp_path)
    speaker, sampling, conversion, skip, *_ = book.resolve("narrator", *request(), skip_rvc=False)
    assert speaker.reference.transcript == "What the clip says."
    assert conversion == Conversion(
        model="alice-v2", pitch_shift=12, f0_method=F0_METHODS["harvest"], protect=0.2
    )
    assert (sampling.seed, sampling.temperature) == (7, 0.5)
    assert not skip


def test_whatever_the_request_sets_overrides_the_profile(tmp_path):
    reference_profile(tmp_path, rvc_model="alice-v2", skip_rvc=True,
                      rvc={"pitch_shift": 12, "f0_method": "harvest"}, sampling={"seed": 7})
    book = VoiceBook(tmp_path)
    own = Speaker(speaker_id="cached-1")
    speaker, sampling, conversion, skip, *_ = book.resolve(
        "narrator",
        *request(own, Sampling(seed=0, top_k=5),
                 Conversion(model="bob", pitch_shift=0, f0_method=F0_METHODS["pm"])),
        skip_rvc=False,
    )
    assert speaker == own
    assert sampling == Sampling(seed=0, top_k=5)
    assert conversion == Conversion(model="bob", pitch_shift=0, f0_method=F0_METHODS["pm"])
    assert skip  # the profile's skip_rvc holds even when the request says false


def test_resolving_leaves_the_stored_profile_as_it_was(tmp_path):
    control_profile(tmp_path, rvc_model="alice", rvc={"pitch_shift": 12}, sampling={"seed": 7})
    book = VoiceBook(tmp_path)
    stored = book.get("robot")
    before = (stored.speaker, stored.sampling, stored.conversion)
    first = book.resolve("robot", *request(None, Sampling(top_p=0.5), Conversion(pitch_shift=-4)),
                         skip_rvc=False)
    assert (first.sampling.top_p, first.sampling.seed) == (0.5, 7)
    assert (first.conversion.pitch_shift, first.conversion.model) == (-4, "alice")
    second = book.resolve("robot", *request(), skip_rvc=False)
    assert (second[1].seed, second[2].model, second[2].pitch_shift) == (7, "alice", 12)
    assert second[1].top_p is None
    assert (stored.speaker, stored.sampling, stored.conversion) == before


def test_without_a_name_the_default_applies_only_to_requests_without_a_speaker(tmp_path):
    control_profile(tmp_path, rvc_model="alice")
    book = VoiceBook(tmp_path, default="robot")
    speaker, _, conversion, *_ = book.resolve("", *request(), skip_rvc=False)
    assert speaker.source == "control" and conversion.model == "alice"
    own = request(Speaker(speaker_id="s"), None, Conversion())
    resolved = book.resolve("", *own, skip_rvc=False)
    assert all(a is b for a, b in zip(resolved, own, strict=False)) and resolved[3] is False


def test_without_a_name_or_a_default_the_request_is_returned_as_is(tmp_path):
    control_profile(tmp_path)
    book = VoiceBook(tmp_path)
    inputs = request()
    resolved = book.resolve("", *inputs, skip_rvc=True)
    assert all(a is b for a, b in zip(resolved, inputs, strict=False)) and resolved[3] is True
    with pytest.raises(InvalidArgument, match="no default voice"):
        book.get("")


def test_a_default_that_is_not_defined_is_a_configuration_error(tmp_path):
    control_profile(tmp_path)
    book = VoiceBook(tmp_path, default="ghost")
    assert [(v.name, v.is_default) for v in book.profiles()] == [("robot", False)]
    with pytest.raises(FailedPrecondition, match="default voice 'ghost' is not defined"):
        book.resolve("", *request(), skip_rvc=False)
    assert book.resolve("robot", *request(), skip_rvc=False)[0].control is not None


def test_profiles_lists_every_profile_sorted_and_marks_the_default(tmp_path):
    reference_profile(tmp_path, description="Warm", rvc_model="alice-v2")
    control_profile(tmp_path, skip_rvc=True)
    write_profile(tmp_path, "broken", control={"gender": "robot"})
    (tmp_path / "notes.txt").write_text("not a profile")
    voices = VoiceBook(tmp_path, default="robot").profiles()
    assert [v.name for v in voices] == ["broken", "narrator", "robot"]
    broken, narrator, robot = voices
    assert "broken.json: control.gender must be one of female, male" in broken.problem
    assert (narrator.speaker, narrator.rvc_model, narrator.description) == (
        "reference", "alice-v2", "Warm")
    assert (narrator.problem, narrator.is_default) == ("", False)
    assert (robot.speaker, robot.skip_rvc, robot.is_default) == ("control", True, True)


BAD_PROFILES = {
    "unknown top-level key": ({"control": {"gender": "male"}, "rvc_modle": "x"}, "rvc_modle"),
    "unknown nested key": ({"control": {"gender": "male"}, "rvc": {"pitch_shfit": 1}},
                           "rvc.pitch_shfit is not a known field"),
    "unknown control key": ({"control": {"gender": "male", "age": 3}}, "control.age"),
    "both speakers": ({"control": {"gender": "male"}, "reference_audio": "narrator.wav"},
                      "exactly one of reference_audio and control"),
    "no speaker": ({"rvc_model": "x"}, "exactly one of reference_audio and control"),
    "transcript without clip": ({"control": {"gender": "male"}, "reference_text": "hi"},
                                "reference_text goes with reference_audio"),
    "no gender": ({"control": {"pitch": "low"}}, "control.gender is required"),
    "unknown engine": ({"engine": "kokoro"}, 'engine must be one of spark, piper, got "kokoro"'),
    "piper options for spark": ({"control": {"gender": "male"}, "piper": {"voice": "v"}},
                                'piper options go with "engine": "piper"'),
    "spark without speaker": ({"engine": "spark"}, "exactly one of reference_audio and control"),
    "piper voice as a path": ({"engine": "piper", "piper": {"voice": "../v"}},
                              "piper.voice must be a Piper voice name"),
    "piper length scale": ({"engine": "piper", "piper": {"length_scale": 0}},
                           "piper.length_scale must be a number in 0.1..10"),
    "piper unknown key": ({"engine": "piper", "piper": {"noise": 1}}, "piper.noise is not a known"),
    "pitch shift too high": ({"control": {"gender": "male"}, "rvc": {"pitch_shift": 25}},
                             "rvc.pitch_shift must be an integer in -24..24, got 25"),
    "pitch shift not an integer": ({"control": {"gender": "male"}, "rvc": {"pitch_shift": 1.5}},
                                   "rvc.pitch_shift must be an integer"),
    "unknown f0 method": ({"control": {"gender": "male"}, "rvc": {"f0_method": "yin"}},
                          "rvc.f0_method must be one of rmvpe"),
    "protect too high": ({"control": {"gender": "male"}, "rvc": {"protect": 0.6}},
                         "rvc.protect must be a number in 0..0.5"),
    "index rate as string": ({"control": {"gender": "male"}, "rvc": {"index_rate": "0.5"}},
                             "rvc.index_rate must be a number"),
    "filter radius": ({"control": {"gender": "male"}, "rvc": {"filter_radius": 8}},
                      "rvc.filter_radius"),
    "resample rate": ({"control": {"gender": "male"}, "rvc": {"resample_sr": 4000}},
                      "rvc.resample_sr must be 0 or an integer in 8000..48000"),
    "zero temperature": ({"control": {"gender": "male"}, "sampling": {"temperature": 0}},
                         "sampling.temperature must be a number > 0"),
    "top_p zero": ({"control": {"gender": "male"}, "sampling": {"top_p": 0}},
                   "sampling.top_p must be a number in (0, 1]"),
    "negative top_k": ({"control": {"gender": "male"}, "sampling": {"top_k": -1}},
                       "sampling.top_k"),
    "zero max tokens": ({"control": {"gender": "male"}, "sampling": {"max_tokens": 0}},
                        "sampling.max_tokens"),
    "seed too large": ({"control": {"gender": "male"}, "sampling": {"seed": 2**64}},
                       "sampling.seed"),
    "boolean as seed": ({"control": {"gender": "male"}, "sampling": {"seed": True}},
                        "sampling.seed"),
    "skip_rvc as string": ({"control": {"gender": "male"}, "skip_rvc": "false"},
                           "skip_rvc must be true or false"),
    "rvc not an object": ({"control": {"gender": "male"}, "rvc": [1]}, "rvc must be an object"),
    "rvc_model not a string": ({"control": {"gender": "male"}, "rvc_model": 3},
                               "rvc_model must be a string"),
    "level unknown": ({"control": {"gender": "male", "speed": "fast"}}, "control.speed"),
    "path traversal": ({"reference_audio": "../x.wav"}, "must be the plain name of a file"),
    "sub directory": ({"reference_audio": "sub/x.wav"}, "must be the plain name of a file"),
    "backslash": ({"reference_audio": "sub\\x.wav"}, "must be the plain name of a file"),
    "hidden clip": ({"reference_audio": ".hidden.wav"}, "must be the plain name of a file"),
    "absolute path": ({"reference_audio": "/etc/passwd"}, "must be the plain name of a file"),
    "missing clip": ({"reference_audio": "absent.wav"}, "'absent.wav' does not exist"),
    "undecodable clip": ({"reference_audio": "noise.wav"}, "not a readable audio file"),
    "silent clip": ({"reference_audio": "empty.wav"}, "'empty.wav' has no samples"),
    "parent directory": ({"reference_audio": ".."}, "must be the plain name of a file"),
}


@pytest.mark.parametrize("fields,message", BAD_PROFILES.values(), ids=BAD_PROFILES.keys())
def test_a_bad_profile_is_listed_with_its_problem_and_refused(tmp_path, fields, message):
    (tmp_path / "noise.wav").write_bytes(b"RIFF this is not audio at all")
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, np.float32), RATE)
    (tmp_path / "sub").mkdir()
    write_clip(tmp_path / "sub", "x.wav")
    write_clip(tmp_path, "x.wav")
    write_profile(tmp_path, "bad", **fields)
    control_profile(tmp_path)
    book = VoiceBook(tmp_path)
    problems = {v.name: v.problem for v in book.profiles()}
    assert problems["robot"] == ""
    assert problems["bad"].startswith("bad.json: ") and message in problems["bad"]
    with pytest.raises(FailedPrecondition, match="voice 'bad' cannot be used") as caught:
        book.get("bad")
    assert message in caught.value.message
    with pytest.raises(InvalidArgument, match="bad.json"):
        load_profile(tmp_path / "bad.json")


def test_a_file_that_is_not_json_is_a_problem(tmp_path):
    (tmp_path / "mangled.json").write_text('{"control": {"gender": "male"')
    (tmp_path / "list.json").write_text('["control"]')
    problems = {v.name: v.problem for v in VoiceBook(tmp_path).profiles()}
    assert problems["mangled"].startswith("mangled.json: not valid JSON")
    assert problems["list"] == "list.json: must hold a JSON object"


def test_an_oversized_clip_is_refused_before_decoding(tmp_path):
    with open(tmp_path / "huge.wav", "wb") as file:
        file.truncate(MAX_CLIP_BYTES + 1)
    write_profile(tmp_path, "huge", reference_audio="huge.wav")
    with pytest.raises(InvalidArgument, match="larger than"):
        load_profile(tmp_path / "huge.json")


def test_a_malformed_file_name_is_a_problem_and_a_malformed_request_name_is_refused(tmp_path):
    write_profile(tmp_path, "bad name!", control={"gender": "male"})
    book = VoiceBook(tmp_path)
    [voice] = book.profiles()
    assert voice.name == "bad name!" and "the name must match" in voice.problem
    with pytest.raises(InvalidArgument, match="malformed"):
        book.get("bad name!")
    with pytest.raises(InvalidArgument, match="malformed"):
        book.resolve("../etc/passwd", *request(), skip_rvc=False)


def test_an_unknown_voice_lists_the_known_ones(tmp_path):
    control_profile(tmp_path, name="bob")
    control_profile(tmp_path, name="alice")
    book = VoiceBook(tmp_path)
    with pytest.raises(NotFound, match=r"^voice 'carol' is not defined; known voices: alice, bob$"):
        book.get("carol")
    with pytest.raises(NotFound, match="'Alice' is not defined"):
        book.get("Alice")


@pytest.mark.parametrize("directory", [None, "missing", "empty"])
def test_no_directory_or_an_empty_one_means_no_voices(tmp_path, directory):
    if directory == "empty":
        (tmp_path / "empty").mkdir()
    book = VoiceBook(None if directory is None else tmp_path / directory)
    assert book.profiles() == []
    with pytest.raises(NotFound, match=r"no voice profiles are defined \(GATEWAY_VOICES_DIR\)"):
        book.get("narrator")
    inputs = request()
    assert book.resolve("", *inputs, skip_rvc=False)[0] is inputs[0]


def test_hidden_entries_are_ignored(tmp_path):
    control_profile(tmp_path, name=".hidden")
    (tmp_path / "..data").mkdir()
    control_profile(tmp_path / "..data", name="inner")
    assert VoiceBook(tmp_path).profiles() == []


def test_changes_are_picked_up_at_most_once_per_interval(tmp_path):
    clock = Clock()
    control_profile(tmp_path, name="alice")
    book = VoiceBook(tmp_path, clock=clock)
    control_profile(tmp_path, name="bob")  # before the first use: seen
    assert [v.name for v in book.profiles()] == ["alice", "bob"]
    control_profile(tmp_path, name="carol")
    clock.now += 0.9
    assert [v.name for v in book.profiles()] == ["alice", "bob"]  # within the interval
    clock.now += 0.1
    assert [v.name for v in book.profiles()] == ["alice", "bob", "carol"]
    (tmp_path / "alice.json").unlink()
    clock.now += 0.5
    assert book.get("alice").name == "alice"
    clock.now += 0.5
    with pytest.raises(NotFound, match="known voices: bob, carol$"):
        book.get("alice")


def test_an_edited_profile_or_clip_is_reloaded(tmp_path):
    clock = Clock()
    path = control_profile(tmp_path, rvc_model="alice")
    book = VoiceBook(tmp_path, clock=clock)
    assert book.get("robot").conversion.model == "alice"
    control_profile(tmp_path, rvc_model="carol")  # same size: only the mtime tells
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    clock.now += 1.0
    assert book.get("robot").conversion.model == "carol"

    reference_profile(tmp_path)
    clock.now += 1.0
    assert book.get("narrator").speaker.reference is not None
    (tmp_path / "narrator.wav").write_bytes(b"garbage")
    clock.now += 1.0
    with pytest.raises(FailedPrecondition, match="not a readable audio file"):
        book.get("narrator")


def test_an_unchanged_directory_is_not_reloaded(tmp_path, monkeypatch):
    clock = Clock()
    control_profile(tmp_path)
    book = VoiceBook(tmp_path, clock=clock)
    book.profiles()
    loads = []

    def counting_load(path):
        loads.append(path)
        return load_profile(path)

    monkeypatch.setattr("services.gateway.voices.load_profile", counting_load)
    clock.now += 5
    book.profiles()
    assert loads == []
    control_profile(tmp_path, name="other")
    clock.now += 5
    book.profiles()
    assert sorted(path.name for path in loads) == ["other.json", "robot.json"]


def test_a_configmap_layout_of_symlinks_is_followed(tmp_path):
    clock = Clock()
    first = tmp_path / "..2024_01"
    first.mkdir()
    control_profile(first, rvc_model="one")
    (tmp_path / "..data").symlink_to(first.name)
    (tmp_path / "robot.json").symlink_to("..data/robot.json")
    book = VoiceBook(tmp_path, clock=clock)
    assert book.get("robot").conversion.model == "one"
    second = tmp_path / "..2024_02"
    second.mkdir()
    control_profile(second, rvc_model="two")
    (tmp_path / "..data_tmp").symlink_to(second.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    clock.now += 1.0
    assert book.get("robot").conversion.model == "two"


def test_a_piper_profile_needs_no_speaker_and_keeps_its_options(tmp_path):
    write_profile(tmp_path, "joe", engine="piper", rvc_model="alice-v2",
                  piper={"voice": "en_US-joe-medium", "length_scale": 1.2})
    book = VoiceBook(tmp_path)
    (voice,) = book.profiles()
    assert (voice.engine, voice.speaker, voice.problem) == (Engine.PIPER, "", "")
    resolved = book.resolve("joe", *request(), skip_rvc=False)
    assert resolved.engine == Engine.PIPER
    assert not resolved.speaker.source
    assert (resolved.piper.voice, resolved.piper.length_scale) == ("en_US-joe-medium",
                                                                  pytest.approx(1.2))
    assert resolved.conversion.model == "alice-v2"


def test_the_request_engine_and_piper_options_win_over_the_profile(tmp_path):
    write_profile(tmp_path, "joe", engine="piper", piper={"voice": "a", "length_scale": 1.2})
    reference_profile(tmp_path)
    book = VoiceBook(tmp_path)
    resolved = book.resolve("joe", *request(), skip_rvc=False,
                            piper=PiperChoice(voice="b"))
    assert (resolved.piper.voice, resolved.piper.length_scale) == ("b", pytest.approx(1.2))
    # A request for Piper takes no speaker from a cloning profile (Piper would ignore it) ...
    resolved = book.resolve("narrator", *request(), skip_rvc=False, engine=Engine.PIPER)
    assert resolved.engine == Engine.PIPER
    assert not resolved.speaker.source
    # ... and a request for Spark gets the profile's speaker, whatever its engine.
    resolved = book.resolve("narrator", *request(), skip_rvc=False, engine=Engine.SPARK)
    assert resolved.speaker.reference is not None


def test_a_profile_without_engine_leaves_it_to_the_tts_service(tmp_path):
    control_profile(tmp_path)
    resolved = VoiceBook(tmp_path).resolve("robot", *request(), skip_rvc=False)
    assert resolved.engine == Engine.UNSPECIFIED
