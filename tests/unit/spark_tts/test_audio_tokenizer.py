"""AudioTokenizer (wav2vec2 + BiCodec) and Vocoder on the tiny model."""

import numpy as np
import pytest

from spark_tts import prompts
from spark_tts.audio_tokenizer import AudioTokenizer
from spark_tts.layout import SAMPLES_PER_TOKEN
from spark_tts.tiny_models import write_tiny_model
from spark_tts.vocoder import Vocoder

RATE = 16_000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("tiny_spark"))


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return AudioTokenizer(model_dir)


def clip(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise under a syllable-rate envelope: speech-like enough for the encoders."""
    n = int(RATE * seconds)
    noise = np.random.default_rng(seed).standard_normal(n)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * np.arange(n) / RATE)
    return (0.3 * noise * envelope).astype(np.float32)


def test_sample_rate_is_16k(tokenizer):
    assert tokenizer.sample_rate == RATE


@pytest.mark.parametrize("seconds", [0.5, 2.0, 7.0])
def test_tokenize_gives_32_global_ids_and_50_semantic_ids_a_second(tokenizer, seconds):
    """0.5 s and 2 s are shorter than the 6 s reference segment, 7 s is longer."""
    global_ids, semantic_ids = tokenizer.tokenize(clip(seconds))
    assert len(global_ids) == prompts.GLOBAL_TOKENS
    assert all(0 <= i < prompts.GLOBAL_VOCAB for i in global_ids)
    assert abs(len(semantic_ids) - seconds * RATE / SAMPLES_PER_TOKEN) <= 2
    assert all(0 <= i < prompts.SEMANTIC_VOCAB for i in semantic_ids)


def test_tokens_are_python_ints(tokenizer):
    global_ids, semantic_ids = tokenizer.tokenize(clip(0.5))
    assert all(type(i) is int for i in global_ids + semantic_ids)


def test_same_clip_gives_the_same_tokens(tokenizer):
    audio = clip(1.0, seed=3)
    assert tokenizer.tokenize(audio) == tokenizer.tokenize(audio.copy())


def test_tokenize_leaves_the_clip_alone(tokenizer):
    audio = clip(1.0, seed=4)
    before = audio.copy()
    tokenizer.tokenize(audio)
    np.testing.assert_array_equal(audio, before)


def test_float64_and_list_input_match_float32(tokenizer):
    audio = clip(1.0, seed=5)
    expected = tokenizer.tokenize(audio)
    assert tokenizer.tokenize(audio.astype(np.float64)) == expected
    assert tokenizer.tokenize(audio.tolist()) == expected


def test_volume_is_normalised_before_tokenizing(tokenizer):
    """Loudness is normalised, so a clip and a quieter copy give the same tokens."""
    audio = clip(1.0, seed=6)
    assert tokenizer.tokenize(audio * 0.5) == tokenizer.tokenize(audio)


def test_vocoder_turns_tokens_back_into_audio(model_dir, tokenizer):
    global_ids, semantic_ids = tokenizer.tokenize(clip(1.0, seed=7))
    wav = Vocoder(model_dir)(global_ids, semantic_ids)
    assert wav.dtype == np.float32
    assert wav.shape == (len(semantic_ids) * SAMPLES_PER_TOKEN,)
    assert np.all(np.isfinite(wav))
