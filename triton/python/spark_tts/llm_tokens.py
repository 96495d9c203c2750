"""What the Spark LLM generates, read token by token: audio tokens, stop tokens, and
when a request has had enough.

Engine-neutral: the vLLM client (triton_serving.vllm_client) and the transformers
loop the bench compares it with (bench/legacy_llm) read the same ids the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from spark_tts import prompts

STOP_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|end_semantic_token|>")
# Room beyond the semantic tokens asked for: a described voice's globals (an untrained
# model emits them among other tokens, so several times their count) and stray text.
GLOBAL_ROOM = 6
STRAY_ROOM = 16


@dataclass(frozen=True)
class AudioToken:
    """A generated BiCodec token: ``kind`` is "semantic" or "global"."""

    kind: str
    index: int


class TokenTable:
    """The ids of a tokenizer's audio and stop tokens."""

    def __init__(self, tokenizer) -> None:
        self.audio: dict[int, AudioToken] = {}
        unknown = tokenizer.unk_token_id
        for kind, count, name in (
            ("semantic", prompts.SEMANTIC_VOCAB, prompts.semantic_token),
            ("global", prompts.GLOBAL_VOCAB, prompts.global_token),
        ):
            ids = tokenizer.convert_tokens_to_ids([name(i) for i in range(count)])
            for index, token_id in enumerate(ids):
                if token_id is None or token_id == unknown:
                    raise ValueError(f"the LLM tokenizer lacks {name(index)}")
                self.audio[token_id] = AudioToken(kind, index)
        self.stop_ids = {
            i for i in tokenizer.convert_tokens_to_ids(list(STOP_TOKENS))
            if i is not None and i != unknown
        }
        if tokenizer.eos_token_id is not None:
            self.stop_ids.add(tokenizer.eos_token_id)


def globals_needed(prompt: str) -> int:
    """Global tokens the model must generate first: a described voice's 32, else none."""
    return prompts.GLOBAL_TOKENS if prompts.TASK_CONTROLLABLE in prompt else 0


def token_budget(prompt: str, max_tokens: int) -> int:
    """Generated tokens of every kind a request may take at most."""
    return max_tokens + GLOBAL_ROOM * globals_needed(prompt) + STRAY_ROOM


class Reader:
    """One request's generated ids, in order: what each one is, and when to stop.

    ``max_tokens`` counts only the semantic tokens after the globals a described
    voice needs first, so even max_tokens=1 gives a complete voice. A stop token,
    the last counted semantic token or the whole budget ends the request.
    """

    def __init__(self, table: TokenTable, prompt: str, max_tokens: int) -> None:
        self.table = table
        self.max_tokens = max_tokens
        self.globals_needed = globals_needed(prompt)
        self.left = token_budget(prompt, max_tokens)
        self.globals_seen = 0
        self.semantic = 0
        self.done = max_tokens < 1

    def read(self, token_id: int) -> AudioToken | None:
        """The audio token ``token_id`` is (None for any other), noting whether it ends the request."""
        self.left -= 1
        token = self.table.audio.get(token_id)
        if token is not None:
            self.globals_seen += token.kind == "global"
            if token.kind == "semantic" and self.globals_seen >= self.globals_needed:
                self.semantic += 1
        if token_id in self.table.stop_ids or self.semantic >= self.max_tokens or self.left <= 0:
            self.done = True
        return token
