"""piper_serving.voices: which voices are served, how names resolve, loading once."""

import math
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from piper_serving.voices import PiperVoices, UnknownVoice, synthesis_config

PACKAGED = "en_US-joe-medium"


class FakeLoader:
    """Counts loads; each load waits for ``release`` so that callers can pile up."""

    def __init__(self, num_speakers: int = 1) -> None:
        self.calls: list[str] = []
        self.num_speakers = num_speakers
        self.release = threading.Event()
        self.release.set()
        self._lock = threading.Lock()

    def __call__(self, model, config):
        with self._lock:
            self.calls.append(model.name)
        self.release.wait(timeout=5)
        return SimpleNamespace(
            model=model, config=SimpleNamespace(num_speakers=self.num_speakers, sample_rate=22050)
        )


def add_voice(folder, name, json=True):
    (folder / f"{name}.onnx").write_bytes(b"onnx")
    if json:
        (folder / f"{name}.onnx.json").write_text("{}")


def test_the_packaged_voice_is_served_without_a_directory():
    for folder in (None, "", "/no/such/folder"):
        voices = PiperVoices(folder, loader=FakeLoader())
        assert voices.names() == [PACKAGED]
        assert voices.default_name() == PACKAGED


def test_directory_voices_join_the_packaged_one_and_appear_without_a_restart(tmp_path):
    add_voice(tmp_path, "en_GB-alba-medium")
    voices = PiperVoices(tmp_path, loader=FakeLoader())
    assert voices.names() == ["en_GB-alba-medium", PACKAGED]
    add_voice(tmp_path, "de_DE-thorsten-low")
    assert voices.names() == ["de_DE-thorsten-low", "en_GB-alba-medium", PACKAGED]


def test_only_onnx_files_with_their_json_and_a_plain_name_count(tmp_path):
    add_voice(tmp_path, "good")
    add_voice(tmp_path, "no-json", json=False)
    add_voice(tmp_path, ".hidden")
    add_voice(tmp_path, "-dash-first")
    add_voice(tmp_path, "two..dots")
    add_voice(tmp_path, "with space")
    add_voice(tmp_path, "x" * 129)
    (tmp_path / "folder.onnx").mkdir()
    (tmp_path / "folder.onnx.json").write_text("{}")
    (tmp_path / "sub").mkdir()
    add_voice(tmp_path / "sub", "nested")
    (tmp_path / "readme.txt").write_text("not a voice")
    assert PiperVoices(tmp_path, loader=FakeLoader()).names() == [PACKAGED, "good"]


def test_a_directory_voice_named_like_the_packaged_one_takes_its_place(tmp_path):
    add_voice(tmp_path, PACKAGED)
    loader = FakeLoader()
    voice = PiperVoices(tmp_path, loader=loader).get(PACKAGED)
    assert voice.model == tmp_path / f"{PACKAGED}.onnx"


def test_the_default_is_the_given_voice_or_else_the_packaged_one(tmp_path):
    add_voice(tmp_path, "mine")
    loader = FakeLoader()
    voices = PiperVoices(tmp_path, default="mine", loader=loader)
    assert voices.default_name() == "mine"
    assert voices.resolve("") == "mine"
    assert voices.get("").model == tmp_path / "mine.onnx"
    assert PiperVoices(tmp_path, loader=loader).resolve("") == PACKAGED


@pytest.mark.parametrize("default", ["absent", "../mine", "mine.onnx"])
def test_a_default_that_is_not_available_fails_at_construction(tmp_path, default):
    add_voice(tmp_path, "mine")
    with pytest.raises(ValueError, match="default voice .* is not available; available: .*mine"):
        PiperVoices(tmp_path, default=default, loader=FakeLoader())


@pytest.mark.parametrize("name", [
    "nobody", "../en_US-joe-medium", "/etc/passwd", "sub/nested", "mine.onnx", "..",
    ".hidden", "mine/", "mine\x00", "x" * 500,
])
def test_unknown_and_path_like_names_raise_with_the_voice_list(tmp_path, name):
    add_voice(tmp_path, "mine")
    add_voice(tmp_path, ".hidden")
    (tmp_path / "sub").mkdir()
    add_voice(tmp_path / "sub", "nested")
    loader = FakeLoader()
    voices = PiperVoices(tmp_path, loader=loader)
    for lookup in (voices.resolve, voices.get):
        with pytest.raises(UnknownVoice) as raised:
            lookup(name)
        assert isinstance(raised.value, LookupError)
        assert f"available: {PACKAGED}, mine" in str(raised.value)
        assert len(str(raised.value)) < 200
    assert loader.calls == []


def test_a_long_voice_list_is_cut_short_in_the_message(tmp_path):
    for i in range(100):
        add_voice(tmp_path, f"voice{i:03d}")
    with pytest.raises(UnknownVoice, match=r"voice030, \.\.\. \(69 more\)$"):
        PiperVoices(tmp_path, loader=FakeLoader()).get("nobody")


def test_a_voice_is_loaded_on_first_use_and_then_shared(tmp_path):
    add_voice(tmp_path, "mine")
    loader = FakeLoader()
    voices = PiperVoices(tmp_path, loader=loader)
    assert loader.calls == []
    first = voices.get("mine")
    assert voices.get("mine") is first
    assert voices.get("") is voices.get(PACKAGED)
    assert loader.calls == ["mine.onnx", f"{PACKAGED}.onnx"]


def test_two_threads_asking_for_one_voice_load_it_once(tmp_path):
    loader = FakeLoader()
    loader.release.clear()
    voices = PiperVoices(tmp_path, loader=loader)
    got = []
    threads = [threading.Thread(target=lambda: got.append(voices.get(""))) for _ in range(2)]
    for thread in threads:
        thread.start()
    while not loader.calls:  # the first thread is inside the loader
        threading.Event().wait(0.001)
    threading.Event().wait(0.05)  # and the second one has had time to pile up behind it
    loader.release.set()
    for thread in threads:
        thread.join(timeout=5)
    assert loader.calls == [f"{PACKAGED}.onnx"]
    assert len(got) == 2 and got[0] is got[1]


def test_loading_one_voice_does_not_hold_up_another(tmp_path):
    add_voice(tmp_path, "slow")
    loader = FakeLoader()
    voices = PiperVoices(tmp_path, loader=loader)
    packaged = voices.get("")
    loader.release.clear()
    slow = threading.Thread(target=voices.get, args=("slow",))
    slow.start()
    while not loader.calls[1:]:
        threading.Event().wait(0.001)
    assert voices.get("") is packaged  # served while "slow" is still loading
    loader.release.set()
    slow.join(timeout=5)


def test_synthesis_config_takes_valid_settings():
    config = synthesis_config(None, None, num_speakers=1)
    assert config.speaker_id is None and config.length_scale is None
    assert synthesis_config(0, 0.1, num_speakers=1).speaker_id is None
    assert synthesis_config(3, 10.0, num_speakers=4).speaker_id == 3
    assert synthesis_config(None, 1.5, num_speakers=4).length_scale == 1.5


@pytest.mark.parametrize(("speaker", "speakers", "message"), [
    (1, 1, "speaker 1 is out of range: this voice has only speaker 0"),
    (-1, 1, "speaker -1 is out of range"),
    (4, 4, r"speaker 4 is out of range: this voice has speakers 0\.\.3"),
    (-1, 4, "speaker -1 is out of range"),
    (1.5, 4, "speaker must be an integer"),
])
def test_a_speaker_the_voice_lacks_is_refused(speaker, speakers, message):
    with pytest.raises(ValueError, match=message):
        synthesis_config(speaker, None, num_speakers=speakers)


@pytest.mark.parametrize("length_scale", [math.nan, math.inf, -1.0, 0.0, 0.09, 10.5, 1e30])
def test_a_length_scale_outside_its_range_is_refused(length_scale):
    with pytest.raises(ValueError, match=r"length_scale must be a number in \[0.1, 10.0\]"):
        synthesis_config(None, length_scale, num_speakers=1)


def test_the_packaged_voice_speaks_one_chunk_per_sentence():
    voices = PiperVoices(None)
    voice = voices.get("")
    assert voice.config.num_speakers == 1
    chunks = list(voice.synthesize("Hello there. How are you?", synthesis_config(None, None, 1)))
    assert len(chunks) == 2
    for chunk in chunks:
        assert chunk.sample_rate == voice.config.sample_rate == 22050
        audio = chunk.audio_float_array
        assert audio.dtype == np.float32
        assert audio.size > 0.3 * 22050  # a short sentence, yet clearly longer than a blip
        assert float(np.sqrt(np.mean(audio**2))) > 0.02
