"""Piper synthesis for the ``piper`` model, free of Triton: a request's inputs in, one
response per sentence out, or the catalogue of voices.

The model (triton/model_repo/piper/1/model.py) is a shell: it hands over the
request's inputs (triton_serving.values.Inputs), ``send`` (one Triton response of a
``Response``) and ``is_cancelled``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from piper_serving.voices import PiperVoices, UnknownVoice, synthesis_config
from triton_serving.errors import ModelError
from triton_serving.values import Inputs, text


@dataclass(frozen=True)
class Response:
    audio: np.ndarray               # float32 samples at sample_rate
    sample_rate: int
    voice: str
    final: bool
    voices: list[str] | None = None  # the catalogue: in a listing's response only


class PiperSynthesis:
    """Answers requests with ``voices``; one instance serves them all, from any thread."""

    def __init__(self, voices: PiperVoices) -> None:
        self.voices = voices

    def answer(
        self, inputs: Inputs, send: Callable[[Response], None], is_cancelled: Callable[[], bool]
    ) -> None:
        listing = inputs.optional("list_voices")
        if listing is not None and listing.size and bool(listing.reshape(-1)[0]):
            self.list(send)
        else:
            self.synthesize(inputs, send, is_cancelled)

    def list(self, send: Callable[[Response], None]) -> None:
        """The voices' names and the default voice's, in one final response."""
        send(Response(np.zeros(0, np.float32), 0, self.voices.default_name(), final=True,
                      voices=self.voices.names()))

    def synthesize(
        self, inputs: Inputs, send: Callable[[Response], None], is_cancelled: Callable[[], bool]
    ) -> None:
        """One response per spoken sentence, then an empty final one. ``is_cancelled`` is
        asked before each sentence: the client may leave between any two."""
        body = text(inputs.required("text")).strip()
        if not body:
            raise ModelError("INVALID_ARGUMENT", "text is empty")
        try:
            name = self.voices.resolve(inputs.text("voice"))
            voice = self.voices.get(name)
        except UnknownVoice as exc:
            raise ModelError("NOT_FOUND", str(exc)) from None
        try:
            config = synthesis_config(
                inputs.scalar("speaker", None),
                inputs.scalar("length_scale", None),
                voice.config.num_speakers,
            )
        except ValueError as exc:
            raise ModelError("INVALID_ARGUMENT", str(exc)) from None
        rate = voice.config.sample_rate

        sentences = iter(voice.synthesize(body, config))
        spoken = 0
        while True:
            if is_cancelled():
                raise ModelError("CANCELLED", "the client cancelled the request")
            chunk = next(sentences, None)
            if chunk is None:
                break
            if chunk.audio_float_array.size:
                send(Response(chunk.audio_float_array.astype(np.float32), rate, name, final=False))
                spoken += 1
        if not spoken:
            raise ModelError("INVALID_ARGUMENT", "the text has nothing to speak")
        send(Response(np.zeros(0, np.float32), rate, name, final=True))
