import io
import tracemalloc

import numpy as np
import pytest
import soundfile

from services.common.audio import (
    PcmAudio,
    SampleFormat,
    decode_container,
    decode_pcm,
    encode_pcm,
    encode_wav,
    resample,
    to_mono,
)
from services.common.errors import InvalidArgument


def tone(seconds=0.5, rate=16_000, freq=220.0, channels=1):
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    mono = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    samples = mono if channels == 1 else np.stack([mono] * channels, axis=1)
    return PcmAudio(samples, rate)


@pytest.mark.parametrize("fmt, tolerance", [(SampleFormat.S16LE, 1 / 32767), (SampleFormat.F32LE, 0)])
def test_pcm_round_trip(fmt, tolerance):
    audio = tone()
    back = decode_pcm(encode_pcm(audio, fmt), audio.sample_rate, fmt)
    assert back.sample_rate == audio.sample_rate
    assert back.frames == audio.frames
    assert np.max(np.abs(back.samples - audio.samples)) <= tolerance


def test_interleaved_channels_are_split():
    audio = tone(channels=2)
    back = decode_pcm(encode_pcm(audio, SampleFormat.F32LE), 16_000, SampleFormat.F32LE, 2)
    assert back.channels == 2
    assert to_mono(back).channels == 1


def test_encoding_clips_out_of_range_samples():
    loud = PcmAudio(np.array([2.0, -3.0], dtype=np.float32), 16_000)
    assert np.frombuffer(encode_pcm(loud, SampleFormat.S16LE), "<i2").tolist() == [32767, -32767]


@pytest.mark.parametrize(
    "data, rate, fmt, channels, message",
    [
        (b"\x00\x00\x00", 16_000, SampleFormat.S16LE, 1, "not a whole number"),
        (b"\x00" * 6, 16_000, SampleFormat.F32LE, 1, "not a whole number"),
        (b"\x00" * 4, 0, SampleFormat.S16LE, 1, "sample_rate 0"),
        (b"\x00" * 4, 500_000, SampleFormat.S16LE, 1, "sample_rate 500000"),
        (b"\x00" * 4, 16_000, SampleFormat.S16LE, 9, "channels 9"),
        (np.array([np.nan], "<f4").tobytes(), 16_000, SampleFormat.F32LE, 1, "NaN"),
        (np.array([np.inf], "<f4").tobytes(), 16_000, SampleFormat.F32LE, 1, "NaN or infinite"),
    ],
)
def test_bad_pcm_is_an_invalid_argument(data, rate, fmt, channels, message):
    with pytest.raises(InvalidArgument, match=message):
        decode_pcm(data, rate, fmt, channels)


def test_resample_keeps_duration_and_pitch():
    audio = tone(seconds=1.0, rate=22_050, freq=440.0)
    out = resample(audio, 16_000)
    assert out.sample_rate == 16_000
    assert abs(out.frames - 16_000) <= 1
    spectrum = np.abs(np.fft.rfft(out.samples))
    assert abs(np.argmax(spectrum) * 16_000 / out.frames - 440.0) < 2.0


def test_wav_round_trip_through_the_container():
    audio = tone(rate=24_000)
    back = decode_container(encode_wav(audio))
    assert back.sample_rate == 24_000
    assert back.frames == audio.frames
    assert np.max(np.abs(back.samples - audio.samples)) < 1e-3


def test_other_containers_decode_too():
    buffer = io.BytesIO()
    soundfile.write(buffer, tone().samples, 16_000, format="FLAC")
    assert decode_container(buffer.getvalue()).frames == 8_000


@pytest.mark.parametrize("data", [b"", b"RIFF\x00\x00", b"not audio at all" * 10])
def test_garbage_files_are_invalid_arguments(data):
    with pytest.raises(InvalidArgument):
        decode_container(data)


def test_an_unreadable_file_is_named_by_libsndfile_without_internals():
    with pytest.raises(InvalidArgument) as caught:
        decode_container(b"definitely not audio")
    assert caught.value.message == "not a readable audio file: Format not recognised."


def silent_flac(seconds=610, rate=48_000, channels=2) -> bytes:
    """A decode bomb: ``seconds`` of silence, a few hundred bytes a second as FLAC."""
    out = io.BytesIO()
    with soundfile.SoundFile(out, "w", rate, channels, format="FLAC", subtype="PCM_16") as file:
        block = np.zeros((rate * 10, channels), np.int16)
        for _ in range(seconds // 10):
            file.write(block)
    return out.getvalue()


def without_length(flac: bytes) -> bytes:
    """``flac`` with STREAMINFO's total sample count zeroed: "length unknown"."""
    assert flac[:4] == b"fLaC"
    data = bytearray(flac)
    data[21] &= 0xF0  # 36 bits from byte 21 (4 + 4 bytes of headers, 13 into STREAMINFO)
    data[22:26] = bytes(4)
    return bytes(data)


def decoded_peak(data: bytes, **limit) -> tuple[InvalidArgument, int]:
    tracemalloc.start()
    try:
        with pytest.raises(InvalidArgument) as caught:
            decode_container(data, **limit)
        return caught.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = silent_flac()
    assert len(data) < 200_000  # 610 s of 48 kHz stereo: 234 MB as float32
    return data


FULL_SIGNAL_BYTES = 610 * 48_000 * 2 * 4


def test_a_long_file_is_refused_from_its_header_without_decoding(bomb):
    error, peak = decoded_peak(bomb, max_seconds=60, limit="TTS_MAX_REFERENCE_SECONDS")
    assert error.message == (
        "the file is 610.0 s long; the limit is 60 s (TTS_MAX_REFERENCE_SECONDS)"
    )
    assert peak < 1_000_000 < FULL_SIGNAL_BYTES


def test_a_file_without_a_length_is_decoded_only_up_to_the_limit(bomb):
    error, peak = decoded_peak(without_length(bomb), max_seconds=10, limit="RVC_MAX_AUDIO_SECONDS")
    assert error.message == "the file is longer than 10 s, the limit (RVC_MAX_AUDIO_SECONDS)"
    assert peak < FULL_SIGNAL_BYTES / 20  # 10 s and a block, not 610 s


def test_files_within_the_limit_decode():
    flac = silent_flac(seconds=20, rate=16_000, channels=1)
    audio = decode_container(flac, max_seconds=20, limit="RVC_MAX_AUDIO_SECONDS")
    assert (audio.frames, audio.channels, audio.sample_rate) == (320_000, 1, 16_000)
    assert decode_container(silent_flac(seconds=20)).samples.shape == (960_000, 2)


def encoded(samples: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format=fmt, subtype=subtype)
    return out.getvalue()


def wav_sizes(wav: bytes, size: int) -> bytes:
    """A 44-byte-header WAV with both sizes set to ``size``, as a stream's writer leaves them."""
    assert wav[36:40] == b"data"
    field = size.to_bytes(4, "little")
    return wav[:4] + field + wav[8:40] + field + wav[44:]


# Short files whose container gives no length, as a writer streaming to a pipe leaves
# them: name -> (bytes, frames, rate). libsndfile counts the frames of none of them
# from a header; FLAC's reader fails to seek to the end, where soundfile's read
# would go after every block.
def lengthless_files() -> dict[str, tuple[bytes, int, int]]:
    files = {}
    for seconds in (0.05, 0.3, 2.0, 5.0):  # under one block of 64k frames, and several
        mono = tone(seconds).samples
        frames = mono.shape[0]
        files[f"flac-{seconds}s"] = (
            without_length(encoded(mono, 16_000, "FLAC", "PCM_16")), frames, 16_000)
        for size in (0xFFFFFFFF, 0x7FFFFFFF):
            files[f"wav-{size:x}-{seconds}s"] = (
                wav_sizes(encoded(mono, 16_000, "WAV", "PCM_16"), size), frames, 16_000)
        files[f"ogg-vorbis-{seconds}s"] = (encoded(mono, 16_000, "OGG", "VORBIS"), frames, 16_000)
        opus = tone(seconds, rate=48_000).samples
        files[f"ogg-opus-{seconds}s"] = (encoded(opus, 48_000, "OGG", "OPUS"), opus.shape[0],
                                         48_000)
    stereo = tone(1.0, channels=2).samples
    files["flac-stereo-1.0s"] = (
        without_length(encoded(stereo, 16_000, "FLAC", "PCM_16")), 16_000, 16_000)
    return files


LENGTHLESS = lengthless_files()


@pytest.mark.parametrize("name", sorted(LENGTHLESS))
@pytest.mark.parametrize("limit", [None, 30.0])
def test_short_files_without_a_length_decode_whole(name, limit):
    data, frames, rate = LENGTHLESS[name]
    audio = decode_container(data, max_seconds=limit, limit="TTS_MAX_REFERENCE_SECONDS")
    assert (audio.frames, audio.sample_rate) == (frames, rate), name
    assert np.isfinite(audio.samples).all() and np.abs(audio.samples).max() > 0.1


def test_a_flac_without_a_length_decodes_to_the_same_samples():
    mono = tone(2.0).samples
    flac = encoded(mono, 16_000, "FLAC", "PCM_16")
    whole = decode_container(flac).samples
    np.testing.assert_array_equal(decode_container(without_length(flac)).samples, whole)
    np.testing.assert_allclose(whole, mono, atol=1 / 32_768)


def test_a_flac_without_a_length_past_the_limit_is_refused():
    flac = without_length(silent_flac(seconds=20, rate=16_000, channels=1))
    with pytest.raises(InvalidArgument) as caught:
        decode_container(flac, max_seconds=5, limit="TTS_MAX_REFERENCE_SECONDS")
    assert caught.value.message == "the file is longer than 5 s, the limit (TTS_MAX_REFERENCE_SECONDS)"
    # Exactly at the limit is within it.
    audio = decode_container(flac, max_seconds=20, limit="TTS_MAX_REFERENCE_SECONDS")
    assert audio.frames == 320_000
