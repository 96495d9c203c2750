"""Choosing the next token from logits: temperature, top-k, top-p."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def seed_from_int64(value: int | None) -> int | None:
    """The request's seed, a uint64, from Triton's INT64 ``seed`` tensor; None without one.

    The TTS service sends the seed's 64 bits as a two's-complement int64
    (services/common/seeds.py), so 2^63..2^64-1 arrive negative and are read
    back here; ``torch.Generator.manual_seed`` takes the whole uint64 range.
    """
    return None if value is None else int(value) % 2**64


def torch_seed(seed: int, device_type: str) -> int:
    """The value to seed torch's generator on ``device_type`` with, for a uint64 ``seed``.

    CUDA's Philox generator keys on all 64 bits. The CPU's Mersenne Twister keeps
    only the low 32 (5 and 5 + 2^32 would sample alike), so there the high half is
    folded into the low one: seeds below 2^32 are left as they are, and the top
    bits still count. 2^64 seeds on 2^32 CPU streams must share some; the same
    seed always gives the same stream.
    """
    if device_type == "cpu":
        return (seed ^ (seed >> 32)) & 0xFFFFFFFF
    return seed


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
