"""The edge's audio encodings: whole files and streams, decoded back and measured."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import pytest
import soundfile

from services.common.audio import PcmAudio
from services.common.errors import InvalidArgument
from services.gateway import audio_formats as formats

LOSSY = ("mp3", "opus", "aac")
STREAMING = ("wav", "pcm", "mp3", "opus", "aac")
# How much longer than its input a decoded stream may be: MP3 streams go without
# the LAME header, so the encoder delay and the last frame's padding stay in.
STREAM_SLACK = {"mp3": 0.12, "opus": 0.06}
# ADTS cannot carry the encoder delay either: AAC decodes with 1024 samples of
# priming and its last frame's padding, together under two frames.
AAC_FRAME = 1024


def sine(rate: int, seconds: float, amplitude: float = 0.5, start: float = 0.0) -> PcmAudio:
    t = start + np.arange(round(seconds * rate)) / rate
    return PcmAudio((amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)


def decode(data: bytes, fmt: str, pcm_rate: int = 0) -> tuple[np.ndarray, int]:
    if fmt == "pcm":
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768, pcm_rate
    if fmt == "aac":  # libsndfile reads no AAC: FFmpeg's decoder, through PyAV
        return decode_adts(data)
    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32")
    assert samples.ndim == 1, "the output must be mono"
    return samples, rate


def decode_adts(data: bytes) -> tuple[np.ndarray, int]:
    with av.open(io.BytesIO(data), format="adts") as container:
        (stream,) = container.streams.audio
        frames = list(container.decode(stream))
    assert all(frame.layout.nb_channels == 1 for frame in frames), "the output must be mono"
    return np.concatenate([frame.to_ndarray()[0] for frame in frames]), stream.rate


def assert_duration(samples: np.ndarray, rate: int, seconds: float, fmt: str,
                    slack: float = 0.06) -> None:
    """Lossless formats keep every sample; lossy ones are within ``slack`` seconds,
    AAC within its priming and padding."""
    extra = len(samples) - round(seconds * rate)
    if fmt == "aac":
        assert 0 <= extra <= 2 * AAC_FRAME, extra
    elif fmt in LOSSY:
        assert abs(extra) / rate <= slack, extra
    else:
        assert extra == 0, extra


def level(samples: np.ndarray) -> float:
    """The peak of the middle half (lossy codecs may ring where the sine stops dead)."""
    quarter = len(samples) // 4
    return float(np.max(np.abs(samples[quarter:-quarter])))


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum)) * rate / len(samples)


@pytest.mark.parametrize(("fmt", "rate", "carried"), [
    ("wav", 40_000, 40_000), ("pcm", 40_000, 40_000), ("flac", 40_000, 40_000),
    ("opus", 40_000, 48_000), ("opus", 16_000, 16_000), ("opus", 11_025, 12_000),
    ("opus", 96_000, 48_000), ("mp3", 40_000, 44_100), ("mp3", 11_025, 11_025),
    ("mp3", 23_000, 24_000), ("mp3", 96_000, 48_000), ("aac", 40_000, 44_100),
    ("aac", 24_000, 24_000), ("aac", 11_000, 11_025), ("aac", 96_000, 48_000),
])
def test_encoded_rate_is_the_nearest_supported_rate_at_or_above(fmt, rate, carried):
    assert formats.encoded_rate(fmt, rate) == carried


@pytest.mark.parametrize("fmt", formats.FORMATS)
@pytest.mark.parametrize("rate", [16_000, 40_000])
def test_encode_round_trips_a_sine(fmt, rate):
    carried = formats.encoded_rate(fmt, rate)

    samples, decoded_rate = decode(formats.encode(sine(rate, 1.5), fmt), fmt, carried)

    assert decoded_rate == carried
    assert_duration(samples, carried, 1.5, fmt)
    assert peak_hz(samples, carried) == pytest.approx(440, abs=3)
    assert level(samples) == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("fmt", formats.FORMATS)
@pytest.mark.parametrize("rate", [16_000, 40_000])
def test_stream_sends_bytes_as_it_goes_and_adds_up_to_one_file(fmt, rate):
    encoder = formats.StreamEncoder(fmt, rate)
    carried = formats.encoded_rate(fmt, rate)
    pieces = [sine(rate, 0.6, start=0.6 * i) for i in range(4)]

    written = [encoder.write(piece) for piece in pieces]
    data = b"".join(written) + encoder.close()

    assert encoder.sample_rate == carried
    if fmt in STREAMING:
        assert all(written), f"every 0.6 s piece must yield bytes: {[len(w) for w in written]}"
    else:
        assert not any(written), "FLAC is documented to wait for close()"
    samples, decoded_rate = decode(data, fmt, carried)
    assert decoded_rate == carried
    if fmt in STREAM_SLACK:
        assert -0.01 <= len(samples) / carried - 2.4 <= STREAM_SLACK[fmt]
    else:
        assert_duration(samples, carried, 2.4, fmt)
    assert peak_hz(samples, carried) == pytest.approx(440, abs=3)


@pytest.mark.parametrize("rate", [16_000, 22_050])
def test_aac_stream_is_adts_frames_that_play_from_any_write_on(rate):
    encoder = formats.StreamEncoder("aac", rate)
    pieces = [sine(rate, 0.6, start=0.6 * i) for i in range(4)]

    written = [encoder.write(piece) for piece in pieces]
    tail = encoder.close()

    data = b"".join(written) + tail
    # One ADTS file, byte for byte what the whole clip encodes to at once...
    assert data == formats.encode(sine(rate, 2.4), "aac")
    # ...cut at frame starts (ADTS sync word 0xFFF) wherever a write ended: a listener
    # can play what has come so far.
    for end in range(1, len(written) + 1):
        prefix = b"".join(written[:end])
        assert prefix[:2] == b"\xff\xf1" and written[end - 1][:2] == b"\xff\xf1"
        samples, decoded_rate = decode(prefix, "aac")
        assert decoded_rate == rate
        assert abs(len(samples) - round(0.6 * end * rate)) <= 2 * AAC_FRAME


def test_wav_stream_starts_with_an_open_ended_header():
    first = formats.StreamEncoder("wav", 16_000).write(sine(16_000, 0.5))

    assert first[:44] == formats.wav_header(16_000, None)
    assert len(first) == 44 + 2 * 8_000


def test_stream_resamples_pieces_at_another_rate_without_seams():
    encoder = formats.StreamEncoder("pcm", 16_000)
    pieces = [sine(24_000, 0.3, start=0.3 * i) for i in range(4)] + [sine(16_000, 0.3, start=1.2)]

    data = b"".join(encoder.write(piece) for piece in pieces) + encoder.close()

    samples, _ = decode(data, "pcm")
    expected = sine(16_000, 1.5).samples
    assert abs(len(samples) - len(expected)) <= 2
    inner = slice(160, len(expected) - 160)  # soxr's ramp at the very ends
    assert np.max(np.abs(samples[inner] - expected[inner])) < 0.003  # each piece alone: ~0.006


def test_opus_stream_at_an_odd_rate_carries_the_next_opus_rate():
    encoder = formats.StreamEncoder("opus", 22_050)

    data = encoder.write(sine(22_050, 1.0)) + encoder.close()

    samples, rate = decode(data, "opus")
    assert encoder.sample_rate == rate == 24_000
    assert peak_hz(samples, rate) == pytest.approx(440, abs=3)


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_output_is_mono_mix_of_the_channels(fmt):
    left, right = sine(16_000, 1.0, amplitude=0.6).samples, sine(16_000, 1.0, amplitude=0.2).samples
    stereo = PcmAudio(np.stack([left, right], axis=1), 16_000)

    samples, _ = decode(formats.encode(stereo, fmt), fmt, 16_000)

    assert level(samples) == pytest.approx(0.4, abs=0.05)


def test_samples_beyond_full_scale_are_clipped_not_wrapped():
    loud = sine(16_000, 0.5, amplitude=1.5)

    for data in (formats.encode(loud, "pcm"), formats.StreamEncoder("pcm", 16_000).write(loud)):
        samples, _ = decode(data, "pcm")
        assert samples.max() == pytest.approx(32767 / 32768)
        assert samples.min() == pytest.approx(-32767 / 32768)
        assert np.mean(np.abs(samples) > 0.99) > 0.3  # flat tops, not wrapped sign flips


@pytest.mark.parametrize(("name", "fmt"), [("MP3", "mp3"), (" Opus ", "opus"), ("wav", "wav")])
def test_parse_format_ignores_case(name, fmt):
    assert formats.parse_format(name) == fmt


@pytest.mark.parametrize("name", ["wma", "", "ogg"])
def test_parse_format_names_the_choices(name):
    with pytest.raises(InvalidArgument) as caught:
        formats.parse_format(name)
    assert all(fmt in caught.value.message for fmt in formats.FORMATS)


def test_unknown_formats_are_refused_everywhere():
    with pytest.raises(InvalidArgument):
        formats.encode(sine(16_000, 0.1), "wma")
    with pytest.raises(InvalidArgument):
        formats.StreamEncoder("wma", 16_000)
    with pytest.raises(InvalidArgument):
        formats.content_type("wma")


@pytest.mark.parametrize("rate", [0, 8_000, 22_050, 48_000])
def test_check_sample_rate_accepts_keep_and_the_edge_range(rate):
    assert formats.check_sample_rate(rate) == rate


@pytest.mark.parametrize("rate", [-1, 7_999, 48_001, 96_000])
def test_check_sample_rate_names_the_range(rate):
    with pytest.raises(InvalidArgument, match="8000..48000"):
        formats.check_sample_rate(rate)


@pytest.mark.parametrize("rate", [0, 16_000])
def test_resample_to_zero_or_the_same_rate_returns_the_audio_itself(rate):
    audio = sine(16_000, 0.1)
    assert formats.resample(audio, rate) is audio


def test_resample_changes_the_rate_and_keeps_the_pitch():
    resampled = formats.resample(sine(16_000, 1.5), 24_000)

    assert resampled.sample_rate == 24_000
    assert len(resampled.samples) == 36_000
    assert peak_hz(resampled.samples, 24_000) == pytest.approx(440, abs=3)


@pytest.mark.parametrize(("fmt", "media"), [
    ("wav", "audio/wav"), ("pcm", "audio/pcm"), ("flac", "audio/flac"),
    ("mp3", "audio/mpeg"), ("opus", "audio/ogg; codecs=opus"), ("aac", "audio/aac"),
])
def test_content_types(fmt, media):
    encoder = formats.StreamEncoder(fmt, 16_000)
    encoder.close()
    assert formats.content_type(fmt) == encoder.content_type == media


def test_wav_header_sizes():
    closed, open_ended = formats.wav_header(22_050, 100), formats.wav_header(22_050, None)

    assert len(closed) == len(open_ended) == 44
    assert struct.unpack_from("<I", closed, 4)[0] == 136
    assert struct.unpack_from("<I", closed, 40)[0] == 100
    assert struct.unpack_from("<I", open_ended, 4)[0] == 0xFFFFFFFF
    assert struct.unpack_from("<I", open_ended, 40)[0] == 0xFFFFFFFF
    assert struct.unpack_from("<IHHIIHH", closed, 16) == (16, 1, 1, 22_050, 44_100, 2, 16)


def test_wav_bytes_is_a_pcm16_file_of_the_audio():
    audio = sine(22_050, 0.5)

    data = formats.wav_bytes(audio)

    assert data[44:] == formats.pcm16(audio)
    samples, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    assert rate == 22_050
    assert np.array_equal(samples, (audio.samples * 32767).astype(np.int16))
