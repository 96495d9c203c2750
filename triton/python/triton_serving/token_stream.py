"""The ``llm`` model's work for one request, free of Triton: the prompt's audio tokens
from the engine, sent on in groups, until the end, a cancel or a failure.

The model (triton/model_repo/llm/1/model.py) is a shell that hands over the engine's
``generate`` (triton_serving.vllm_client.VllmLlm.generate), the cancel flags
spark_tts raises (triton_serving.cancellation), and per request its inputs,
``is_cancelled`` and a ``send(kinds, indexes)`` that makes one response of a group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from spark_tts.llm_tokens import AudioToken
from spark_tts.sampling import SamplingConfig
from triton_serving.llm_io import KINDS, sampling_from, token_group
from triton_serving.values import Inputs, text

Generate = Callable[
    [str, SamplingConfig, Callable[[], bool], Callable[[], bool]], Iterator[AudioToken]
]


class Flags(Protocol):
    def is_set(self, request_id: str) -> bool: ...

    def clear(self, request_id: str) -> None: ...


class TokenStream:
    """Streams requests' tokens; one instance serves them all, each on its own thread."""

    def __init__(
        self, generate: Generate, flags: Flags, log: Callable[[str], None] = lambda message: None
    ) -> None:
        self.generate = generate
        self.flags = flags
        self.log = log

    def answer(
        self,
        flag: str,
        inputs: Inputs,
        is_cancelled: Callable[[], bool],
        send: Callable[[list[int], list[int]], None],
    ) -> None:
        """Send the tokens of the request whose cancel flag is named ``flag`` (its
        request id), ``token_group`` of them a response (the last may hold fewer).
        A cancelled request ends without its last group; every request, however it
        ends, is logged and its flag cleared."""
        group = token_group(inputs)
        outcome, produced, pending = "failed", 0, []

        def called_off() -> bool:  # spark_tts's flag: safe from the client's watcher
            return self.flags.is_set(flag)

        def cancelled() -> bool:  # asked on this request's own thread only
            return is_cancelled() or called_off()

        def flush() -> None:
            send([KINDS[t.kind] for t in pending], [t.index for t in pending])
            pending.clear()

        try:
            prompt = text(inputs.required("prompt"))
            for token in self.generate(prompt, sampling_from(inputs), cancelled, called_off):
                produced += 1
                pending.append(token)
                if len(pending) >= group:
                    flush()
            if cancelled():
                outcome = "cancelled"
            else:
                if pending:
                    flush()
                outcome = "finished"
        finally:
            self.log(f"llm request {flag} {outcome} after {produced} tokens")
            self.flags.clear(flag)
