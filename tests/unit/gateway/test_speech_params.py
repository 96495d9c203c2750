"""The pipeline's parameters: their enumerations match voice.v1's, a request's
fields lie over a profile's as proto3 merges them, and they travel to and from
the protos unchanged."""

import numpy as np
import pytest
from voice.v1 import rvc_pb2, tts_pb2

from services.common.audio import PcmAudio
from services.common.errors import InvalidArgument
from services.gateway import params_proto
from services.gateway.speech_params import (
    ENGINES,
    F0_METHODS,
    GENDERS,
    LEVELS,
    Control,
    Conversion,
    Engine,
    PiperChoice,
    Reference,
    Sampling,
    Speaker,
    overlay,
)


def test_the_enumerations_are_voice_v1s():
    assert {e.name: e.value for e in Engine} == {
        name.removeprefix("ENGINE_"): value for name, value in tts_pb2.Engine.items()}
    assert ENGINES == {"spark": tts_pb2.ENGINE_SPARK, "piper": tts_pb2.ENGINE_PIPER}
    assert GENDERS == {"female": tts_pb2.GENDER_FEMALE, "male": tts_pb2.GENDER_MALE}
    assert LEVELS == {name.removeprefix("LEVEL_").lower(): value
                      for name, value in tts_pb2.Level.items() if value}
    assert F0_METHODS == {name.removeprefix("F0_METHOD_").lower().replace("_", "-"): value
                          for name, value in rvc_pb2.F0Method.items() if value}


def test_a_set_field_wins_even_when_it_is_zero():
    profile = Conversion(model="alice", pitch_shift=12, f0_method=4, index_rate=0.5)
    request = Conversion(pitch_shift=0, protect=0.2)
    assert overlay(profile, request) == Conversion(
        model="alice", pitch_shift=0, f0_method=4, index_rate=0.5, protect=0.2)
    assert overlay(Sampling(seed=7, top_k=5), Sampling(top_k=0)) == Sampling(seed=7, top_k=0)
    # Fields without presence (the model, the f0 method) are set only when non-empty.
    assert overlay(profile, Conversion(model="", f0_method=0)) == profile
    assert overlay(PiperChoice("a", 1, 1.2), PiperChoice("b")) == PiperChoice("b", 1, 1.2)


def test_overlaying_the_protos_merges_the_same_way():
    profile = rvc_pb2.ConversionParams(model="alice", pitch_shift=12, index_rate=0.5)
    request = rvc_pb2.ConversionParams(pitch_shift=0, f0_method=rvc_pb2.F0_METHOD_PM)
    merged = rvc_pb2.ConversionParams()
    merged.CopyFrom(profile)
    merged.MergeFrom(request)
    ours = overlay(params_proto.conversion_from_proto(profile),
                   params_proto.conversion_from_proto(request))
    assert params_proto.conversion_to_proto(ours) == merged


@pytest.mark.parametrize("message", [
    tts_pb2.SamplingParams(),
    tts_pb2.SamplingParams(temperature=0.5, top_k=0, seed=2**64 - 1),
    tts_pb2.SamplingParams(top_p=1.0, max_tokens=9),
])
def test_sampling_round_trips(message):
    back = params_proto.sampling_to_proto(params_proto.sampling_from_proto(message))
    assert back == message and back.ListFields() == message.ListFields()


def test_conversion_and_piper_round_trip():
    conversion = rvc_pb2.ConversionParams(model="m", pitch_shift=0, f0_method=3, index_rate=0.0,
                                          filter_radius=7, resample_sr=48_000, protect=0.5)
    assert params_proto.conversion_to_proto(
        params_proto.conversion_from_proto(conversion)) == conversion
    assert params_proto.conversion_from_proto(conversion).rms_mix_rate is None
    piper = tts_pb2.PiperOptions(voice="v", speaker=0)
    assert params_proto.piper_to_proto(params_proto.piper_from_proto(piper)) == piper


def test_speakers_round_trip():
    audio = PcmAudio(np.linspace(-0.5, 0.5, 800, dtype=np.float32), 16_000)
    for speaker in (Speaker(), Speaker(speaker_id="s-1"), Speaker(control=Control(2, 1, 5)),
                    Speaker(reference=Reference(audio, "hello"))):
        back = params_proto.speaker_from_proto(params_proto.speaker_to_proto(speaker))
        assert back.source == speaker.source
        if speaker.reference is not None:
            assert back.reference.transcript == "hello"
            np.testing.assert_array_equal(back.reference.audio.samples, audio.samples)
        else:
            assert back == speaker


def test_an_empty_clip_and_a_number_out_of_its_fields_range_are_refused():
    empty = tts_pb2.SpeakerPrompt(reference=tts_pb2.ReferenceAudio(transcript="x"))
    with pytest.raises(InvalidArgument, match="speaker.reference.audio is empty"):
        params_proto.speaker_from_proto(empty)
    with pytest.raises(InvalidArgument, match="pitch_shift 1099511627776 is out of range"):
        params_proto.conversion_to_proto(Conversion(pitch_shift=2**40))
