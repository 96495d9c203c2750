"""Every field docs/api.md documents for the old server's routes, honoured through the edge.

The routes and their fields are read from the doc itself (the table of "The old
server's HTTP API", the **Fields.** paragraph and the old defaults), so a field
added there without a check here fails ``test_every_documented_field_has_a_check``.
Each check sends a valid value through the real edge and shows the answer
reflects it: a rate asked for is the rate in the header and the WAV, a pitch
shift or an f0 method changes the converted audio, a voice or model chosen is
the one that speaks, and so on. A field a route does not use is ignored, as the
old server ignored it: the answer is the one without it, sample for sample.

Speech is deterministic where it is compared: Spark TTS with a seed (the generated
``demo-spark`` profile), and RVC, whose noise is seeded. Piper, as Triton serves it,
samples noise on every call, so it is used only where no audio is compared.
``/synthesize/stream`` and ``/synthesize/sse`` are checked against ``/synthesize``:
with the same fields they must carry the same samples, which honour the field.

Where the generated models cannot show a field's effect, the check says so and shows
what it can: ``protect`` changes nothing on speech (the unvoiced frames it protects
are filled in before it looks), so on the speech routes its value is shown to reach
RVC and ``/rvc`` shows its effect on unvoiced audio; crepe's full model is left out
of the f0 methods compared (the slowest by far, and crepe-tiny's code).
"""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
TIMEOUT = 120

S, M, E, T, R = "/synthesize", "/synthesize/stream", "/synthesize/sse", "/tts", "/rvc"
SYNTHESIS = (S, M, E)

# --- what the doc says ------------------------------------------------------------------


def _section() -> str:
    text = API_DOC.read_text()
    start = text.index("## The old server's HTTP API")
    return text[start:text.index("\n## ", start + 1)]


def _plain(text: str) -> str:
    """``text`` without its parenthesised asides (which hold values and examples)."""
    while True:
        shorter = re.sub(r"\([^()]*\)", "", text)
        if shorter == text:
            return text
        text = shorter


def _names(text: str) -> list[str]:
    return list(dict.fromkeys(re.findall(r"`([^`]+)`", text)))


def _paragraph(title: str) -> str:
    section = _section()
    start = section.index(f"**{title}")
    end = section.find("\n\n", start)
    return " ".join(section[start:end if end > 0 else None].split())  # one line


def doc_rvc_fields() -> list[str]:
    """The RVC fields, from the old defaults: `pitch_shift` 0, `f0_method` `rmvpe`, ..."""
    para = _paragraph("Defaults")
    return list(dict.fromkeys(re.findall(r"`(\w+)` (?:`[\w-]+`|-?\d[\d.]*)", para)))


def doc_our_fields() -> list[str]:
    """The fields every route takes beyond the old ones ("and ours: ...")."""
    para = _paragraph("Fields.")
    ours = para[para.index("and ours:"):para.index("Any other name")]
    return _names(_plain(ours))


def doc_formats() -> list[str]:
    return _names(re.search(r"`response_format` \(([^)]*)\)", _paragraph("Fields.")).group(1))


def doc_engine_headers() -> list[str]:
    return [n for n in _names(_paragraph("Fields.")) if n.startswith("X-")]


@dataclass(frozen=True)
class DocRow:
    routes: tuple[str, ...]  # "POST /synthesize", ...
    fields: tuple[str, ...]  # the request's fields, in the old server's column
    asked: str  # that column's text before the arrow
    answer: str  # after the arrow
    beyond: str  # the column "here, beyond them"

    @property
    def headers(self) -> list[str]:
        return [n for n in _names(_plain(self.answer) + " " + self.beyond)
                if re.fullmatch(r"X-[\w-]+", n)]

    @property
    def answer_fields(self) -> list[str]:
        return _names(_plain(self.answer))

    @property
    def events(self) -> dict[str, list[str]]:
        """SSE events and their keys: `start` `{type, total_chunks, ...}`."""
        return {name: [k.split(":")[0].strip() for k in keys.split(",")]
                for name, keys in re.findall(r"`(\w+)` `\{([^}]*)\}`", self.answer)}


def doc_rows() -> list[DocRow]:
    rows, previous = [], ()
    for line in _section().splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        routes = tuple(re.findall(r"`((?:GET|POST|DELETE) /[^`]*)`", cells[0]))
        asked, _, answer = cells[1].partition("→")
        if "the same fields" in asked:
            fields = previous
        else:
            fields = tuple(_names(_plain(asked)))
            if "the RVC fields" in asked:
                fields += tuple(doc_rvc_fields())
        previous = fields
        rows.append(DocRow(routes, fields, asked, answer, cells[2]))
    return rows


def doc_row(route: str) -> DocRow:
    return next(row for row in doc_rows() if route in row.routes)


def speech_routes() -> list[str]:
    """The POST routes that take fields: every one takes every field (doc: **Fields.**)."""
    return [r.split(" ", 1)[1] for row in doc_rows() if row.fields for r in row.routes]


def every_field() -> list[str]:
    old = [f for row in doc_rows() for f in row.fields]
    return list(dict.fromkeys(old + doc_our_fields()))


def documented_pairs() -> list[tuple[str, str]]:
    return [(route, name) for route in speech_routes() for name in every_field()]


def doc_f0_methods() -> list[str]:
    return _names(re.search(r"`f0_method` \(([^)]*)\)", doc_row("POST /synthesize").asked).group(1))


# --- audio in -----------------------------------------------------------------------------


def _wav(samples: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def _warble(seconds: float, base: float, rate: int = 16_000) -> bytes:
    """A tone that jumps between two pitches: harvest's raw f0 has outliers a median removes."""
    t = np.arange(int(seconds * rate)) / rate
    hz = base + 0.3 * base * np.sign(np.sin(2 * np.pi * 7 * t))
    return _wav(0.3 * np.sin(2 * np.pi * np.cumsum(hz) / rate), rate)


CLIPS = {
    "speech": _warble(0.3, 180),  # what /rvc converts
    "other-speech": _warble(0.4, 120),
    # No pitch anywhere: the only audio whose conversion `protect` changes (see r_protect).
    "noise": _wav(0.3 * np.random.default_rng(7).standard_normal(4_800), 16_000),
    # A speaker to clone. (The tiny Spark TTS model's speaker tokens come out the same for
    # many voiced clips, the demo profile's among them; this one's differ.)
    "reference": _warble(1.0, 150),
}

# --- asking -------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: requests.structures.CaseInsensitiveDict
    body: bytes
    samples: np.ndarray | None = None  # int16 mono, every part or chunk joined
    rate: int = 0
    parts: list[dict[str, str]] = field(default_factory=list)  # multipart part headers
    events: list[dict] = field(default_factory=list)  # SSE events' data

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def _read_wav(data: bytes) -> tuple[np.ndarray, int]:
    if data[40:44] == b"\xff\xff\xff\xff":  # a streamed WAV: its length is unknown
        return np.frombuffer(data[44:], "<i2"), struct.unpack("<I", data[24:28])[0]
    samples, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    return samples, rate


def _parse(path: str, answer: Answer) -> Answer:
    if answer.status != 200:
        return answer
    pieces: list[tuple[np.ndarray, int]] = []
    if answer.content_type.startswith("multipart/mixed"):
        for chunk in answer.body.split(b"--boundary"):
            if not chunk.strip(b"-\r\n"):
                continue
            head, data = chunk.split(b"\r\n\r\n", 1)
            headers = dict(line.split(": ", 1) for line in head.decode().strip().split("\r\n"))
            answer.parts.append(headers)
            data = data[:-2]  # each part ends with CRLF
            assert len(data) == int(headers["Content-Length"]), headers
            if headers["Content-Type"] == "audio/wav":
                pieces.append(_read_wav(data))
    elif answer.content_type == "text/event-stream":
        for block in answer.body.decode().split("\r\n\r\n"):
            if block.strip():
                kind, data = block.split("\r\n", 1)
                assert kind == "event: message", block[:200]
                answer.events.append(json.loads(data.removeprefix("data: ")))
        for event in answer.events:
            if event["type"] == "chunk" and answer.events[0].get("format") == "wav":
                pieces.append(_read_wav(base64.b64decode(event["data"])))
    elif answer.content_type == "audio/wav":
        pieces.append(_read_wav(answer.body))
    if pieces:
        rates = {rate for _, rate in pieces}
        assert len(rates) == 1, rates
        answer.samples, answer.rate = np.concatenate([s for s, _ in pieces]), rates.pop()
    return answer


_ANSWERS: dict[tuple, Answer] = {}


def ask(api: str, path: str, fields: dict, files: dict[str, str] | None = None,
        accept: str | None = None, fresh: bool = False) -> Answer:
    """POST ``fields`` and ``files`` (names of CLIPS) as multipart/form-data, as the old
    clients sent them. Answers are kept: the same request is sent once unless ``fresh``."""
    files = files or {}
    key = (api, path, tuple(sorted(fields.items())), tuple(sorted(files.items())), accept)
    if key in _ANSWERS and not fresh:
        return _ANSWERS[key]
    multipart = {name: (None, str(value)) for name, value in fields.items()}
    multipart.update({name: (f"{clip}.wav", CLIPS[clip], "audio/wav")
                      for name, clip in files.items()})
    reply = requests.post(api + path, files=multipart, timeout=TIMEOUT,
                          headers={"Accept": accept} if accept else None)
    assert reply.status_code < 500, (path, fields, reply.status_code, reply.text[:300])
    answer = _parse(path, Answer(reply.status_code, reply.headers, reply.content))
    if not fresh:
        _ANSWERS[key] = answer
    return answer


def ok(answer: Answer) -> Answer:
    assert answer.status == 200, answer.body[:300]
    return answer


@pytest.fixture(scope="module")
def api(stack) -> str:
    return stack.api


# A profile of our own whose RVC voice differs from the default one's: every generated
# profile converts into the same voice, so only such a profile shows POST /rvc's `voice`.
OWN_VOICE = "zz-legacy-fields"
OWN_MODEL = "untrained-v1-nof0-32k"


def _voice_names(api: str) -> set[str]:
    return {v["name"] for v in requests.get(f"{api}/v1/voices", timeout=10).json()["voices"]}


def _await_voices(api: str, present: bool) -> None:
    """Until the gateway's rescan (every second) shows the profile, or no longer does."""
    deadline = time.monotonic() + 15
    while (OWN_VOICE in _voice_names(api)) != present:
        assert time.monotonic() < deadline, f"{OWN_VOICE} present={not present} after 15 s"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def own_voice(stack, api) -> str:
    path = stack.config.run_dir / "voices" / f"{OWN_VOICE}.json"
    path.write_text(json.dumps({"description": "test_legacy_fields", "engine": "piper",
                                "rvc_model": OWN_MODEL}))
    try:
        _await_voices(api, present=True)
        yield OWN_VOICE
    finally:
        path.unlink(missing_ok=True)
        _await_voices(api, present=False)


# --- checks: /synthesize, and the two streams against it --------------------------------------

SPEAK = {"text": "Hi.", "voice": "demo-spark", "seed": "15"}  # Spark TTS, seeded: deterministic
LONG_TEXT = "A long sentence takes far longer to say than a short one does."


def speak(api: str, path: str = S, files: dict | None = None, **changes) -> Answer:
    fields = {k: v for k, v in {**SPEAK, **changes}.items() if v is not None}
    return ok(ask(api, path, fields, files))


def same_audio(a: Answer, b: Answer) -> bool:
    return a.rate == b.rate and a.samples.shape == b.samples.shape and np.array_equal(
        a.samples, b.samples)


def assert_differs(a: Answer, b: Answer) -> None:
    assert not same_audio(a, b), "the field changed nothing in the audio"


def as_synthesize(api: str, path: str, files: dict | None = None, **changes) -> Answer:
    """``path``'s answer with ``changes``, which for the streams must be /synthesize's audio."""
    answer = speak(api, path, files, **changes)
    if path != S:
        whole = speak(api, S, files, **changes)
        assert same_audio(answer, whole), (answer.rate, whole.rate)
    return answer


def s_text(api, path):
    one = speak(api, S)
    two = as_synthesize(api, path, text="Hi. Bye now.")
    assert_differs(one, two)
    if path == S:
        assert two.headers["X-Sentences"] == "2" and one.headers["X-Sentences"] == "1"
    elif path == M:
        assert [p["X-Sentence-Text"] for p in two.parts] == ["Hi.", "Bye now."]
    else:
        assert [e["text"] for e in two.events if e["type"] == "chunk"] == ["Hi.", "Bye now."]


def s_reference_audio(api, path):
    cloned = as_synthesize(api, path, files={"reference_audio": "reference"}, voice=None)
    if path == S:
        # The clip gives the speaker: Spark TTS clones it (not demo-spark's clip).
        assert cloned.headers["X-TTS-Engine"] == "spark"
        assert_differs(cloned, speak(api, S))


def s_reference_text(api, path):
    clip = {"reference_audio": "reference"}
    told = as_synthesize(api, path, files=clip, voice=None, reference_text="A low hum.")
    assert_differs(told, speak(api, S, files=clip, voice=None))  # the transcript is in the prompt


def _rvc_field_changes(api, path, **changes):
    changed, base = as_synthesize(api, path, **changes), speak(api, S)
    if path == S:
        assert changed.headers["X-RVC-Applied"] == "true"
    assert changed.samples.shape == base.samples.shape  # the same speech, converted otherwise
    assert_differs(changed, base)


def s_pitch_shift(api, path):
    _rvc_field_changes(api, path, pitch_shift="12")


def s_f0_method(api, path):
    _rvc_field_changes(api, path, f0_method="dio")  # the profile's is pm


def s_index_rate(api, path):
    _rvc_field_changes(api, path, index_rate="0")


def s_rms_mix_rate(api, path):
    _rvc_field_changes(api, path, rms_mix_rate="1")


def s_protect(api, path):
    # The pitch track's unvoiced frames are filled in before protect looks for them
    # (services/rvc/dsp/f0.py), so on speech, where some frame is voiced, protect changes
    # nothing; POST /rvc shows its effect on unvoiced audio. Here: the value reaches RVC,
    # whose own range check answers an out-of-range one, and a valid one is served.
    converted = as_synthesize(api, path, protect="0.5")
    assert same_audio(converted, speak(api, S))
    refused = ask(api, path, {**SPEAK, "protect": "0.9"})
    assert refused.status == 400
    assert "protect 0.9 is outside 0..0.5" in json.loads(refused.body)["error"]["message"]


def s_filter_radius(api, path):
    # Only harvest's estimate is filtered (a 3-tap median from radius 3 on, the default).
    unfiltered = as_synthesize(api, path, f0_method="harvest", filter_radius="0")
    assert_differs(unfiltered, speak(api, S, f0_method="harvest"))


def s_skip_rvc(api, path):
    spoken = as_synthesize(api, path, skip_rvc="true")
    assert spoken.rate == 16_000  # Spark TTS's own rate, not the RVC voice's 48 kHz
    if path == S:
        assert spoken.headers["X-RVC-Applied"] == "false"
        assert spoken.headers["X-RVC-Time"] == "0.000"
    elif path == M:
        assert all(p["X-RVC-Time"] == "0.000" for p in spoken.parts)
    else:
        assert all(e["rvc_time"] == 0 for e in spoken.events if e["type"] == "chunk")


def s_voice(api, path):
    # Unconverted, the engine's own rate shows who spoke: Piper's voice is 22.05 kHz, Spark 16.
    # (Piper samples noise on every call: its audio is not compared.)
    piper = speak(api, path, voice="demo-piper", seed=None, skip_rvc="true")
    assert piper.rate == 22_050 and speak(api, path, skip_rvc="true").rate == 16_000
    if path == S:
        assert piper.headers["X-TTS-Engine"] == "piper"
        assert speak(api, S).headers["X-TTS-Engine"] == "spark"


def s_model(api, path):
    converted = as_synthesize(api, path, model="untrained-v1-nof0-32k")
    assert converted.rate == 32_000  # that voice's rate; the profile's voice is 48 kHz
    assert speak(api, S).rate == 48_000


def s_seed(api, path):
    if path == S:
        again = ask(api, S, SPEAK, fresh=True)
        assert same_audio(ok(again), speak(api, S))  # the same seed speaks the same
    assert_differs(as_synthesize(api, path, seed="2"), speak(api, S))


def s_sample_rate(api, path):
    answer = as_synthesize(api, path, sample_rate="16000")
    assert answer.rate == 16_000
    if path == S:
        assert answer.headers["X-Sample-Rate"] == "16000"
    elif path == E:
        assert answer.events[0]["sample_rate"] == 16_000


def s_resample_sr(api, path):
    answer = as_synthesize(api, path, resample_sr="24000")  # RVC's own output rate
    assert answer.rate == 24_000


def s_ignored(name: str, clip: str) -> Callable:
    def ignored(api, path):
        answer = speak(api, path, files={name: clip})  # a file the route does not read
        assert same_audio(answer, speak(api, S))
    return ignored


MAGIC = {
    "wav": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WAVE",
    "flac": lambda b: b[:4] == b"fLaC",
    "mp3": lambda b: b[:3] == b"ID3" or (b[0] == 0xFF and b[1] & 0xE0 == 0xE0),
    "opus": lambda b: b[:4] == b"OggS" and b"OpusHead" in b[:100],
    "aac": lambda b: b[0] == 0xFF and b[1] & 0xF6 == 0xF0,  # ADTS, MPEG-4, layer 0
    "pcm": lambda b: len(b) % 2 == 0 and len(b) > 0,
}
CONTENT_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac", "mp3": "audio/mpeg",
                 "opus": "audio/ogg", "aac": "audio/aac"}


def _decoded(fmt: str, data: bytes) -> np.ndarray | None:
    """The samples of a lossless answer, to compare with the WAV one."""
    if fmt == "pcm":
        return np.frombuffer(data, "<i2")
    if fmt in ("wav", "flac"):
        return soundfile.read(io.BytesIO(data), dtype="int16")[0]
    return None


def _same_samples(fmt: str, samples: np.ndarray, wav: Answer) -> None:
    # libsndfile's FLAC writer takes float samples to 16 bits its own way (scale, rounding):
    # a step or two apart from the WAV's.
    tolerance = 2 if fmt == "flac" else 0
    assert samples.shape == wav.samples.shape, (fmt, samples.shape, wav.samples.shape)
    assert np.abs(samples.astype(int) - wav.samples).max() <= tolerance, fmt


def _check_format(fmt: str, answer: Answer, wav: Answer) -> None:
    assert answer.content_type.startswith(CONTENT_TYPES[fmt]), (fmt, answer.content_type)
    assert MAGIC[fmt](answer.body), (fmt, answer.body[:16])
    samples = _decoded(fmt, answer.body)
    if samples is not None:
        _same_samples(fmt, samples, wav)


def s_response_format(api, path):
    # Unconverted Spark speech: the container is all that changes, and it is quick.
    for fmt in doc_formats():
        wav = speak(api, S, skip_rvc="true")
        answer = speak(api, path, skip_rvc="true", response_format=fmt)
        if path == E:
            start, chunks = answer.events[0], [e for e in answer.events if e["type"] == "chunk"]
            assert start["format"] == fmt and len(chunks) == 1
            data = base64.b64decode(chunks[0]["data"])
            assert MAGIC[fmt](data), (fmt, data[:16])
            if (samples := _decoded(fmt, data)) is not None:
                _same_samples(fmt, samples, wav)
            continue
        # /synthesize answers one file; the stream, asked a format, is one open-ended file.
        _check_format(fmt, answer, wav)
        assert answer.headers["X-Sample-Rate"] == "16000"  # a rate every format carries


SYNTHESIS_CHECKS = {
    "text": s_text, "reference_text": s_reference_text, "reference_audio": s_reference_audio,
    "pitch_shift": s_pitch_shift, "f0_method": s_f0_method, "index_rate": s_index_rate,
    "filter_radius": s_filter_radius, "rms_mix_rate": s_rms_mix_rate, "protect": s_protect,
    "skip_rvc": s_skip_rvc, "voice": s_voice, "model": s_model, "seed": s_seed,
    "sample_rate": s_sample_rate, "resample_sr": s_resample_sr,
    "response_format": s_response_format,
    "audio": s_ignored("audio", "other-speech"),  # /rvc's file
}

# --- checks: /tts -----------------------------------------------------------------------------


def say(api: str, files: dict | None = None, **changes) -> Answer:
    fields = {k: v for k, v in {**SPEAK, **changes}.items() if v is not None}
    return ok(ask(api, T, fields, files))


def t_text(api):
    # Piper, whose noise changes every call: only the length shows which text it said.
    short = ok(ask(api, T, {"text": "Hi.", "voice": "demo-piper"}))
    long = ok(ask(api, T, {"text": LONG_TEXT, "voice": "demo-piper"}))
    assert float(long.headers["X-Audio-Duration"]) > 3 * float(short.headers["X-Audio-Duration"])
    assert_differs(say(api, text="Bye."), say(api))


def t_reference_audio(api):
    cloned = say(api, files={"reference_audio": "reference"}, voice=None)
    assert cloned.headers["X-TTS-Engine"] == "spark" and cloned.rate == 16_000
    assert_differs(cloned, say(api))


def t_reference_text(api):
    clip = {"reference_audio": "reference"}
    assert_differs(say(api, files=clip, voice=None, reference_text="A low hum."),
                   say(api, files=clip, voice=None))


def t_voice(api):
    assert say(api).headers["X-TTS-Engine"] == "spark"
    piper = ok(ask(api, T, {"text": "Hi.", "voice": "demo-piper"}))
    assert piper.headers["X-TTS-Engine"] == "piper" and piper.rate == 22_050


def t_seed(api):
    assert same_audio(ok(ask(api, T, SPEAK, fresh=True)), say(api))
    assert_differs(say(api, seed="2"), say(api))


def t_sample_rate(api):
    answer = say(api, sample_rate="8000")
    assert answer.rate == 8_000 and answer.headers["X-Sample-Rate"] == "8000"
    assert answer.samples.shape[0] == pytest.approx(say(api).samples.shape[0] / 2, abs=2)


def t_response_format(api):
    for fmt in doc_formats():
        answer = say(api, response_format=fmt)
        _check_format(fmt, answer, say(api))
        assert answer.headers["X-Sample-Rate"] == "16000"


def t_ignored(name: str, value) -> Callable:
    def ignored(api):
        if name == "audio":
            answer = say(api, files={name: value})
        else:
            answer = say(api, **{name: value})
        assert same_audio(answer, say(api))
        assert answer.headers["X-TTS-Engine"] == "spark"
    return ignored


TTS_CHECKS = {
    "text": t_text, "reference_text": t_reference_text, "reference_audio": t_reference_audio,
    "voice": t_voice, "seed": t_seed, "sample_rate": t_sample_rate,
    "response_format": t_response_format,
    # /tts is the TTS stage alone: the RVC fields and the file /rvc converts change nothing.
    **{name: t_ignored(name, value) for name, value in (
        ("model", "untrained-v1-nof0-32k"), ("resample_sr", "24000"), ("pitch_shift", "12"),
        ("f0_method", "harvest"), ("index_rate", "0"), ("filter_radius", "0"),
        ("rms_mix_rate", "1"), ("protect", "0.5"), ("skip_rvc", "true"),
        ("audio", "other-speech"))},
}

# --- checks: /rvc -----------------------------------------------------------------------------


def convert(api: str, clip: str = "speech", **fields) -> Answer:
    return ok(ask(api, R, fields, {"audio": clip}))


def r_audio(api):
    one, other = convert(api), convert(api, "other-speech")
    assert one.rate == other.rate == 48_000  # the default profile's RVC voice
    assert one.samples.shape[0] == pytest.approx(0.3 * 48_000, abs=0.011 * 48_000)
    assert other.samples.shape[0] == pytest.approx(0.4 * 48_000, abs=0.011 * 48_000)


def r_changes(name: str, value: str) -> Callable:
    def changes(api):
        changed, base = convert(api, **{name: value}), convert(api)
        assert changed.samples.shape == base.samples.shape
        assert_differs(changed, base)
    return changes


def r_f0_method(api):
    # Every method but crepe's full model, which runs the same code as crepe-tiny with the
    # larger network: 15 to 60 s for this 0.3 s clip on two busy CPUs, more than all the rest.
    methods = [method for method in doc_f0_methods() if method != "crepe"]
    outputs = {method: convert(api, f0_method=method) for method in methods}
    assert same_audio(outputs["pm"], convert(api))  # the default profile's method
    for a, first in outputs.items():
        for b, second in outputs.items():
            if a < b:
                assert not same_audio(first, second), (a, b)


def r_protect(api):
    # Audio without a voiced frame (pm finds none in noise): protect keeps more of its raw
    # features; 0.5, the top of the range, turns that off.
    assert_differs(convert(api, "noise", protect="0.5"), convert(api, "noise"))
    assert_differs(convert(api, "noise", protect="0"), convert(api, "noise"))


def r_filter_radius(api):
    assert_differs(convert(api, f0_method="harvest", filter_radius="0"),
                   convert(api, f0_method="harvest"))


def r_voice(api, own_voice):
    answer = convert(api, voice=own_voice)
    assert answer.rate == 32_000  # the profile's RVC voice, not the default profile's
    assert same_audio(answer, convert(api, model=OWN_MODEL))


def r_model(api):
    answer = convert(api, model="untrained-v1-f0-40k")
    assert answer.rate == 40_000 and answer.headers["X-Sample-Rate"] == "40000"


def r_sample_rate(api):
    answer = convert(api, sample_rate="16000")
    assert answer.rate == 16_000 and answer.headers["X-Sample-Rate"] == "16000"


def r_resample_sr(api):
    answer = convert(api, resample_sr="24000")
    assert answer.rate == 24_000 and answer.headers["X-Sample-Rate"] == "24000"


def r_response_format(api):
    for fmt in doc_formats():
        answer = convert(api, response_format=fmt)
        _check_format(fmt, answer, convert(api))
        assert answer.headers["X-Sample-Rate"] == "48000"


def r_ignored(name: str, value) -> Callable:
    def ignored(api):
        if name == "reference_audio":
            answer = ok(ask(api, R, {}, {"audio": "speech", name: value}))
        else:
            answer = convert(api, **{name: value})
        assert same_audio(answer, convert(api))
    return ignored


RVC_CHECKS = {
    "audio": r_audio, "f0_method": r_f0_method, "filter_radius": r_filter_radius,
    "protect": r_protect,
    "voice": r_voice, "model": r_model, "sample_rate": r_sample_rate,
    "resample_sr": r_resample_sr, "response_format": r_response_format,
    **{name: r_changes(name, value) for name, value in (
        ("pitch_shift", "12"), ("index_rate", "0"), ("rms_mix_rate", "1"))},
    # Fields of the speech routes: /rvc converts the file it is given, with its own noise seed.
    **{name: r_ignored(name, value) for name, value in (
        ("text", "Hello."), ("reference_text", "A low hum."), ("reference_audio", "reference"),
        ("skip_rvc", "true"), ("seed", "5"))},
}

CHECKS: dict[tuple[str, str], Callable] = {
    **{(path, name): check for path in SYNTHESIS for name, check in SYNTHESIS_CHECKS.items()},
    **{(T, name): check for name, check in TTS_CHECKS.items()},
    **{(R, name): check for name, check in RVC_CHECKS.items()},
}
IGNORED = {pair for pair, check in CHECKS.items() if check.__name__ == "ignored"}

# --- the doc, against this file ----------------------------------------------------------------


def test_every_documented_field_has_a_check():
    documented = set(documented_pairs())
    assert len(documented) >= 5 * 17, sorted(documented)  # the doc was read, not missed
    assert set(CHECKS) == documented, (
        f"documented without a check: {sorted(documented - set(CHECKS))}; "
        f"checked but not documented: {sorted(set(CHECKS) - documented)}")
    for path in speech_routes():
        own = set(doc_row(f"POST {path}").fields) | set(doc_our_fields())
        # A field the doc gives a route is used there, not merely ignored (ours excepted:
        # /tts has no RVC voice to take `model` or `resample_sr`, /rvc speaks nothing to seed).
        wrongly_ignored = {n for p, n in IGNORED if p == path} & (own - set(doc_our_fields()))
        assert not wrongly_ignored, (path, wrongly_ignored)


def test_the_doc_lists_what_these_checks_assume():
    assert set(doc_formats()) == set(MAGIC) == set(CONTENT_TYPES)
    assert doc_f0_methods() == ["rmvpe", "crepe", "crepe-tiny", "harvest", "dio", "pm"]
    assert doc_rvc_fields() == ["pitch_shift", "f0_method", "index_rate", "filter_radius",
                                "rms_mix_rate", "protect"]
    assert doc_engine_headers() == ["X-TTS-Engine", "X-TTS-Notes"]
    assert {r for row in doc_rows() for r in row.routes} == {
        "GET /health", "GET /status", "GET /config", "POST /config",
        "POST /config/reference-audio", "DELETE /config/reference-audio", *(
            f"POST {p}" for p in (S, M, E, T, R))}


@pytest.mark.parametrize(("path", "name"), documented_pairs(),
                         ids=[f"{path}:{name}" for path, name in documented_pairs()])
def test_field(api, own_voice, path, name):
    check = CHECKS.get((path, name))
    assert check is not None, f"{name} on {path} is documented but has no check"
    if path in SYNTHESIS:
        check(api, path)
    elif check is r_voice:
        check(api, own_voice)
    else:
        check(api)


# --- what every answer carries --------------------------------------------------------------


@pytest.mark.parametrize("path", [S, T, R])
def test_documented_headers(api, path):
    answer = convert(api) if path == R else speak(api, path)
    expected = doc_row(f"POST {path}").headers
    if path != R:
        expected += ["X-TTS-Engine"]
    missing = [h for h in expected if h not in answer.headers]
    assert not missing, (path, missing, dict(answer.headers))


def test_the_stream_parts_carry_the_documented_headers(api):
    row = doc_row(f"POST {M}")
    documented = [n for n in _names(_plain(row.answer)) if re.fullmatch(r"[A-Z][\w]*(-[\w]+)+", n)]
    assert {"Content-Type", "X-Sentence-Index", "Content-Length"} <= set(documented)
    answer = speak(api, M, text="Hi. Bye now.")
    assert [p["X-Sentence-Index"] for p in answer.parts] == ["0", "1"]
    for part in answer.parts:
        assert list(part) == documented, part  # in the old server's order
        assert float(part["X-TTS-Time"]) > 0 and float(part["X-RVC-Time"]) > 0


def test_the_sse_events_carry_the_documented_keys(api):
    events = doc_row(f"POST {E}").events
    assert set(events) == {"start", "chunk", "error", "end"}
    answer = speak(api, E, text="Hi. Bye now.")
    kinds = [e["type"] for e in answer.events]
    assert kinds == ["start", "chunk", "chunk", "end"]
    for event in answer.events:
        assert sorted(event) == sorted(events[event["type"]]), event
    start = answer.events[0]
    assert start["total_chunks"] == 2 and start["format"] == "wav"
    assert start["sample_rate"] == 48_000


def test_asked_for_audio_the_stream_is_one_file(api):
    assert "`Accept`" in doc_row(f"POST {M}").beyond
    answer = ok(ask(api, M, SPEAK, accept="audio/wav"))
    assert answer.content_type == "audio/wav" and answer.body[40:44] == b"\xff\xff\xff\xff"
    samples = np.frombuffer(answer.body[44:], "<i2")
    assert np.array_equal(samples, speak(api, S).samples)


@pytest.mark.parametrize("path", [M, E])
def test_the_streams_carry_the_engine_header(api, path):
    assert speak(api, path).headers.get("X-TTS-Engine") == "spark"


def test_notes_say_what_the_engine_ignored(api):
    assert "X-TTS-Notes" in doc_engine_headers()
    # A clip with a Piper profile: Piper speaks, and says it ignored the clip.
    answer = ok(ask(api, T, {"text": "Hi.", "voice": "demo-piper"},
                    {"reference_audio": "reference"}))
    assert answer.headers["X-TTS-Engine"] == "piper" and answer.headers["X-TTS-Notes"]
    assert "X-TTS-Notes" not in say(api).headers


# --- the routes without fields -------------------------------------------------------------------

HEALTH_FIELDS = ["healthy", "status", "tts_ready", "rvc_ready", "message"]
HEALTH_STATUSES = ["ready", "degraded", "error"]
STATUS_FIELDS = ["running", "tts_ready", "tts_model", "triton_server", "rvc_ready", "rvc_model",
                 "rvc_workers", "rvc_workers_alive", "total_requests", "successful_requests",
                 "failed_requests", "uptime"]
CONFIG_FIELDS = ["has_reference_audio", "reference_audio_duration", "reference_text",
                 "pitch_shift", "f0_method", "index_rate", "filter_radius", "rms_mix_rate",
                 "protect"]


@pytest.mark.parametrize(("route", "documented"), [
    ("GET /health", HEALTH_FIELDS + HEALTH_STATUSES),
    ("GET /status", STATUS_FIELDS),
    ("GET /config", CONFIG_FIELDS),
])
def test_the_answer_fields_listed_here_are_the_docs(route, documented):
    assert sorted(doc_row(route).answer_fields) == sorted(documented)


def test_health(api):
    body = requests.get(f"{api}/health", timeout=30).json()
    assert all(name in body for name in HEALTH_FIELDS), body
    assert body["healthy"] is True and body["tts_ready"] is True and body["rvc_ready"] is True
    assert body["status"] == "ready" and body["message"] == "All services ready"
    assert body["serving_status"] == "SERVING"
    assert {d["name"] for d in body["dependencies"]} == {"tts", "rvc"}


def test_status(api):
    before = requests.get(f"{api}/status", timeout=30).json()
    ok(ask(api, T, {**SPEAK, "text": "Counted."}, fresh=True))  # a request that makes speech
    after = requests.get(f"{api}/status", timeout=30).json()
    for body in (before, after):
        assert all(name in body for name in STATUS_FIELDS), sorted(body)
        assert body["running"] is True and body["tts_ready"] is True and body["rvc_ready"] is True
        assert body["tts_model"] == "piper"  # the stack's default engine without Spark weights
        assert re.fullmatch(r"127\.0\.0\.1:\d+", body["triton_server"])
        assert body["rvc_model"] == "untrained-v2-f0-48k"  # the default profile's voice
        assert 1 <= body["rvc_workers_alive"] <= body["rvc_workers"]
        assert body["total_requests"] == body["successful_requests"] + body["failed_requests"]
    assert after["total_requests"] >= before["total_requests"] + 1
    assert after["successful_requests"] >= before["successful_requests"] + 1
    assert after["uptime"] > before["uptime"] > 0
    ours = requests.get(f"{api}/v1/status", timeout=30).json()
    assert set(ours) == set(after)  # the same answer as GET /v1/status


def test_config(api):
    body = requests.get(f"{api}/config", timeout=30).json()
    # The default profile, demo (Piper, no clip), converting with pm; the old defaults beside.
    assert body == {
        "has_reference_audio": False, "reference_audio_duration": None, "reference_text": "",
        "pitch_shift": 0, "f0_method": "pm", "index_rate": 0.75, "filter_radius": 3,
        "rms_mix_rate": 0, "protect": 0.33, "voice": "demo",
    }


@pytest.mark.parametrize(("method", "path", "files"), [
    ("POST", "/config", {"reference_text": (None, "Hi."), "pitch_shift": (None, "2"),
                         "f0_method": (None, "pm"), "index_rate": (None, "0.5")}),
    ("POST", "/config/reference-audio",
     {"reference_audio": ("ref.wav", CLIPS["reference"], "audio/wav")}),
    ("DELETE", "/config/reference-audio", None),
])
def test_config_writes_are_501_with_the_old_detail(api, method, path, files):
    assert f"`{method} {path}`" in _section() and "501 `UNIMPLEMENTED`" in _section()
    reply = requests.request(method, api + path, files=files, timeout=30)
    assert reply.status_code == 501
    body = reply.json()
    assert body["error"]["status"] == "UNIMPLEMENTED" and body["error"]["code"] == 501
    assert body["detail"] == body["error"]["message"] and "voice of your own" in body["detail"]
    # Nothing changed: GET /config still shows the default profile's settings.
    assert requests.get(f"{api}/config", timeout=30).json()["pitch_shift"] == 0
