"""The transformers decoding loop the Spark LLM ran on before vLLM (one batch at a time,
no paged cache), kept only for `python -m bench --llm-engine transformers`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from spark_tts.llm_tokens import AudioToken, Reader, TokenTable
from spark_tts.sampling import SamplingConfig, next_token, torch_seed


@dataclass(frozen=True)
class Job:
    """One prompt to generate for, with its sampling and a way to call it off."""

    prompt: str
    sampling: SamplingConfig
    cancelled: Callable[[], bool] = lambda: False


class SparkLlm:
    def __init__(self, llm_dir: Path, device: str = "cpu", dtype: torch.dtype | None = None):
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(llm_dir))
        if dtype is None:
            dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(str(llm_dir), dtype=dtype)
        self.model.to(self.device).eval()
        self.table = TokenTable(self.tokenizer)

    def generate(
        self,
        prompt: str,
        sampling: SamplingConfig,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Iterator[AudioToken]:
        """Audio tokens as the model produces them, until a stop token,
        ``sampling.max_tokens`` semantic tokens (after the global tokens, where
        the prompt asks for them), or ``cancelled()``."""
        for _, token in self.generate_many([Job(prompt, sampling, cancelled)]):
            if token is not None:
                yield token

    @torch.inference_mode()
    def generate_many(self, jobs: Sequence[Job]) -> Iterator[tuple[int, AudioToken | None]]:
        """Generate for several prompts in one batch (left-padded, one KV cache).

        Yields ``(job index, token)`` as tokens come and ``(job index, None)``
        once when a job ends. Each job samples with its own seeded generator;
        batched arithmetic can differ from a lone run in the last bits, so a
        seed reproduces a job exactly when it runs in the same company.
        """
        live = [i for i, job in enumerate(jobs) if job.sampling.max_tokens >= 1]
        for i in set(range(len(jobs))) - set(live):
            yield i, None
        if not live:
            return
        pad = self.tokenizer.pad_token_id
        encoded = self.tokenizer(
            [jobs[i].prompt for i in live], padding=True, padding_side="left",
            return_tensors="pt",
        )
        step_input = encoded.input_ids.to(self.device)
        mask = encoded.attention_mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        generators = [self._generator(jobs[i].sampling.seed) for i in live]
        readers = [Reader(self.table, jobs[i].prompt, jobs[i].sampling.max_tokens) for i in live]
        active = [True] * len(live)
        cache = None
        while True:
            for row, i in enumerate(live):
                if active[row] and jobs[i].cancelled():
                    active[row] = False
                    yield i, None
            if not any(active):
                return
            output = self.model(
                input_ids=step_input, attention_mask=mask, position_ids=positions,
                cache=cache, use_cache=True, logits_to_keep=1,  # not one row per prompt token
            )
            cache = output.cache
            chosen = []
            for row, i in enumerate(live):
                if not active[row]:
                    chosen.append(pad)
                    continue
                token_id = next_token(output.logits[row, -1], jobs[i].sampling, generators[row])
                chosen.append(token_id)
                token = readers[row].read(token_id)
                if token is not None:
                    yield i, token
                if readers[row].done:
                    active[row] = False
                    yield i, None
            if not any(active):
                return
            step_input = torch.tensor(chosen, device=self.device).unsqueeze(1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            positions = positions[:, -1:] + 1

    def _generator(self, seed: int | None) -> torch.Generator | None:
        if seed is None:
            return None
        return torch.Generator(device=self.device).manual_seed(torch_seed(seed, self.device.type))
