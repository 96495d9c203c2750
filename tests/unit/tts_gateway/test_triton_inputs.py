"""What the TTS gateway sends Triton, and how it reads Triton's errors."""

import grpc
import numpy as np
import pytest

from services.common.audio import PcmAudio
from services.common.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    ServiceError,
    Unavailable,
)
from services.tts_gateway.request import (
    CachedSpeaker,
    ControlledSpeaker,
    Gender,
    Level,
    ReferenceSpeaker,
    Sampling,
    SpeechRequest,
)
from services.tts_gateway.settings import TtsSettings
from services.tts_gateway.synthesis import SPARK_RATE, token_cap, triton_inputs
from services.tts_gateway.triton import infer_input, model_error

SPEAKER_INPUTS = {"reference_wav", "reference_text", "speaker_id", "gender", "pitch", "speed"}
SAMPLING_INPUTS = {"temperature", "top_k", "top_p", "max_tokens", "seed"}


def stereo_44k(seconds: float = 1.0) -> PcmAudio:
    frames = int(44_100 * seconds)
    t = np.arange(frames) / 44_100
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    right = 0.5 * np.sin(2 * np.pi * 440 * t + np.pi)  # cancels left in the mix
    right[: frames // 2] = left[: frames // 2]
    return PcmAudio(np.stack([left, right], axis=1).astype(np.float32), 44_100)


def text_of(array: np.ndarray) -> str:
    assert array.dtype == np.object_
    assert array.shape == (1,)
    return array[0].decode("utf-8")


def speaker_keys(inputs):
    return set(inputs) & SPEAKER_INPUTS


@pytest.mark.parametrize("streaming", [True, False])
def test_text_and_streaming_are_always_sent(streaming):
    inputs = triton_inputs(SpeechRequest("Grüß dich.", CachedSpeaker("spk")), streaming)
    assert text_of(inputs["text"]) == "Grüß dich."
    assert inputs["text"][0] == "Grüß dich.".encode()
    assert inputs["streaming"].dtype == np.bool_
    assert inputs["streaming"].tolist() == [streaming]


def test_reference_audio_is_resampled_to_16k_mono_float32():
    inputs = triton_inputs(SpeechRequest("Hi.", ReferenceSpeaker(stereo_44k())), True)
    wav = inputs["reference_wav"]
    assert wav.dtype == np.float32
    assert wav.ndim == 1
    assert abs(wav.size - SPARK_RATE) <= 2
    # First half: both channels equal, so the mix keeps the tone; second half cancels.
    half = wav.size // 2
    assert np.max(np.abs(wav[half // 4: 3 * half // 4])) == pytest.approx(0.5, abs=0.02)
    assert np.max(np.abs(wav[half + half // 4: half + 3 * half // 4])) < 0.01
    assert speaker_keys(inputs) == {"reference_wav"}


def test_reference_audio_at_16k_mono_is_sent_as_is():
    samples = np.linspace(-0.5, 0.5, 8000, dtype=np.float32)
    request = SpeechRequest("Hi.", ReferenceSpeaker(PcmAudio(samples, SPARK_RATE)))
    np.testing.assert_array_equal(triton_inputs(request, True)["reference_wav"], samples)


def test_reference_transcript_is_sent_stripped():
    speaker = ReferenceSpeaker(stereo_44k(0.1), transcript="  What the clip says. \n")
    inputs = triton_inputs(SpeechRequest("Hi.", speaker), True)
    assert text_of(inputs["reference_text"]) == "What the clip says."
    assert speaker_keys(inputs) == {"reference_wav", "reference_text"}


@pytest.mark.parametrize("transcript", ["", "   ", "\n\t"])
def test_blank_reference_transcript_is_left_out(transcript):
    speaker = ReferenceSpeaker(stereo_44k(0.1), transcript=transcript)
    assert "reference_text" not in triton_inputs(SpeechRequest("Hi.", speaker), True)


def test_cached_speaker_sends_its_id():
    inputs = triton_inputs(SpeechRequest("Hi.", CachedSpeaker("spk-42")), False)
    assert text_of(inputs["speaker_id"]) == "spk-42"
    assert speaker_keys(inputs) == {"speaker_id"}


def test_controlled_speaker_sends_levels_as_names():
    speaker = ControlledSpeaker(Gender.MALE, pitch=Level.VERY_HIGH, speed=Level.VERY_LOW)
    inputs = triton_inputs(SpeechRequest("Hi.", speaker), True)
    assert text_of(inputs["gender"]) == "male"
    assert text_of(inputs["pitch"]) == "very_high"
    assert text_of(inputs["speed"]) == "very_low"
    assert speaker_keys(inputs) == {"gender", "pitch", "speed"}


def test_controlled_speaker_defaults_to_moderate():
    inputs = triton_inputs(SpeechRequest("Hi.", ControlledSpeaker(Gender.FEMALE)), True)
    assert [text_of(inputs[k]) for k in ("gender", "pitch", "speed")] == [
        "female", "moderate", "moderate",
    ]


def test_level_names_are_the_spark_tts_labels():
    from spark_tts.prompts import GENDERS, LEVELS

    assert {level.value for level in Level} == set(LEVELS)
    assert {gender.value for gender in Gender} == set(GENDERS)


def test_unset_sampling_fields_are_left_out_except_the_token_cap():
    inputs = triton_inputs(SpeechRequest("Hi.", CachedSpeaker("spk")), True, 240)
    assert set(inputs) & SAMPLING_INPUTS == {"max_tokens"}
    assert inputs["max_tokens"].dtype == np.int32
    assert inputs["max_tokens"].tolist() == [240]


def test_requested_max_tokens_overrides_the_default_cap():
    request = SpeechRequest("Hi.", CachedSpeaker("spk"), Sampling(max_tokens=9))
    assert triton_inputs(request, True, 240)["max_tokens"].tolist() == [9]


def test_token_cap_grows_with_the_text_up_to_the_limit():
    settings = TtsSettings(tokens_per_char=7.0, min_tokens=100, max_tokens=3000)
    assert token_cap("", settings) == 100
    assert token_cap("x" * 10, settings) == 170
    assert token_cap("x" * 1000, settings) == 3000


def test_set_sampling_fields_are_sent_with_their_dtypes():
    sampling = Sampling(temperature=0.7, top_k=30, top_p=0.9, max_tokens=500, seed=2**40)
    inputs = triton_inputs(SpeechRequest("Hi.", CachedSpeaker("spk"), sampling), True)
    expected = {
        "temperature": (np.float32, 0.7),
        "top_k": (np.int32, 30),
        "top_p": (np.float32, 0.9),
        "max_tokens": (np.int32, 500),
        "seed": (np.int64, 2**40),
    }
    for name, (dtype, value) in expected.items():
        assert inputs[name].dtype == dtype, name
        assert inputs[name].shape == (1,), name
        assert inputs[name][0] == pytest.approx(value), name


@pytest.mark.parametrize(
    ("seed", "sent"),
    [(0, 0), (2**63 - 1, 2**63 - 1), (2**63, -(2**63)), (2**64 - 1, -1)],
)
def test_a_uint64_seed_travels_as_its_64_bits(seed, sent):
    """Triton's seed tensor is INT64; the llm model reads the same uint64 back."""
    from spark_tts.sampling import seed_from_int64

    inputs = triton_inputs(SpeechRequest("Hi.", CachedSpeaker("spk"), Sampling(seed=seed)), True)
    assert inputs["seed"].dtype == np.int64 and inputs["seed"].tolist() == [sent]
    assert seed_from_int64(inputs["seed"].reshape(-1)[0].item()) == seed


@pytest.mark.parametrize("seed", [-1, 2**64, 2**70])
def test_a_seed_outside_uint64_is_refused_in_the_one_wording(seed):
    with pytest.raises(InvalidArgument) as caught:
        Sampling(seed=seed)
    assert caught.value.message == f"sampling.seed {seed} is outside 0..2^64-1"


def test_zero_valued_sampling_fields_are_still_sent():
    request = SpeechRequest("Hi.", CachedSpeaker("spk"), Sampling(top_k=0, seed=0))
    inputs = triton_inputs(request, True)
    assert inputs["top_k"].tolist() == [0]
    assert inputs["seed"].tolist() == [0]
    assert not {"temperature", "top_p"} & set(inputs)


@pytest.mark.parametrize(
    ("value", "datatype"),
    [
        (np.array([b"hi"], dtype=np.object_), "BYTES"),
        (np.array([True]), "BOOL"),
        (np.zeros(5, np.float32), "FP32"),
        (np.array([1], np.int32), "INT32"),
        (np.array([1], np.int64), "INT64"),
    ],
)
def test_infer_input_carries_name_shape_and_datatype(value, datatype):
    tensor = infer_input("x", value)
    assert tensor.name() == "x"
    assert tensor.shape() == list(value.shape)
    assert tensor.datatype() == datatype


@pytest.mark.parametrize(
    ("message", "error_type", "detail"),
    [
        ("INVALID_ARGUMENT: x", InvalidArgument, "x"),
        ("INVALID_ARGUMENT: pitch 'loud': not a level", InvalidArgument, "pitch 'loud': not a level"),
        ("NOT_FOUND: speaker spk-1 is not cached", NotFound, "speaker spk-1 is not cached"),
        ("UNAVAILABLE: model is loading", Unavailable, "model is loading"),
    ],
)
def test_prefixed_model_errors_map_to_domain_errors(message, error_type, detail):
    error = model_error(message)
    assert type(error) is error_type
    assert error.message == detail
    assert str(error) == detail


def test_internal_model_errors_are_internal_without_their_details(caplog):
    error = model_error("INTERNAL: vocoder: RuntimeError: CUDA out of memory at 0x7f")
    assert type(error) is ServiceError
    assert error.code == grpc.StatusCode.INTERNAL
    assert "CUDA" not in error.message and "0x7f" not in error.message
    assert "CUDA out of memory" in caplog.text  # kept for operators


@pytest.mark.parametrize(
    "message",
    ["failed to connect to all addresses", "Socket closed", "invalid_argument: lower case"],
)
def test_unprefixed_errors_mean_triton_is_unavailable(message):
    error = model_error(message)
    assert type(error) is Unavailable
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert "Triton" in error.message
    assert message in error.message


@pytest.mark.parametrize("message", ["Deadline Exceeded", "stream timeout after 5 s"])
def test_timeouts_map_to_deadline_exceeded(message):
    error = model_error(message)
    assert type(error) is DeadlineExceeded
    assert message in error.message
