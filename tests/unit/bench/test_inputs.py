"""The bench's versioned inputs: v1's generated clips, v2's real speech."""

import json

import numpy as np
import pytest

from bench.scenarios import TEXTS, load_inputs


def test_the_runner_uses_v2_with_real_speech_clips():
    inputs = load_inputs()
    assert TEXTS.name == "v2.json" and inputs.version == "bench-texts-v2"
    assert inputs.voice_profile == "demo-spark"
    for clip in (inputs.reference, inputs.rvc_clip):
        assert clip.sample_rate == 16_000
        assert 1.5 < clip.duration < 6.0
        assert np.sqrt(np.mean(clip.samples**2)) > 0.03  # spoken, not silent
    assert inputs.reference_transcript.startswith("A short recording")


def test_v1_still_loads_as_published():
    inputs = load_inputs(TEXTS.with_name("v1.json"))
    assert inputs.version == "bench-texts-v1" and inputs.voice_profile == "demo"
    assert inputs.rvc_clip.duration == pytest.approx(2.0)


def test_an_unknown_clip_generator_is_refused(tmp_path):
    spec = json.loads(TEXTS.read_text())
    spec["rvc_clip"]["generator"] = "tape-recorder"
    path = tmp_path / "v9.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="unknown clip generator 'tape-recorder'"):
        load_inputs(path)
