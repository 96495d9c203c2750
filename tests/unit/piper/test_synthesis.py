"""piper_serving.synthesis: the piper model's work, over the real voice catalogue with
a fake voice loader (no ONNX run) and Triton's responses faked."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from piper_serving.synthesis import PiperSynthesis, Response
from piper_serving.voices import PiperVoices
from triton_serving.errors import ModelError
from triton_serving.values import Inputs

PACKAGED = "en_US-joe-medium"


class FakeVoice:
    """Speaks each sentence (split at '.') as a block of samples of its length; a
    sentence of '#' alone speaks nothing, as Piper does for what it cannot say."""

    def __init__(self, sample_rate: int = 22050, num_speakers: int = 1) -> None:
        self.config = SimpleNamespace(sample_rate=sample_rate, num_speakers=num_speakers)
        self.configs = []
        self.spoken: list[str] = []

    def synthesize(self, text, config):
        self.configs.append(config)
        for sentence in (s.strip() for s in text.split(".")):
            if not sentence:
                continue
            self.spoken.append(sentence)
            size = 0 if sentence == "#" else 10 * len(sentence)
            yield SimpleNamespace(audio_float_array=np.full(size, len(sentence) / 100, np.float64))


class Harness:
    def __init__(self, tmp_path, **voice) -> None:
        self.voices_dir = tmp_path
        for name in ("second",):
            (tmp_path / f"{name}.onnx").write_bytes(b"onnx")
            (tmp_path / f"{name}.onnx.json").write_text("{}")
        self.loaded: dict[str, FakeVoice] = {}
        self.voices = PiperVoices(tmp_path, loader=self.load)
        self.voice_settings = voice
        self.synthesis = PiperSynthesis(self.voices)
        self.sent: list[Response] = []
        self.cancel_after: int | None = None
        self.asked = 0

    def load(self, model, config):
        voice = FakeVoice(**self.voice_settings)
        self.loaded[model.name] = voice
        return voice

    def is_cancelled(self) -> bool:
        self.asked += 1
        return self.cancel_after is not None and self.asked > self.cancel_after

    def answer(self, **inputs) -> list[Response]:
        values = {k: np.array([v.encode()], np.object_) if isinstance(v, str) else v
                  for k, v in inputs.items()}
        self.synthesis.answer(Inputs(values.get), self.sent.append, self.is_cancelled)
        return self.sent


def test_one_response_per_sentence_then_an_empty_final_one(tmp_path):
    harness = Harness(tmp_path, sample_rate=16000)
    sent = harness.answer(text="  One. Three words here. Two words.  ")
    assert [r.final for r in sent] == [False, False, False, True]
    assert [len(r.audio) for r in sent] == [30, 160, 90, 0]
    assert all(r.audio.dtype == np.float32 for r in sent)
    assert {(r.sample_rate, r.voice) for r in sent} == {(16000, PACKAGED)}
    assert all(r.voices is None for r in sent)
    voice = harness.loaded[f"{PACKAGED}.onnx"]
    assert voice.spoken == ["One", "Three words here", "Two words"]


def test_sentences_with_nothing_to_speak_send_nothing(tmp_path):
    harness = Harness(tmp_path)
    sent = harness.answer(text="Hello. #. There.")
    assert [len(r.audio) for r in sent] == [50, 50, 0]


def test_a_text_with_nothing_to_speak_is_invalid_and_sends_nothing(tmp_path):
    harness = Harness(tmp_path)
    with pytest.raises(ModelError) as caught:
        harness.answer(text="#. #.")
    assert caught.value.status == "INVALID_ARGUMENT" and "nothing to speak" in str(caught.value)
    assert harness.sent == []


def test_the_voice_asked_for_speaks(tmp_path):
    harness = Harness(tmp_path)
    sent = harness.answer(text="Hi.", voice="second")
    assert {r.voice for r in sent} == {"second"}
    assert harness.loaded["second.onnx"].spoken == ["Hi"]


def test_the_settings_reach_the_voice(tmp_path):
    harness = Harness(tmp_path, num_speakers=4)
    harness.answer(text="Hi.", voice="second", speaker=np.array([3], np.int32),
                   length_scale=np.array([1.5], np.float32))
    config, = harness.loaded["second.onnx"].configs
    assert (config.speaker_id, config.length_scale) == (3, 1.5)


@pytest.mark.parametrize(("inputs", "status", "needle"), [
    ({}, "INVALID_ARGUMENT", "input text is required"),
    ({"text": " \n "}, "INVALID_ARGUMENT", "text is empty"),
    ({"text": "Hi.", "voice": "nobody"}, "NOT_FOUND", "unknown voice 'nobody'"),
    ({"text": "Hi.", "voice": "../second"}, "NOT_FOUND", "unknown voice"),
    ({"text": "Hi.", "speaker": np.array([1], np.int32)}, "INVALID_ARGUMENT", "out of range"),
    ({"text": "Hi.", "length_scale": np.array([50.0], np.float32)}, "INVALID_ARGUMENT",
     "length_scale"),
])
def test_bad_requests_fail_with_a_status_and_send_nothing(tmp_path, inputs, status, needle):
    harness = Harness(tmp_path)
    with pytest.raises(ModelError) as caught:
        harness.answer(**inputs)
    assert caught.value.status == status and needle in str(caught.value)
    assert harness.sent == []


def test_a_cancelled_client_stops_before_the_next_sentence(tmp_path):
    harness = Harness(tmp_path)
    harness.cancel_after = 2
    with pytest.raises(ModelError) as caught:
        harness.answer(text="One. Two. Three. Four.")
    assert caught.value.status == "CANCELLED"
    assert [len(r.audio) for r in harness.sent] == [30, 30]
    assert harness.loaded[f"{PACKAGED}.onnx"].spoken == ["One", "Two"]


def test_a_listing_names_the_voices_and_the_default_and_speaks_nothing(tmp_path):
    harness = Harness(tmp_path)
    sent = harness.answer(list_voices=np.array([True]), text="Not spoken.")
    assert sent == [Response(sent[0].audio, 0, PACKAGED, final=True,
                             voices=sorted([PACKAGED, "second"]))]
    assert sent[0].audio.size == 0 and sent[0].audio.dtype == np.float32
    assert harness.loaded == {}


@pytest.mark.parametrize("listing", [np.array([False]), np.zeros(0, np.bool_)])
def test_list_voices_false_or_empty_synthesises(tmp_path, listing):
    harness = Harness(tmp_path)
    sent = harness.answer(list_voices=listing, text="Hi.")
    assert [r.final for r in sent] == [False, True] and sent[0].voices is None
