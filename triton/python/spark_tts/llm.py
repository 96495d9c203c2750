"""The Spark TTS language model (Qwen2 in ``LLM/``), generating token by token."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from spark_tts import prompts
from spark_tts.sampling import SamplingConfig, next_token

_STOP_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|end_semantic_token|>")


@dataclass(frozen=True)
class AudioToken:
    """A generated BiCodec token: ``kind`` is "semantic" or "global"."""

    kind: str
    index: int


class SparkLlm:
    def __init__(self, llm_dir: Path, device: str = "cpu", dtype: torch.dtype | None = None):
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(llm_dir))
        if dtype is None:
            dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(str(llm_dir), dtype=dtype)
        self.model.to(self.device).eval()
        self._audio_tokens = self._audio_token_table()
        self._stop_ids = {
            i for i in (self.tokenizer.convert_tokens_to_ids(t) for t in _STOP_TOKENS)
            if i is not None and i != self.tokenizer.unk_token_id
        }
        if self.tokenizer.eos_token_id is not None:
            self._stop_ids.add(self.tokenizer.eos_token_id)

    def _audio_token_table(self) -> dict[int, AudioToken]:
        table = {}
        for kind, count, name in (
            ("semantic", prompts.SEMANTIC_VOCAB, prompts.semantic_token),
            ("global", prompts.GLOBAL_VOCAB, prompts.global_token),
        ):
            ids = self.tokenizer.convert_tokens_to_ids([name(i) for i in range(count)])
            for index, token_id in enumerate(ids):
                if token_id is None or token_id == self.tokenizer.unk_token_id:
                    raise ValueError(f"the LLM tokenizer lacks {name(index)}")
                table[token_id] = AudioToken(kind, index)
        return table

    @torch.inference_mode()
    def generate(
        self,
        prompt: str,
        sampling: SamplingConfig,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Iterator[AudioToken]:
        """Audio tokens as the model produces them, until a stop token,
        ``sampling.max_tokens`` semantic tokens, or ``cancelled()``."""
        if sampling.max_tokens < 1:
            return
        ids = self.tokenizer(prompt, return_tensors="pt").input_ids.to(self.device)
        generator = None
        if sampling.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(sampling.seed)
        cache = None
        step_input = ids
        semantic = 0
        # Globals (control mode) plus semantics, with room for stray text tokens.
        for _ in range(sampling.max_tokens + prompts.GLOBAL_TOKENS + 16):
            if cancelled():
                return
            output = self.model(input_ids=step_input, cache=cache, use_cache=True)
            cache = output.cache
            token_id = next_token(output.logits[0, -1], sampling, generator)
            if token_id in self._stop_ids:
                return
            token = self._audio_tokens.get(token_id)
            if token is not None:
                yield token
                if token.kind == "semantic":
                    semantic += 1
                    if semantic >= sampling.max_tokens:
                        return
            step_input = torch.tensor([[token_id]], device=self.device)
