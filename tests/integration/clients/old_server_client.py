"""A client of the old single-process server, written from that server's source.

The server is VSlobolinskyi/triton-spark-server, ``rvc/api/voice_api.py`` (with
``POST /synthesize`` as of the commit before 32b83f4); its users called it as
its Colab notebook and README do: ``requests`` with form fields and files,
timings read from X-* headers, the multipart stream split on its literal
boundary, Server-Sent Events read line by line from ``data:``, errors read
from FastAPI's ``{"detail": ...}``. Nothing here comes from this project: it
is what an existing client expects, for tests/integration/test_old_server_client.py
to point at our edge. ``extra`` fields (ours, e.g. ``model``) are the only addition.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import requests
import soundfile

# The old server's Form(...) defaults, as its routes declared them.
RVC_DEFAULTS = {"pitch_shift": 0, "f0_method": "rmvpe", "index_rate": 0.75, "filter_radius": 3,
                "rms_mix_rate": 0.0, "protect": 0.33}
BOUNDARY = b"--boundary"


@dataclass
class Answer:
    """A WAV answer: the decoded audio and the headers it came with."""

    response: requests.Response
    audio: object = None
    sample_rate: int = 0

    @property
    def headers(self):
        return self.response.headers


@dataclass
class Part:
    """One sentence of ``POST /synthesize/stream``'s multipart answer."""

    headers: dict[str, str]
    wav: bytes
    arrived: float
    audio: object = None
    sample_rate: int = 0


@dataclass
class Event:
    """One ``data:`` line of ``POST /synthesize/sse``, and when it arrived."""

    data: dict
    arrived: float
    raw: list[str] = field(default_factory=list)


class OldServerError(Exception):
    """A non-200 answer; ``detail`` as FastAPI's clients read it."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        try:
            self.detail = response.json().get("detail")
        except ValueError:
            self.detail = None
        super().__init__(f"{response.status_code}: {self.detail or response.text[:200]}")


def _wav(data: bytes):
    return soundfile.read(io.BytesIO(data))


class OldServerClient:
    def __init__(self, api_url: str, timeout: float = 300) -> None:
        self.api_url = api_url
        self.timeout = timeout

    def _check(self, response: requests.Response) -> requests.Response:
        if response.status_code != 200:
            raise OldServerError(response)
        return response

    # GET routes: JSON, read by field name (the notebook's cell 4.3).
    def health(self) -> dict:
        return self._check(requests.get(f"{self.api_url}/health", timeout=10)).json()

    def status(self) -> dict:
        return self._check(requests.get(f"{self.api_url}/status", timeout=10)).json()

    def get_config(self) -> dict:
        return self._check(requests.get(f"{self.api_url}/config", timeout=10)).json()

    def update_config(self, **fields) -> dict:
        return self._check(requests.post(f"{self.api_url}/config", json=fields, timeout=10)).json()

    def upload_reference_audio(self, wav: bytes, reference_text: str = "") -> dict:
        return self._check(requests.post(
            f"{self.api_url}/config/reference-audio", data={"reference_text": reference_text},
            files={"reference_audio": ("reference.wav", wav, "audio/wav")}, timeout=10,
        )).json()

    def delete_reference_audio(self) -> dict:
        return self._check(requests.delete(f"{self.api_url}/config/reference-audio", timeout=10)).json()

    # Speech routes: form fields + files, as the notebook's cells 6.x-8.x send them.
    def _form(self, text: str | None, reference_text: str | None, skip_rvc: bool | None,
              rvc: dict, extra: dict | None) -> dict:
        data = {k: v for k, v in rvc.items() if v is not None}
        if text is not None:
            data["text"] = text
        if reference_text is not None:
            data["reference_text"] = reference_text
        if skip_rvc is not None:
            data["skip_rvc"] = skip_rvc
        return {**data, **(extra or {})}

    @staticmethod
    def _files(name: str, wav: bytes | None) -> dict | None:
        return {name: (f"{name}.wav", wav, "audio/wav")} if wav is not None else None

    def synthesize(self, text: str, reference_audio: bytes | None, reference_text: str = "",
                   skip_rvc: bool = False, extra: dict | None = None, **rvc) -> Answer:
        response = self._check(requests.post(
            f"{self.api_url}/synthesize",
            data=self._form(text, reference_text, skip_rvc, {**RVC_DEFAULTS, **rvc}, extra),
            files=self._files("reference_audio", reference_audio), timeout=self.timeout,
        ))
        audio, rate = _wav(response.content)
        return Answer(response, audio, rate)

    def tts(self, text: str, reference_audio: bytes | None, reference_text: str = "",
            extra: dict | None = None) -> Answer:
        response = self._check(requests.post(
            f"{self.api_url}/tts", data=self._form(text, reference_text, None, {}, extra),
            files=self._files("reference_audio", reference_audio), timeout=self.timeout,
        ))
        audio, rate = _wav(response.content)
        return Answer(response, audio, rate)

    def rvc(self, audio: bytes, extra: dict | None = None, **rvc) -> Answer:
        response = self._check(requests.post(
            f"{self.api_url}/rvc", data=self._form(None, None, None, {**RVC_DEFAULTS, **rvc}, extra),
            files=self._files("audio", audio), timeout=self.timeout,
        ))
        audio_out, rate = _wav(response.content)
        return Answer(response, audio_out, rate)

    def synthesize_stream(self, text: str, reference_audio: bytes | None, reference_text: str = "",
                          skip_rvc: bool = False, extra: dict | None = None,
                          **rvc) -> tuple[requests.Response, Iterator[Part]]:
        """The response (its content type says ``boundary=boundary``) and its parts as they arrive.

        Parsed as a client of the old server can: each part starts with the literal
        ``--boundary``, its headers end at a blank line, ``Content-Length`` says how
        much WAV follows, then CRLF; ``--boundary--`` ends the stream.
        """
        response = self._check(requests.post(
            f"{self.api_url}/synthesize/stream",
            data=self._form(text, reference_text, skip_rvc, {**RVC_DEFAULTS, **rvc}, extra),
            files=self._files("reference_audio", reference_audio), stream=True,
            timeout=self.timeout,
        ))
        return response, self._parts(response)

    @staticmethod
    def _parts(response: requests.Response) -> Iterator[Part]:
        buffer = b""
        chunks = response.iter_content(chunk_size=None)
        done = False

        def more() -> bool:
            nonlocal buffer
            try:
                buffer += next(chunks)
                return True
            except StopIteration:
                return False

        while not done:
            while b"\r\n\r\n" not in buffer and not buffer.startswith(BOUNDARY + b"--"):
                if not more():
                    raise ValueError(f"the stream ended inside a part: {buffer[:80]!r}")
            if buffer.startswith(BOUNDARY + b"--"):
                done = True
                break
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            lines = head.decode("utf-8").split("\r\n")
            if lines[0] != BOUNDARY.decode():
                raise ValueError(f"a part must start with --boundary, not {lines[0]!r}")
            headers = dict(line.split(": ", 1) for line in lines[1:])
            length = int(headers["Content-Length"])
            while len(buffer) < length + 2:
                if not more():
                    raise ValueError("the stream ended inside a part's audio")
            wav, trailer, buffer = buffer[:length], buffer[length:length + 2], buffer[length + 2:]
            if trailer != b"\r\n":
                raise ValueError(f"a part's audio must end with CRLF, not {trailer!r}")
            audio, rate = _wav(wav)
            yield Part(headers, wav, time.monotonic(), audio, rate)

    def synthesize_sse(self, text: str, reference_audio: bytes | None = None,
                       reference_text: str | None = None, skip_rvc: bool = False,
                       extra: dict | None = None, **rvc) -> tuple[requests.Response, Iterator[Event]]:
        """The response and its events, read as the notebook's cell 6.1 reads them."""
        response = self._check(requests.post(
            f"{self.api_url}/synthesize/sse",
            data=self._form(text, reference_text, skip_rvc, rvc, extra),
            files=self._files("reference_audio", reference_audio), stream=True,
            timeout=self.timeout,
        ))

        def events() -> Iterator[Event]:
            for line in response.iter_lines():
                if line:
                    line_str = line.decode("utf-8")
                    if line_str.startswith("data:"):
                        yield Event(json.loads(line_str[5:].strip()), time.monotonic(), [line_str])

        return response, events()

    @staticmethod
    def chunk_audio(event: Event):
        """A chunk event's WAV, decoded as the notebook does."""
        return _wav(base64.b64decode(event.data["data"]))
