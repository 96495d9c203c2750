"""Spark TTS prompts: exact token order, style labels, and parsing generated text."""

import pytest

from spark_tts import prompts
from spark_tts.prompts import (
    GENDERS,
    LEVELS,
    cloning_prompt,
    control_prompt,
    global_token,
    semantic_token,
    special_tokens,
)

GLOBALS = [5, 0, 4095]
SEMANTICS = [7, 8191, 0]
GLOBAL_BLOCK = "<|bicodec_global_5|><|bicodec_global_0|><|bicodec_global_4095|>"
SEMANTIC_BLOCK = "<|bicodec_semantic_7|><|bicodec_semantic_8191|><|bicodec_semantic_0|>"


def test_token_names():
    assert semantic_token(12) == "<|bicodec_semantic_12|>"
    assert global_token(3) == "<|bicodec_global_3|>"


def test_cloning_prompt_without_transcript_has_only_text_and_globals():
    assert cloning_prompt("Hi there.", GLOBALS) == (
        "<|task_tts|><|start_content|>Hi there.<|end_content|>"
        f"<|start_global_token|>{GLOBAL_BLOCK}<|end_global_token|>"
    )


def test_cloning_prompt_without_transcript_leaves_out_semantic_tokens():
    prompt = cloning_prompt("Hi there.", GLOBALS, SEMANTICS)
    assert "semantic" not in prompt
    assert prompt == cloning_prompt("Hi there.", GLOBALS)


def test_cloning_prompt_with_transcript_continues_the_reference_semantics():
    prompt = cloning_prompt("Hi there.", GLOBALS, SEMANTICS, transcript="Reference words. ")
    assert prompt == (
        "<|task_tts|><|start_content|>Reference words. Hi there.<|end_content|>"
        f"<|start_global_token|>{GLOBAL_BLOCK}<|end_global_token|>"
        f"<|start_semantic_token|>{SEMANTIC_BLOCK}"
    )
    # The model is to continue the semantic block, so it must stay open.
    assert "<|end_semantic_token|>" not in prompt


def test_cloning_prompt_round_trips_its_token_ids():
    prompt = cloning_prompt("x", GLOBALS, SEMANTICS, transcript="y")
    assert prompts.global_ids(prompt) == GLOBALS
    assert prompts.semantic_ids(prompt) == SEMANTICS


def test_control_prompt_defaults_to_moderate_pitch_and_speed():
    assert control_prompt("Hello.", "female") == (
        "<|task_controllable_tts|><|start_content|>Hello.<|end_content|>"
        "<|start_style_label|><|gender_0|><|pitch_label_2|><|speed_label_2|>"
        "<|end_style_label|>"
    )


@pytest.mark.parametrize("gender", sorted(GENDERS))
@pytest.mark.parametrize("pitch", sorted(LEVELS))
def test_control_prompt_labels_follow_the_maps(gender, pitch):
    speed = "very_high" if pitch != "very_high" else "very_low"
    prompt = control_prompt("Hello.", gender, pitch=pitch, speed=speed)
    style = (
        f"<|gender_{GENDERS[gender]}|><|pitch_label_{LEVELS[pitch]}|>"
        f"<|speed_label_{LEVELS[speed]}|>"
    )
    assert f"<|start_style_label|>{style}<|end_style_label|>" in prompt


def test_official_label_maps():
    assert GENDERS == {"female": 0, "male": 1}
    assert LEVELS == {"very_low": 0, "low": 1, "moderate": 2, "high": 3, "very_high": 4}


@pytest.mark.parametrize("gender", ["", "Female", "other"])
def test_control_prompt_rejects_unknown_gender(gender):
    with pytest.raises(ValueError, match="gender"):
        control_prompt("Hello.", gender)


@pytest.mark.parametrize("field", ["pitch", "speed"])
@pytest.mark.parametrize("level", ["", "medium", "VERY_HIGH", "very high"])
def test_control_prompt_rejects_unknown_levels(field, level):
    with pytest.raises(ValueError, match=field):
        control_prompt("Hello.", "male", **{field: level})


def test_semantic_and_global_ids_parse_generated_text_in_order():
    generated = (
        "<|bicodec_global_12|>stray text<|bicodec_global_4095|>"
        "<|start_semantic_token|><|bicodec_semantic_3|><|bicodec_semantic_8191|>"
        "<|bicodec_semantic_3|><|end_semantic_token|><|im_end|>"
    )
    assert prompts.global_ids(generated) == [12, 4095]
    assert prompts.semantic_ids(generated) == [3, 8191, 3]


def test_parsing_ignores_malformed_tokens():
    generated = "<|bicodec_semantic_|><|bicodec_semantic_x|><bicodec_semantic_4><|bicodec_global_-1|>"
    assert prompts.semantic_ids(generated) == []
    assert prompts.global_ids(generated) == []


def test_special_tokens_hold_every_audio_token_once():
    tokens = special_tokens()
    assert len(tokens) == len(set(tokens))
    semantic = [t for t in tokens if t.startswith("<|bicodec_semantic_")]
    global_ = [t for t in tokens if t.startswith("<|bicodec_global_")]
    assert semantic == [semantic_token(i) for i in range(8192)]
    assert global_ == [global_token(i) for i in range(4096)]
    assert prompts.SEMANTIC_VOCAB == 8192
    assert prompts.GLOBAL_VOCAB == 4096


def test_special_tokens_cover_every_prompt_token():
    tokens = set(special_tokens())
    texts = [
        cloning_prompt("", range(4096), range(8192), transcript="t"),
        *(control_prompt("", g, p, s) for g in GENDERS for p in LEVELS for s in LEVELS),
    ]
    for text in texts:
        for piece in text.replace("<|", "\0<|").replace("|>", "|>\0").split("\0"):
            if piece.startswith("<|"):
                assert piece in tokens
    for stop in ("<|im_end|>", "<|endoftext|>", "<|end_semantic_token|>"):
        assert stop in tokens
