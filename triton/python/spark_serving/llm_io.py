"""The ``llm`` model's interface, whatever engine answers it: the sampling a
request asks for, and how its tokens leave (kind codes, responses of a group)."""

from __future__ import annotations

from spark_serving.tensors import optional, scalar
from spark_tts.sampling import SamplingConfig, seed_from_int64

KINDS = {"semantic": 0, "global": 1}
# Tokens per response at most. Each response is a message between Triton's
# Python stubs: grouping cuts that traffic (and its per-token cost) by the
# group size, for at most group - 1 tokens of delay.
MAX_GROUP = 64


def sampling_from(request) -> SamplingConfig:
    defaults = SamplingConfig()
    return SamplingConfig(
        temperature=float(scalar(optional(request, "temperature"), defaults.temperature)),
        top_k=int(scalar(optional(request, "top_k"), defaults.top_k)),
        top_p=float(scalar(optional(request, "top_p"), defaults.top_p)),
        max_tokens=int(scalar(optional(request, "max_tokens"), defaults.max_tokens)),
        seed=seed_from_int64(scalar(optional(request, "seed"), None)),
    )


def token_group(request) -> int:
    """Tokens per response the caller asked for (``token_group``, default 1), within 1..MAX_GROUP."""
    return max(1, min(int(scalar(optional(request, "token_group"), 1)), MAX_GROUP))
