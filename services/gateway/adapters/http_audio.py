"""Speech as the HTTP routes answer it (the old server's and OpenAI's): encoded
files and streams in ``google.api.HttpBody``, with the X-* headers they send."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from google.api import httpbody_pb2
from voice.v1 import tts_pb2

from services.gateway import audio_formats as formats
from services.gateway.results import Piece
from services.gateway.stages import StageResult

_ENGINE_NAMES = {tts_pb2.ENGINE_SPARK: "spark", tts_pb2.ENGINE_PIPER: "piper"}


def engine_headers(result: StageResult) -> tuple[tuple[str, str], ...]:
    """X-TTS-Engine, and X-TTS-Notes (what the engine ignored), for a TTS result."""
    if result.engine not in _ENGINE_NAMES:
        return ()
    headers = (("x-tts-engine", _ENGINE_NAMES[result.engine]),)
    if result.notes:
        headers += (("x-tts-notes", "; ".join(result.notes)),)
    return headers


async def encoded_stream(
    pieces: AsyncIterator[Piece], fmt: str, context
) -> AsyncIterator[httpbody_pb2.HttpBody]:
    """Pieces of speech as one file in ``fmt``, sent as soon as the encoder yields bytes.

    Headers go out with the first sentence, so a request that fails before
    any audio still gets its error status.
    """
    encoder = None
    try:
        async with contextlib.aclosing(pieces):
            async for piece in pieces:
                if encoder is None:
                    encoder = formats.StreamEncoder(fmt, piece.audio.sample_rate)
                    await context.send_initial_metadata(
                        (("x-sample-rate", str(encoder.sample_rate)), *engine_headers(piece.tts))
                    )
                data = encoder.write(piece.audio)
                if data:
                    yield httpbody_pb2.HttpBody(content_type=encoder.content_type, data=data)
        if encoder is not None:
            tail, encoder = encoder.close(), None
            if tail:
                yield httpbody_pb2.HttpBody(content_type=formats.content_type(fmt), data=tail)
    finally:
        if encoder is not None:  # the caller left or the pipeline failed: free the codec
            encoder.close()
