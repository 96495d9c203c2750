"""The voice library's RPCs on the gateway servicer, over real gRPC (the stack of
test_gateway_servicer): voices written to the folder as profiles, checked before
they appear, kept across a restart, replaced and removed without leftovers."""

import grpc
import numpy as np
import pytest
import soundfile
from voice.v1 import gateway_pb2, rvc_pb2, tts_pb2

from services.common.audio import PcmAudio
from services.common.audio_proto import audio_to_proto
from services.common.errors import FailedPrecondition, InvalidArgument
from services.gateway.speech_params import F0_METHODS, Reference, Speaker, VoiceSpec
from services.gateway.voice_library import VoiceLibrary
from services.gateway.voices import VoiceBook
from tests.unit.gateway import test_gateway_servicer
from tests.unit.gateway.test_gateway_servicer import write_profile

stack = test_gateway_servicer.stack  # the fixture, shared
RATE = 16_000


def clip(seconds=0.5, frequency=180.0) -> PcmAudio:
    t = np.arange(int(seconds * RATE)) / RATE
    return PcmAudio((0.25 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), RATE)


def cloned(name="ada", audio=None, **fields) -> gateway_pb2.VoiceSpec:
    return gateway_pb2.VoiceSpec(
        name=name, description="Ada, cloned",
        reference=tts_pb2.ReferenceAudio(audio=audio_to_proto(audio or clip()),
                                         transcript="What the clip says."),
        conversion=rvc_pb2.ConversionParams(model="alice", pitch_shift=3,
                                            f0_method=rvc_pb2.F0_METHOD_HARVEST, index_rate=0.5),
        sampling=tts_pb2.SamplingParams(seed=9),
        **fields,
    )


def folder_files(stack) -> list[str]:
    return sorted(p.name for p in stack["voices"].iterdir())


async def test_a_cloned_voice_is_kept_as_a_profile_and_speaks(stack):
    voice = await stack["stub"].CreateVoice(cloned())
    assert (voice.name, voice.speaker, voice.rvc_model, voice.problem) == (
        "ada", "reference", "alice", "")
    names = folder_files(stack)
    assert "ada.json" in names and len(names) == 2  # the profile and its clip
    fetched = await stack["stub"].GetVoice(gateway_pb2.GetVoiceRequest(name="ada"))
    assert fetched == voice
    listed = await stack["stub"].ListVoices(gateway_pb2.ListVoicesRequest())
    assert [v.name for v in listed.voices] == ["ada"]
    await stack["stub"].Synthesize(gateway_pb2.SynthesizeRequest(
        text="Hello.", voice="ada", skip_rvc=True))
    seen = stack["tts"].seen[-1]
    assert (seen["speaker"], seen["seed"]) == ("reference", 9)


async def test_a_restart_finds_the_voice_with_the_same_clip_and_parameters(stack):
    given = clip(frequency=211.0)
    await stack["stub"].CreateVoice(cloned(audio=given))
    profile = VoiceBook(stack["voices"]).get("ada")  # a new process reading the folder
    np.testing.assert_array_equal(profile.speaker.reference.audio.samples, given.samples)
    assert profile.speaker.reference.transcript == "What the clip says."
    assert (profile.conversion.pitch_shift, profile.conversion.f0_method) == (
        3, F0_METHODS["harvest"])
    assert profile.conversion.index_rate == 0.5 and profile.sampling.seed == 9


@pytest.mark.parametrize(("spec", "message"), [
    (cloned(name="../etc"), "voice name '../etc' is malformed"),
    (cloned(name=""), "voice name '' is malformed"),
    (cloned(control=tts_pb2.VoiceControl(gender=tts_pb2.GENDER_MALE)),
     "at most one of reference and control"),
    (gateway_pb2.VoiceSpec(name="x", control=tts_pb2.VoiceControl(gender=tts_pb2.GENDER_MALE),
                           conversion=rvc_pb2.ConversionParams(pitch_shift=99)),
     "rvc.pitch_shift must be an integer in -24..24"),
    (gateway_pb2.VoiceSpec(name="x"), "give exactly one of reference_audio and control"),
    (gateway_pb2.VoiceSpec(name="x", control=tts_pb2.VoiceControl(gender=tts_pb2.GENDER_MALE),
                           piper=tts_pb2.PiperOptions(voice="v")),
     'piper options go with "engine": "piper"'),
])
async def test_a_refused_voice_leaves_nothing_behind(stack, spec, message):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack["stub"].CreateVoice(spec)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()
    assert folder_files(stack) == []


async def test_a_taken_name_is_refused_and_the_voice_kept(stack):
    write_profile(stack, "ada", control={"gender": "female"})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack["stub"].CreateVoice(cloned())
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert folder_files(stack) == ["ada.json"]


async def test_an_update_without_a_speaker_keeps_the_clip(stack):
    await stack["stub"].CreateVoice(cloned())
    before = folder_files(stack)
    voice = await stack["stub"].UpdateVoice(gateway_pb2.VoiceSpec(
        name="ada", description="Ada, lower",
        conversion=rvc_pb2.ConversionParams(model="alice", pitch_shift=-5)))
    assert (voice.speaker, voice.description) == ("reference", "Ada, lower")
    assert folder_files(stack) == before
    profile = VoiceBook(stack["voices"]).get("ada")
    assert profile.conversion.pitch_shift == -5 and profile.conversion.f0_method == 0
    assert profile.speaker.reference.transcript == "What the clip says."


async def test_an_update_with_a_new_clip_drops_the_old_one(stack):
    await stack["stub"].CreateVoice(cloned())
    (old_clip,) = [n for n in folder_files(stack) if n.endswith(".wav")]
    await stack["stub"].UpdateVoice(cloned(audio=clip(frequency=300.0)))
    (new_clip,) = [n for n in folder_files(stack) if n.endswith(".wav")]
    assert new_clip != old_clip
    samples, _ = soundfile.read(stack["voices"] / new_clip, dtype="float32")
    np.testing.assert_array_equal(samples, clip(frequency=300.0).samples)


async def test_an_update_or_delete_of_an_unknown_voice_is_not_found(stack):
    for call in (stack["stub"].UpdateVoice(cloned(name="ghost")),
                 stack["stub"].DeleteVoice(gateway_pb2.DeleteVoiceRequest(name="ghost")),
                 stack["stub"].GetVoice(gateway_pb2.GetVoiceRequest(name="ghost"))):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert folder_files(stack) == []


async def test_delete_removes_the_profile_and_its_clip_but_not_a_shared_one(stack):
    await stack["stub"].CreateVoice(cloned())
    await stack["stub"].DeleteVoice(gateway_pb2.DeleteVoiceRequest(name="ada"))
    assert folder_files(stack) == []
    # An operator's clip that two profiles share stays while one still names it.
    soundfile.write(stack["voices"] / "shared.wav", clip().samples, RATE)
    for name in ("one", "two"):
        write_profile(stack, name, reference_audio="shared.wav")
    await stack["stub"].DeleteVoice(gateway_pb2.DeleteVoiceRequest(name="one"))
    assert folder_files(stack) == ["shared.wav", "two.json"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack["stub"].Synthesize(gateway_pb2.SynthesizeRequest(text="Hi.", voice="one"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_without_a_voices_folder_nothing_can_be_made(tmp_path):
    for book in (VoiceBook(None), VoiceBook(tmp_path / "missing")):
        with pytest.raises(FailedPrecondition, match="no voices folder"):
            VoiceLibrary(book).create(VoiceSpec(name="ada"))


def test_a_clip_over_the_reference_limit_is_refused(tmp_path):
    library = VoiceLibrary(VoiceBook(tmp_path), max_reference_seconds=1.0)
    long = VoiceSpec(name="ada", speaker=Speaker(reference=Reference(clip(seconds=1.5))))
    with pytest.raises(InvalidArgument, match=r"1.5 s long; the limit is 1 s"):
        library.create(long)
    assert list(tmp_path.iterdir()) == []
