"""The old server's streamed answers, byte for byte: multipart/mixed and Server-Sent Events.

``POST /synthesize/stream`` answered ``multipart/mixed; boundary=boundary``, the
literal word: its clients may split the body on ``--boundary`` instead of reading
the content type, so the boundary stays that word. ``POST /synthesize/sse``
answered ``event: message`` events (sse-starlette's framing, CRLF line ends) whose
data is JSON: start, one chunk per sentence (its WAV in base64), then end, or
error when a sentence fails (the response is then reset: no end follows).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator

from services.common.errors import to_status
from services.gateway import audio_formats as formats
from services.gateway.results import Piece

BOUNDARY = "boundary"
MULTIPART_TYPE = f"multipart/mixed; boundary={BOUNDARY}"
SSE_TYPE = "text/event-stream"
PART_TEXT_CHARS = 50  # of the sentence, in a part's X-Sentence-Text
EVENT_TEXT_CHARS = 100  # of the sentence, in a chunk event's text


def wants_one_file(accept: str, response_format: str) -> bool:
    """Whether a stream request asked for one open-ended audio file, not the old multipart.

    The old server always answered multipart/mixed, so that stays the default (no
    Accept, ``*/*``, anything that does not ask for audio). A client that names an
    audio type in Accept, or gives ``response_format``, asks for audio; Accept's
    ``multipart/mixed`` wins over both.
    """
    accept = accept.lower()
    if "multipart/mixed" in accept:
        return False
    return "audio/" in accept or bool(response_format.strip())


def header_text(text: str, limit: int = PART_TEXT_CHARS) -> str:
    """The first ``limit`` characters of ``text``, on one line: a header value cannot break."""
    return " ".join(text[:limit].splitlines())


def multipart_part(content_type: str, data: bytes, index: int, text: str,
                   tts_seconds: float, rvc_seconds: float) -> bytes:
    """One sentence's audio as a part, with the old server's headers in its order."""
    head = (
        f"--{BOUNDARY}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"X-Sentence-Index: {index}\r\n"
        f"X-Sentence-Text: {header_text(text)}\r\n"
        f"X-TTS-Time: {tts_seconds:.3f}\r\n"
        f"X-RVC-Time: {rvc_seconds:.3f}\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data + b"\r\n"


MULTIPART_END = f"--{BOUNDARY}--\r\n".encode()


def _event(payload: dict) -> bytes:
    return f"event: message\r\ndata: {json.dumps(payload)}\r\n\r\n".encode()


def sse_start(total_chunks: int, sample_rate: int, fmt: str) -> bytes:
    return _event({"type": "start", "total_chunks": total_chunks, "sample_rate": sample_rate,
                   "format": fmt})


def sse_chunk(index: int, data: bytes, tts_seconds: float, rvc_seconds: float, text: str) -> bytes:
    return _event({
        "type": "chunk", "index": index, "data": base64.b64encode(data).decode("ascii"),
        "tts_time": round(tts_seconds, 3), "rvc_time": round(rvc_seconds, 3),
        "text": text[:EVENT_TEXT_CHARS],
    })


def sse_error(message: str) -> bytes:
    return _event({"type": "error", "message": message})


SSE_END = _event({"type": "end"})


async def multipart_parts(pieces: AsyncIterator[Piece], fmt: str) -> AsyncIterator[bytes]:
    """One part per sentence as it is ready; the closing delimiter with the last."""
    async with contextlib.aclosing(pieces):
        async for piece in pieces:
            data = multipart_part(
                formats.content_type(fmt), formats.encode(piece.audio, fmt), piece.index,
                piece.text, piece.tts.seconds, piece.rvc.seconds if piece.rvc else 0.0,
            )
            yield data + MULTIPART_END if piece.index == piece.count - 1 else data


async def sse_events(pieces: AsyncIterator[Piece], fmt: str) -> AsyncIterator[bytes]:
    """start (with the first sentence: its rate is the stream's), a chunk per sentence, end.

    A failure before the first sentence is the call's error status, as on every
    route. After it the status line has gone, so the old server's error event
    says what failed, and then the failure goes on to the caller, with no end
    event: the call ends with its error status (logged and counted as one), and
    an HTTP client's response is reset (services.gateway.stream_abort), so a
    client that ignores the error event still cannot take the stream for a
    complete one.
    """
    started = False
    try:
        async with contextlib.aclosing(pieces):
            async for piece in pieces:
                data = formats.encode(piece.audio, fmt)
                if not started:
                    rate = formats.encoded_rate(fmt, piece.audio.sample_rate)
                    yield sse_start(piece.count, rate, fmt)
                    started = True
                yield sse_chunk(piece.index, data, piece.tts.seconds,
                                piece.rvc.seconds if piece.rvc else 0.0, piece.text)
    except Exception as exc:
        if started:
            yield sse_error(to_status(exc)[1])
        raise
    yield SSE_END
