"""Sampling seeds: the proto's ``uint64``, whole, on every route.

Every way in (gRPC, the transcoded JSON routes, the old multipart routes,
OpenAI's speech API, voice profiles) takes exactly 0..2^64-1 and words a seed
past it the same way. Triton's seed tensor is INT64, so the TTS service sends
the seed's 64 bits as a two's-complement int64 (2^63..2^64-1 travel as
negative numbers) and the llm model reads them back as the same uint64, which
``torch.Generator.manual_seed`` takes whole: every seed in the range reaches
the sampler intact, and two seeds never share a generator.
"""

from __future__ import annotations

from services.common.errors import InvalidArgument

MAX_SEED = 2**64 - 1
SEED_RANGE = "0..2^64-1"


def check_seed(seed: int, name: str = "seed") -> int:
    """``seed`` if it is in 0..2^64-1, else InvalidArgument in the one wording."""
    if not 0 <= seed <= MAX_SEED:
        raise InvalidArgument(f"{name} {seed} is outside {SEED_RANGE}")
    return seed


def as_int64(seed: int) -> int:
    """The seed's 64 bits as a signed int64 (Triton's seed tensor type)."""
    check_seed(seed)
    return seed - 2**64 if seed >= 2**63 else seed
