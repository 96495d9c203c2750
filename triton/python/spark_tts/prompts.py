"""Spark TTS prompts for the LLM, and the audio tokens in what it generates."""

from __future__ import annotations

import re
from collections.abc import Sequence

GENDERS = {"female": 0, "male": 1}
LEVELS = {"very_low": 0, "low": 1, "moderate": 2, "high": 3, "very_high": 4}

SEMANTIC_VOCAB = 8192
GLOBAL_VOCAB = 4096
GLOBAL_TOKENS = 32

TASK_TTS = "<|task_tts|>"
TASK_CONTROLLABLE = "<|task_controllable_tts|>"

_SEMANTIC = re.compile(r"<\|bicodec_semantic_(\d+)\|>")
_GLOBAL = re.compile(r"<\|bicodec_global_(\d+)\|>")


def semantic_token(index: int) -> str:
    return f"<|bicodec_semantic_{index}|>"


def global_token(index: int) -> str:
    return f"<|bicodec_global_{index}|>"


def special_tokens() -> list[str]:
    """Every special token Spark TTS prompts or generates, for building a tokenizer."""
    fixed = [
        "<|task_tts|>", "<|task_controllable_tts|>", "<|task_vc|>", "<|task_asr|>",
        "<|task_s2s|>", "<|task_t2s|>", "<|task_understand|>", "<|task_cap|>",
        "<|task_prompt_tts|>", "<|task_edit|>",
        "<|start_content|>", "<|end_content|>",
        "<|start_global_token|>", "<|end_global_token|>",
        "<|start_semantic_token|>", "<|end_semantic_token|>",
        "<|start_style_label|>", "<|end_style_label|>",
        "<|start_acoustic_token|>", "<|end_acoustic_token|>",
        "<|im_start|>", "<|im_end|>", "<|endoftext|>",
    ]
    labels = [f"<|gender_{i}|>" for i in GENDERS.values()]
    labels += [f"<|pitch_label_{i}|>" for i in LEVELS.values()]
    labels += [f"<|speed_label_{i}|>" for i in LEVELS.values()]
    return (
        fixed + labels
        + [global_token(i) for i in range(GLOBAL_VOCAB)]
        + [semantic_token(i) for i in range(SEMANTIC_VOCAB)]
    )


def cloning_prompt(
    text: str,
    global_ids: Sequence[int],
    semantic_ids: Sequence[int] | None = None,
    transcript: str = "",
) -> str:
    """Prompt to speak ``text`` in the voice whose tokens are given.

    With the reference transcript, the reference's semantic tokens follow it so
    the model continues the same voice in the same way.
    """
    globals_ = "".join(global_token(i) for i in global_ids)
    if transcript and semantic_ids is not None:
        return "".join([
            TASK_TTS, "<|start_content|>", transcript, text, "<|end_content|>",
            "<|start_global_token|>", globals_, "<|end_global_token|>",
            "<|start_semantic_token|>", "".join(semantic_token(i) for i in semantic_ids),
        ])
    return "".join([
        TASK_TTS, "<|start_content|>", text, "<|end_content|>",
        "<|start_global_token|>", globals_, "<|end_global_token|>",
    ])


def control_prompt(text: str, gender: str, pitch: str = "moderate", speed: str = "moderate") -> str:
    """Prompt to speak ``text`` in a voice described by gender, pitch and speed."""
    if gender not in GENDERS:
        raise ValueError(f"gender {gender!r} is not one of {sorted(GENDERS)}")
    for name, level in (("pitch", pitch), ("speed", speed)):
        if level not in LEVELS:
            raise ValueError(f"{name} {level!r} is not one of {sorted(LEVELS)}")
    style = (
        f"<|gender_{GENDERS[gender]}|>"
        f"<|pitch_label_{LEVELS[pitch]}|>"
        f"<|speed_label_{LEVELS[speed]}|>"
    )
    return "".join([
        TASK_CONTROLLABLE, "<|start_content|>", text, "<|end_content|>",
        "<|start_style_label|>", style, "<|end_style_label|>",
    ])


def semantic_ids(generated: str) -> list[int]:
    return [int(m) for m in _SEMANTIC.findall(generated)]


def global_ids(generated: str) -> list[int]:
    return [int(m) for m in _GLOBAL.findall(generated)]
