"""Property tests of every way bytes become ``PcmAudio``: uploaded files, proto Audio, raw PCM.

Whatever arrives, the result is finite float32 samples at an accepted rate, or
``InvalidArgument``: never any other exception.
"""

import io

import numpy as np
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from voice.v1 import audio_pb2

from services.common.audio import (
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    PcmAudio,
    SampleFormat,
    decode_container,
    decode_pcm,
)
from services.common.audio_proto import audio_from_proto
from services.common.errors import InvalidArgument

FUZZ = settings(
    max_examples=200, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Every WAV sample encoding libsndfile writes, and so every one an upload may use.
WAV_SUBTYPES = ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW")
RATES = (1, 4_000, 8_000, 11_025, 16_000, 44_100, 48_000, 96_000, 192_000, 384_000)


def assert_sound(audio: PcmAudio) -> None:
    """What every decoder promises for audio it accepts."""
    assert isinstance(audio.sample_rate, int)
    assert MIN_SAMPLE_RATE <= audio.sample_rate <= MAX_SAMPLE_RATE
    assert audio.samples.dtype == np.float32
    assert audio.samples.ndim in (1, 2)
    assert np.all(np.isfinite(audio.samples))
    assert audio.channels >= 1


def decoded_or_refused(decode, *args) -> PcmAudio | None:
    try:
        audio = decode(*args)
    except InvalidArgument as exc:
        assert exc.message  # says what is wrong
        return None
    assert_sound(audio)
    return audio


@st.composite
def wav_files(draw) -> bytes:
    subtype = draw(st.sampled_from(WAV_SUBTYPES))
    channels = draw(st.integers(1, 6))
    rate = draw(st.sampled_from(RATES[2:-1]))
    frames = draw(st.integers(0, 64))
    samples = draw(st.lists(
        st.floats(-1.0, 1.0, allow_nan=False, width=32), min_size=frames * channels,
        max_size=frames * channels,
    ))
    out = io.BytesIO()
    soundfile.write(out, np.asarray(samples, np.float32).reshape(frames, channels), rate,
                    format="WAV", subtype=subtype)
    return out.getvalue()


@st.composite
def mutated_wavs(draw) -> bytes:
    """A valid WAV, then overwritten bytes (header fields above all), cut or grown."""
    data = bytearray(draw(wav_files()))
    for _ in range(draw(st.integers(1, 6))):
        # Half the edits land in the 44-byte header, where the sizes, rate and format live.
        end = 44 if draw(st.booleans()) else len(data)
        at = draw(st.integers(0, min(end, len(data)) - 1))
        patch = draw(st.binary(min_size=1, max_size=4))
        data[at : at + len(patch)] = patch
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    if cut is not None:
        data = data[:cut]
    return bytes(data) + draw(st.binary(max_size=16))


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes_are_decoded_or_refused(data):
    decoded_or_refused(decode_container, data)


@FUZZ
@given(wav_files())
def test_every_valid_wav_is_decoded(data):
    audio = decode_container(data)
    assert_sound(audio)


@FUZZ
@given(mutated_wavs())
def test_mutated_wavs_are_decoded_or_refused(data):
    decoded_or_refused(decode_container, data)


@FUZZ
@given(
    st.binary(max_size=256),
    st.integers(0, 2**32 - 1),
    st.sampled_from(list(SampleFormat)),
    st.integers(-2, 12),
)
def test_raw_pcm_is_decoded_or_refused(data, rate, sample_format, channels):
    decoded_or_refused(decode_pcm, data, rate, sample_format, channels)


@FUZZ
@given(
    st.binary(max_size=256),
    st.one_of(st.sampled_from(RATES), st.integers(0, 2**32 - 1)),
    st.integers(-1, 5),  # beyond the enum's values too: proto3 keeps unknown numbers
    st.integers(0, 2**32 - 1),
)
def test_proto_audio_is_decoded_or_refused(pcm, rate, sample_format, channels):
    message = audio_pb2.Audio(pcm=pcm, sample_rate=rate, sample_format=sample_format,
                              channels=channels)
    audio = decoded_or_refused(audio_from_proto, message)
    if audio is not None:
        width = 4 if sample_format == audio_pb2.SAMPLE_FORMAT_PCM_F32LE else 2
        assert audio.frames * audio.channels * width == len(pcm)


@FUZZ
@given(st.lists(st.floats(width=32), max_size=32), st.sampled_from(RATES))
def test_float_pcm_with_nan_or_inf_is_refused_by_name(values, rate):
    data = np.asarray(values, "<f4").tobytes()
    message = audio_pb2.Audio(pcm=data, sample_rate=rate,
                              sample_format=audio_pb2.SAMPLE_FORMAT_PCM_F32LE)
    audio = decoded_or_refused(audio_from_proto, message)
    finite = all(np.isfinite(values))
    in_range = MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE
    assert (audio is not None) == (finite and in_range)
    if audio is not None:
        assert np.array_equal(audio.samples, np.asarray(values, np.float32))


@FUZZ
@given(st.lists(st.floats(width=32), min_size=1, max_size=32), st.sampled_from(["FLOAT", "DOUBLE"]))
def test_float_wavs_with_nan_or_inf_are_refused_by_name(values, subtype):
    out = io.BytesIO()
    soundfile.write(out, np.asarray(values, np.float32), 16_000, format="WAV", subtype=subtype)
    audio = decoded_or_refused(decode_container, out.getvalue())
    assert (audio is not None) == all(np.isfinite(values))
