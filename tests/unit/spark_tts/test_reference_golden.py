"""Our reference-clip path against golden values from the official Spark-TTS code.

A quiet and a loud take of the same voice-like clip go through our
``normalize_volume`` and our ``AudioTokenizer`` (on the tiny model); the gains
and the BiCodec global (speaker) and semantic tokens must be exactly the ones
the official implementation produced.

The tokens are those of the real case: the clip sent as a 16-bit PCM WAV
file. Spark reads the file with soundfile as float64 and works in float64 up
to wav2vec2 and the mel spectrogram; our tokenizer is handed the same samples
as float32 (as the TTS service decodes them), which holds PCM16 values
exactly, and must get the same tokens.

How the golden numbers were computed, once (the scratch script is not in the
repo): the official SparkAudio/Spark-TTS code at commit 2f1ea90, run in a
scratch environment outside the repo with this project's virtualenv.
torchaudio's compiled extension does not load against our torch, so the
scratch script registered a bare ``torchaudio`` package (pure-Python modules
of the torchaudio 2.11.0 wheel, its extension loader replaced by a no-op);
BiCodec's ``torchaudio.transforms.MelSpectrogram`` was torchaudio's own code.
Its ``BiCodecTokenizer`` loaded ``write_tiny_model(dir)`` (seed 0, generator
version 2) unchanged. The tokens are its ``BiCodecTokenizer.tokenize(path)``
of each clip's ``pcm16_wav`` bytes (below) written to a file: the whole
official path, ``load_audio`` (soundfile, float64) with
``volume_normalize=True`` included. The gains are ``audio_volume_normalize``
applied to each ``voice_like_clip`` array cast to the dtype named, its output
divided by its input at the clip's peak sample. If the tiny model generator
changes, recompute them the same way.
"""

import io

import numpy as np
import pytest
import soundfile

from spark_tts.audio_tokenizer import AudioTokenizer
from spark_tts.reference_audio import normalize_volume
from spark_tts.tiny_models import write_tiny_model

RATE = 16_000
QUIET_PEAK = 0.03  # below 0.1: Spark lifts it, and estimates its loudness before the lift
LOUD_PEAK = 0.8


def voice_like_clip(peak: float, seconds: float = 2.0) -> np.ndarray:
    """A harmonic tone with vibrato, in syllables between silences, peaking at ``peak``."""
    t = np.arange(int(RATE * seconds)) / RATE
    pitch = 140.0 + 12.0 * np.sin(2 * np.pi * 5.0 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    wave = sum(np.sin(k * phase) / k for k in range(1, 9))
    syllables = np.clip(np.sin(2 * np.pi * 2.5 * t), 0.0, None) ** 0.5
    syllables[(t < 0.15) | (t > seconds - 0.25)] = 0.0
    audio = wave * syllables
    return (audio * (peak / np.max(np.abs(audio)))).astype(np.float32)


def pcm16_wav(peak: float) -> bytes:
    """``voice_like_clip(peak)`` as a 16-bit PCM WAV file, the form users send.

    Quantised here (rounded, full scale 32767) rather than by libsndfile,
    so the bytes do not depend on its own float-to-PCM conversion.
    """
    pcm = np.round(voice_like_clip(peak).astype(np.float64) * 32767).astype(np.int16)
    buffer = io.BytesIO()
    soundfile.write(buffer, pcm, RATE, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def read_wav(data: bytes, dtype: str) -> np.ndarray:
    audio, rate = soundfile.read(io.BytesIO(data), dtype=dtype)
    assert rate == RATE
    return audio


CLIPS = {"quiet": QUIET_PEAK, "loud": LOUD_PEAK}

# Output / input of Spark's audio_volume_normalize at the clip's peak sample.
GOLDEN_GAIN = {
    ("quiet", "float32"): 24.811842598782437,
    ("quiet", "float64"): 24.811842296042215,
    ("loud", "float32"): 0.312538142315475,
    ("loud", "float64"): 0.31253814259792795,
}

GOLDEN_GLOBAL = {
    "quiet": [
        2454, 2390, 2454, 2454, 2454, 2454, 2454, 2454, 2454, 2450, 2454, 2390, 2454, 2453, 2386,
        2454, 2454, 2450, 2454, 2454, 2454, 2454, 2390, 2454, 2454, 2450, 2454, 2454, 2454, 2454,
        2453, 2390
    ],
    "loud": [
        2454, 2390, 2454, 2454, 2454, 2470, 2454, 2454, 2454, 2450, 2454, 2390, 2454, 2453, 2386,
        2454, 2454, 2450, 2454, 2454, 2454, 2454, 2454, 2454, 2454, 2450, 2450, 2454, 2454, 2454,
        2453, 2454
    ],
}

GOLDEN_SEMANTIC = {
    "quiet": [
        1895, 6744, 7826, 6806, 2102, 1518, 5767, 2320, 3436, 1940, 4068, 741, 4249, 595, 1021,
        5053, 1051, 1021, 4643, 7539, 7736, 4733, 1024, 588, 1815, 1481, 443, 826, 268, 7775, 889,
        5085, 2854, 8091, 483, 5120, 8074, 1021, 2498, 7539, 7736, 1546, 1024, 588, 1815, 1481,
        443, 826, 268, 7775, 889, 5085, 2854, 8091, 483, 5120, 8074, 1021, 2498, 7539, 7736, 1546,
        1024, 588, 1815, 1481, 443, 826, 268, 7775, 889, 5085, 2854, 8091, 483, 6045, 6037, 6351,
        1615, 2981, 1475, 4359, 889, 659, 1209, 826, 6652, 7537, 6502, 7889, 703, 7634, 11, 5096,
        1147, 2925, 2970, 113, 2015
    ],
    "loud": [
        1895, 2877, 7826, 6806, 2102, 1518, 5767, 2320, 3436, 1940, 4068, 741, 4249, 595, 1021,
        5053, 1051, 1021, 4643, 7539, 7736, 4733, 1024, 588, 1815, 1481, 443, 826, 268, 7775, 889,
        5085, 2854, 8091, 483, 5120, 8074, 1021, 2498, 7539, 7736, 1546, 1024, 588, 1815, 1481,
        443, 826, 268, 7775, 889, 5085, 2854, 8091, 483, 5120, 8074, 1021, 2498, 7539, 7736, 1546,
        1024, 588, 1815, 1481, 443, 826, 268, 7775, 889, 5085, 2854, 8091, 483, 6045, 6037, 6351,
        1615, 2981, 1475, 4359, 889, 659, 1209, 826, 6652, 7537, 6502, 7889, 703, 7634, 11, 5096,
        1147, 2925, 2970, 113, 2015
    ],
}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return AudioTokenizer(write_tiny_model(tmp_path_factory.mktemp("tiny_spark")))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(CLIPS))
def test_normalize_volume_applies_the_reference_gain(name, dtype):
    audio = voice_like_clip(CLIPS[name]).astype(dtype)
    out = normalize_volume(audio)
    assert out.dtype == audio.dtype
    at = int(np.argmax(np.abs(audio)))
    gain = GOLDEN_GAIN[name, dtype]
    # float32 output carries ~6e-8 of rounding; the float64 path is exact.
    rel = 1e-7 if dtype == "float32" else 1e-12
    assert float(out[at]) / float(audio[at]) == pytest.approx(gain, rel=rel)
    np.testing.assert_allclose(out, audio * gain, rtol=1e-6, atol=1e-12)


def test_the_quiet_clip_comes_out_louder_than_the_loud_one():
    """Spark's quirk, read off its golden gains: the quiet take's loudness is
    estimated before its lift to a 0.1 peak, so the gain meant for its
    original level lands on the lifted clip and overshoots the loud take."""
    quiet = GOLDEN_GAIN["quiet", "float32"] * QUIET_PEAK
    loud = GOLDEN_GAIN["loud", "float32"] * LOUD_PEAK
    assert quiet > 2 * loud


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_float32_samples_of_the_wav_are_the_ones_spark_reads(name):
    """What makes the comparison fair: PCM16 samples are exact in float32."""
    data = pcm16_wav(CLIPS[name])
    samples = read_wav(data, "float32")
    assert samples.dtype == np.float32
    np.testing.assert_array_equal(samples.astype(np.float64), read_wav(data, "float64"))


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_tokens_match_the_reference(tokenizer, name):
    samples = read_wav(pcm16_wav(CLIPS[name]), "float32")  # as the TTS service decodes it
    global_ids, semantic_ids = tokenizer.tokenize(samples)
    assert global_ids == GOLDEN_GLOBAL[name]
    assert semantic_ids == GOLDEN_SEMANTIC[name]
