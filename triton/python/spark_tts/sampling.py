"""Choosing the next token from logits: temperature, top-k, top-p."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    max_tokens: int = 3000
    seed: int | None = None


def next_token(
    logits: torch.Tensor, config: SamplingConfig, generator: torch.Generator | None
) -> int:
    """One token id sampled from a (vocab,) row of logits."""
    scores = logits.float() / max(config.temperature, 1e-5)
    if 0 < config.top_k < scores.numel():
        kth = torch.topk(scores, config.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if config.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=True)
        cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
        # Keep the smallest prefix whose mass reaches top_p (always the best token).
        drop = cumulative - torch.softmax(ordered, dim=-1) >= config.top_p
        drop[0] = False
        scores = scores.scatter(0, order[drop], float("-inf"))
    probabilities = torch.softmax(scores, dim=-1)
    return int(torch.multinomial(probabilities, 1, generator=generator).item())
