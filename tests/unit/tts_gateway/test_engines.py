"""Which engine speaks a request, what it ignores, and what Piper is sent."""

import numpy as np
import pytest

from services.common.audio import PcmAudio
from services.common.errors import InvalidArgument
from services.tts_gateway.request import (
    CachedSpeaker,
    ControlledSpeaker,
    Engine,
    Gender,
    PiperChoice,
    ReferenceSpeaker,
    Sampling,
    SpeechRequest,
)
from services.tts_gateway.settings import TtsSettings
from services.tts_gateway.synthesis import piper_inputs

CLIP = ReferenceSpeaker(PcmAudio(np.zeros(16_000, np.float32), 16_000))


@pytest.mark.parametrize("default", list(Engine))
def test_a_request_naming_no_engine_nor_speaker_gets_the_default(default):
    assert SpeechRequest("Hi.").plan(default) == (default, ())


@pytest.mark.parametrize("default", list(Engine))
def test_a_request_with_a_speaker_but_no_engine_goes_to_spark(default):
    assert SpeechRequest("Hi.", ControlledSpeaker(Gender.MALE)).plan(default) == (Engine.SPARK, ())


def test_piper_chosen_says_it_ignores_a_description():
    _, notes = SpeechRequest("Hi.", ControlledSpeaker(Gender.MALE), engine=Engine.PIPER).plan(
        Engine.SPARK)
    assert notes == ("piper ignores the speaker: a voice description (control) was given, "
                     "but Piper speaks in its own trained voices (see piper.voice)",)


def test_a_named_engine_wins_over_the_default():
    request = SpeechRequest("Hi.", engine=Engine.PIPER)
    assert request.plan(Engine.SPARK) == (Engine.PIPER, ())


@pytest.mark.parametrize("speaker, what", [
    (CLIP, "a reference clip"),
    (CachedSpeaker("spk-1"), "a speaker_id"),
])
def test_piper_says_it_ignores_the_speaker(speaker, what):
    _, notes = SpeechRequest("Hi.", speaker, engine=Engine.PIPER).plan(Engine.SPARK)
    assert len(notes) == 1 and notes[0].startswith(f"piper ignores the speaker: {what} was given")


def test_piper_says_it_ignores_sampling_and_spark_the_piper_options():
    _, notes = SpeechRequest("Hi.", sampling=Sampling(seed=3), engine=Engine.PIPER).plan(Engine.SPARK)
    assert notes == ("piper ignores sampling: its output depends on the text and voice only",)
    _, notes = SpeechRequest("Hi.", CLIP, piper=PiperChoice(voice="v")).plan(Engine.SPARK)
    assert notes == ("spark ignores the piper options",)


def test_only_spark_needs_a_speaker():
    settings = TtsSettings()
    request = SpeechRequest("Hello there.")
    request.check(settings.max_text_chars, settings.max_reference_seconds, Engine.PIPER)
    with pytest.raises(InvalidArgument, match="speaker is required by the spark engine"):
        request.check(settings.max_text_chars, settings.max_reference_seconds, Engine.SPARK)


def test_piper_still_refuses_bad_text():
    with pytest.raises(InvalidArgument, match="reserved token"):
        SpeechRequest("a <|x|> b", engine=Engine.PIPER).check(100, 30.0, Engine.PIPER)


def test_piper_inputs_carry_only_what_was_chosen():
    assert piper_inputs(SpeechRequest("Hi.", engine=Engine.PIPER)).keys() == {"text"}
    inputs = piper_inputs(SpeechRequest(
        "Hi.", CLIP, engine=Engine.PIPER,
        piper=PiperChoice(voice="en_US-joe-medium", speaker=0, length_scale=1.5)))
    assert inputs["text"].tolist() == [b"Hi."]
    assert inputs["voice"].tolist() == [b"en_US-joe-medium"]
    assert inputs["speaker"].dtype == np.int32 and inputs["speaker"].tolist() == [0]
    assert inputs["length_scale"].dtype == np.float32 and inputs["length_scale"].tolist() == [1.5]
    assert "reference_wav" not in inputs  # the clip never reaches Piper


@pytest.mark.parametrize("choice, fragment", [
    ({"voice": "a/b"}, "malformed"),
    ({"voice": "x" * 129}, "malformed"),
    ({"length_scale": float("nan")}, "outside 0.1..10"),
    ({"length_scale": 11.0}, "outside 0.1..10"),
    ({"speaker": -1}, "outside 0..9999"),
])
def test_bad_piper_choices_are_refused(choice, fragment):
    with pytest.raises(InvalidArgument, match=fragment):
        PiperChoice(**choice)


def test_the_default_engine_setting_is_checked():
    from services.common.settings import SettingsError

    with pytest.raises(SettingsError, match="TTS_DEFAULT_ENGINE='kokoro'"):
        TtsSettings(default_engine="kokoro").validate()
