"""next_token: temperature, top-k and top-p filtering, and seeded reproducibility."""

import math
from collections import Counter

import pytest
import torch

from spark_tts.sampling import SamplingConfig, next_token

PLAIN = SamplingConfig(temperature=1.0, top_k=0, top_p=1.0)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def draws(logits: torch.Tensor, config: SamplingConfig, count: int, seed: int = 0) -> Counter:
    generator = seeded(seed)
    return Counter(next_token(logits, config, generator) for _ in range(count))


def test_defaults_match_spark_tts():
    config = SamplingConfig()
    assert (config.temperature, config.top_k, config.top_p) == (0.8, 50, 0.95)
    assert config.seed is None


@pytest.mark.parametrize("seed", range(5))
def test_top_k_one_always_picks_the_argmax(seed):
    logits = torch.randn(1000, generator=seeded(100 + seed))
    config = SamplingConfig(temperature=5.0, top_k=1, top_p=1.0)
    picks = draws(logits, config, 20, seed)
    assert set(picks) == {int(torch.argmax(logits))}


def test_tiny_top_p_keeps_only_the_best_token():
    logits = torch.tensor([1.0, 1.1, 0.9, 1.05, 1.0])  # nearly flat
    config = SamplingConfig(temperature=1.0, top_k=0, top_p=1e-6)
    assert set(draws(logits, config, 50)) == {1}


def test_top_p_keeps_the_smallest_prefix_reaching_the_mass():
    probabilities = torch.tensor([0.15, 0.5, 0.05, 0.3])
    config = SamplingConfig(temperature=1.0, top_k=0, top_p=0.7)
    picks = draws(probabilities.log(), config, 400)
    # 0.5 alone falls short of 0.7; 0.5 + 0.3 reaches it.
    assert set(picks) == {1, 3}


def test_top_p_of_one_keeps_every_token():
    logits = torch.zeros(4)
    assert set(draws(logits, PLAIN, 200)) == {0, 1, 2, 3}


def test_tokens_outside_top_k_are_never_sampled():
    logits = torch.tensor([3.0, 0.0, 2.9, 0.0, 2.8, 2.7, 0.0, 2.85])
    config = SamplingConfig(temperature=1.0, top_k=3, top_p=1.0)
    picks = draws(logits, config, 600)
    assert set(picks) == {0, 2, 7}


def test_top_k_at_or_above_vocab_size_filters_nothing():
    logits = torch.zeros(3)
    config = SamplingConfig(temperature=1.0, top_k=3, top_p=1.0)
    assert set(draws(logits, config, 200)) == {0, 1, 2}


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_temperature_divides_the_logits(temperature):
    logits = torch.tensor([0.0, 1.0])
    config = SamplingConfig(temperature=temperature, top_k=0, top_p=1.0)
    count = 3000
    share = draws(logits, config, count)[1] / count
    expected = 1 / (1 + math.exp(-1 / temperature))
    assert share == pytest.approx(expected, abs=0.04)


@pytest.mark.parametrize("temperature", [0.0, 1e-9])
def test_zero_temperature_is_greedy(temperature):
    logits = torch.tensor([0.3, 0.31, 0.2])
    config = SamplingConfig(temperature=temperature, top_k=0, top_p=1.0)
    assert set(draws(logits, config, 30)) == {1}


def test_half_precision_logits_are_accepted():
    logits = torch.tensor([0.0, 4.0, 1.0], dtype=torch.float16)
    config = SamplingConfig(temperature=1.0, top_k=1, top_p=1.0)
    assert next_token(logits, config, seeded()) == 1


def test_seeded_generator_gives_reproducible_picks():
    logits = torch.randn(500, generator=seeded(1))
    config = SamplingConfig(temperature=1.0, top_k=100, top_p=0.95)

    def picks(seed):
        generator = seeded(seed)
        return [next_token(logits, config, generator) for _ in range(50)]

    assert picks(42) == picks(42)
    assert picks(42) != picks(43)


def test_returns_a_python_int():
    assert type(next_token(torch.zeros(8), PLAIN, None)) is int


def test_a_vanishing_top_p_still_keeps_the_best_token():
    import torch

    from spark_tts.sampling import SamplingConfig, next_token

    logits = torch.tensor([0.1, 3.0, 0.2])
    config = SamplingConfig(top_k=0, top_p=0.0, temperature=1.0)
    assert next_token(logits, config, torch.Generator().manual_seed(0)) == 1


@pytest.mark.parametrize("seed", [0, 5, 2**32 + 5, 2**63 - 1, 2**63, 2**64 - 1])
def test_every_uint64_seed_arrives_whole_and_reproduces(seed):
    """The TTS service sends a seed's 64 bits in Triton's INT64 tensor; the llm
    model reads the uint64 back and seeds its generator with all of it."""
    from spark_tts.sampling import seed_from_int64, torch_seed

    as_int64 = seed - 2**64 if seed >= 2**63 else seed
    assert seed_from_int64(as_int64) == seed
    assert seed_from_int64(None) is None
    logits = torch.linspace(0.0, 3.0, 300)

    def sequence(value):
        generator = seeded(torch_seed(value, "cpu"))
        return [next_token(logits, PLAIN, generator) for _ in range(40)]

    assert sequence(seed) == sequence(seed)
    # Every bit counts, the top ones too: torch's CPU generator alone keeps the
    # low 32 (and a 63-bit seed would lose the top one).
    for bit in (0, 31, 32, 63):
        assert sequence(seed) != sequence(seed ^ 2**bit), bit


def test_a_small_seed_seeds_the_cpu_generator_as_it_always_did():
    from spark_tts.sampling import torch_seed

    assert [torch_seed(s, "cpu") for s in (0, 7, 2**32 - 1)] == [0, 7, 2**32 - 1]
    assert torch_seed(2**64 - 1, "cuda") == 2**64 - 1  # Philox keys on all 64 bits
