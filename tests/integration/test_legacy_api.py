"""The old server's HTTP API through Envoy, called the way its clients call it."""

import io
import struct

import numpy as np
import pytest
import requests
import soundfile

FIVE = "One here. Two there. Three now! Four? And five."


def reference_wav() -> bytes:
    rate = 22_050
    t = np.arange(2 * rate) / rate
    phase = 2 * np.pi * np.cumsum(130 + 20 * np.sin(2 * np.pi * 3 * t)) / rate
    clip = 0.2 * sum(np.sin(k * phase) / k for k in range(1, 6))
    out = io.BytesIO()
    soundfile.write(out, clip, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def test_the_old_client_snippet_works_unchanged(stack, tmp_path):
    ref = tmp_path / "ref.wav"
    ref.write_bytes(reference_wav())
    with open(ref, "rb") as f:
        response = requests.post(
            f"{stack.api}/synthesize",
            data={"text": "Hello from the old client.", "reference_text": "", "pitch_shift": 0,
                  "f0_method": "rmvpe", "index_rate": 0.75},
            files={"reference_audio": ("ref.wav", f, "audio/wav")},
            timeout=300,
        )
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "audio/wav"
    out = tmp_path / "out.wav"
    out.write_bytes(response.content)
    audio, rate = soundfile.read(out)
    # The clip gives the speaker; the default profile's RVC voice converts, as the old
    # server converted everything with its one loaded voice.
    assert rate == int(response.headers["X-Sample-Rate"]) == 48_000 and audio.shape[0] > 0
    assert float(response.headers.get("X-TTS-Time", 0)) > 0
    assert float(response.headers["X-RVC-Time"]) > 0
    assert response.headers["X-RVC-Applied"] == "true"


def test_synthesize_converts_with_a_named_voice(stack):
    response = requests.post(
        f"{stack.api}/synthesize",
        data={"text": "Converted.", "model": "untrained-v1-f0-40k", "f0_method": "pm",
              "resample_sr": "24000"},
        files={"reference_audio": ("ref.wav", reference_wav(), "audio/wav")},
        timeout=300,
    )
    assert response.status_code == 200, response.text[:300]
    audio, rate = soundfile.read(io.BytesIO(response.content))
    assert rate == 24_000 and audio.shape[0] > 0
    assert float(response.headers["X-RVC-Time"]) > 0


def test_tts_and_rvc_alone_answer_wav_with_their_headers(stack):
    tts = requests.post(
        f"{stack.api}/tts", data={"text": "Just speech.", "reference_text": ""},
        files={"reference_audio": ("ref.wav", reference_wav(), "audio/wav")}, timeout=300,
    )
    assert tts.status_code == 200, tts.text[:300]
    speech, rate = soundfile.read(io.BytesIO(tts.content))
    assert rate == int(tts.headers["X-Sample-Rate"]) == 16_000
    assert float(tts.headers["X-Audio-Duration"]) == pytest.approx(speech.shape[0] / rate, abs=0.01)
    assert float(tts.headers["X-Processing-Time"]) > 0
    rvc = requests.post(
        f"{stack.api}/rvc", data={"model": "untrained-v2-nof0-40k", "pitch_shift": "2"},
        files={"audio": ("speech.wav", tts.content, "audio/wav")}, timeout=300,
    )
    assert rvc.status_code == 200, rvc.text[:300]
    converted, rate = soundfile.read(io.BytesIO(rvc.content))
    assert rate == int(rvc.headers["X-Sample-Rate"]) == 40_000
    assert abs(converted.shape[0] / rate - speech.shape[0] / 16_000) <= 0.011


def test_asked_for_audio_the_stream_is_one_open_ended_wav_growing_sentence_by_sentence(stack):
    fields = {"text": FIVE, "skip_rvc": "true", "seed": "11"}
    files = {"reference_audio": ("ref.wav", reference_wav(), "audio/wav")}
    response = requests.post(
        f"{stack.api}/synthesize/stream", data=fields, files=files, stream=True, timeout=300,
        headers={"Accept": "audio/wav"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    body = b"".join(response.iter_content(None))
    assert body[:4] == b"RIFF" and body[8:12] == b"WAVE"
    assert struct.unpack("<I", body[40:44])[0] == 0xFFFFFFFF  # length unknown while streaming
    rate = struct.unpack("<I", body[24:28])[0]
    assert rate == 16_000 and len(body) > 44
    whole = requests.post(f"{stack.api}/synthesize", data=fields, files=files, timeout=300)
    samples, _ = soundfile.read(io.BytesIO(whole.content))
    assert (len(body) - 44) // 2 == samples.shape[0]  # the stream is the whole clip, in pieces


@pytest.mark.parametrize("accept", [None, "*/*", "multipart/mixed"])
def test_by_default_the_stream_is_the_old_multipart_mixed_one_wav_per_sentence(stack, accept):
    response = requests.post(
        f"{stack.api}/synthesize/stream", data={"text": FIVE, "skip_rvc": "true"},
        files={"reference_audio": ("ref.wav", reference_wav(), "audio/wav")},
        headers={"Accept": accept}, timeout=300,  # None: requests leaves the header out
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "multipart/mixed; boundary=boundary"
    parts = [p for p in response.content.split(b"--boundary") if p.strip(b"-\r\n")]
    assert len(parts) == 5
    for index, part in enumerate(parts):
        head, wav = part.split(b"\r\n\r\n", 1)
        assert f"X-Sentence-Index: {index}".encode() in head
        assert b"X-TTS-Time: " in head
        assert f"Content-Length: {len(wav) - 2}".encode() in head
        audio, rate = soundfile.read(io.BytesIO(wav[:-2]))  # the part ends with CRLF
        assert rate == 16_000 and audio.shape[0] > 0


def test_a_response_format_asks_the_stream_for_one_file(stack):
    response = requests.post(
        f"{stack.api}/synthesize/stream",
        data={"text": "One. Two.", "skip_rvc": "true", "response_format": "flac"},
        files={"reference_audio": ("ref.wav", reference_wav(), "audio/wav")}, timeout=300,
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/flac" and response.content[:4] == b"fLaC"


@pytest.mark.parametrize(
    "data, files, status, fragment",
    [
        ({"text": "Hi.", "voice": "ghost"}, {}, 404, "voice 'ghost' is not defined"),
        ({"text": "Hi.", "f0_method": "magic"}, None, 400, "f0_method 'magic' is unknown"),
        ({"text": "Hi.", "pitch_shift": "high"}, None, 400, "pitch_shift 'high' is not a int"),
        ({"text": "Hi.", "model": "ghost"}, None, 404, "ghost"),
        ({"text": "Hi.", "skip_rcv": "true"}, None, 400, "unknown field 'skip_rcv'"),
        ({"text": "Hi."}, {"reference_audio": ("x.wav", b"not audio", "audio/wav")}, 400, "reference_audio"),
    ],
)
def test_bad_legacy_requests_get_their_status_and_a_message(stack, data, files, status, fragment):
    if files is None:
        files = {"reference_audio": ("ref.wav", reference_wav(), "audio/wav")}
    response = requests.post(f"{stack.api}/synthesize", data=data, files=files or None, timeout=120)
    assert response.status_code == status, response.text[:300]
    assert fragment in response.json()["error"]["message"]
