"""AudioTokenizer (wav2vec2 + BiCodec) and Vocoder on the tiny model."""

import numpy as np
import pytest

from spark_tts import prompts
from spark_tts.audio_tokenizer import AudioTokenizer
from spark_tts.layout import SAMPLES_PER_TOKEN
from spark_tts.reference_audio import normalize_volume, reference_segment
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


def test_volume_is_normalised_in_float64_and_rounded_where_spark_rounds(tokenizer, monkeypatch):
    """Spark reads the WAV as float64 and normalises it in float64; wav2vec2's
    feature extractor gets that float64 clip (and rounds it to float32
    itself), the speaker encoder its float32 rounding (``.float()``)."""
    audio = 0.05 * clip(1.0, seed=8) / np.max(np.abs(clip(1.0, seed=8)))  # quiet: lifted first
    audio = (np.round(audio * 32767) / 32768).astype(np.float32)  # 16-bit PCM, as decoded
    seen = {}
    processor, bicodec_tokenize = tokenizer.processor, tokenizer.bicodec.tokenize

    def record_features(wav, **kwargs):
        seen["features"] = wav.copy()
        return processor(wav, **kwargs)

    def record_reference(features, ref_wav):
        seen["reference"] = ref_wav.cpu().numpy().reshape(-1)
        return bicodec_tokenize(features, ref_wav)

    monkeypatch.setattr(tokenizer, "processor", record_features)
    monkeypatch.setattr(tokenizer.bicodec, "tokenize", record_reference)
    tokenizer.tokenize(audio)

    expected = normalize_volume(audio.astype(np.float64))
    assert seen["features"].dtype == np.float64
    np.testing.assert_array_equal(seen["features"], expected)
    assert seen["reference"].dtype == np.float32
    reference = reference_segment(expected, tokenizer.config.ref_segment_samples)
    np.testing.assert_array_equal(seen["reference"], reference.astype(np.float32))
    # Not what float32 arithmetic gives: the check above tells them apart.
    in_float32 = reference_segment(normalize_volume(audio), tokenizer.config.ref_segment_samples)
    assert np.any(seen["reference"] != in_float32)


def test_vocoder_turns_tokens_back_into_audio(model_dir, tokenizer):
    global_ids, semantic_ids = tokenizer.tokenize(clip(1.0, seed=7))
    wav = Vocoder(model_dir)(global_ids, semantic_ids)
    assert wav.dtype == np.float32
    assert wav.shape == (len(semantic_ids) * SAMPLES_PER_TOKEN,)
    assert np.all(np.isfinite(wav))
