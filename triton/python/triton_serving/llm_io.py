"""The ``llm`` model's interface, whatever engine answers it: the sampling a
request asks for, and how its tokens leave (kind codes, responses of a group).
Free of Triton: a request's inputs come as triton_serving.values.Inputs."""

from __future__ import annotations

from spark_tts.sampling import SamplingConfig, seed_from_int64
from triton_serving.values import Inputs

KINDS = {"semantic": 0, "global": 1}
# Tokens per response at most. Each response is a message between Triton's
# Python stubs: grouping cuts that traffic (and its per-token cost) by the
# group size, for at most group - 1 tokens of delay.
MAX_GROUP = 64


def sampling_from(inputs: Inputs) -> SamplingConfig:
    defaults = SamplingConfig()
    return SamplingConfig(
        temperature=float(inputs.scalar("temperature", defaults.temperature)),
        top_k=int(inputs.scalar("top_k", defaults.top_k)),
        top_p=float(inputs.scalar("top_p", defaults.top_p)),
        max_tokens=int(inputs.scalar("max_tokens", defaults.max_tokens)),
        seed=seed_from_int64(inputs.scalar("seed", None)),
    )


def token_group(inputs: Inputs) -> int:
    """Tokens per response the caller asked for (``token_group``, default 1), within 1..MAX_GROUP."""
    return max(1, min(int(inputs.scalar("token_group", 1)), MAX_GROUP))
