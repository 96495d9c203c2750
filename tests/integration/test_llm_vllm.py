"""The Spark LLM on a real vLLM server (its own environment, as the stack runs it):
the same greedy tokens as the transformers loop it replaced, seeds, Spark's
max_tokens, cancelling (vLLM aborts), continuous batching and prefix reuse."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from bench.legacy_llm.loop import Job, SparkLlm
from localstack import vllm
from localstack.components import vllm_spec
from localstack.config import free_ports
from spark_tts import prompts
from spark_tts.layout import LLM_DIR
from spark_tts.llm_tokens import AudioToken
from spark_tts.sampling import SamplingConfig
from spark_tts.tiny_models import write_llm
from tests.integration.stacks import REPO, supervised, vllm_metric
from triton_serving.errors import ModelError
from triton_serving.vllm_client import VllmLlm

TEXT = "The quick brown fox jumps over the lazy dog, twice."


def peaked(folder: Path) -> None:
    """Redraw the tiny LLM's weights at a larger scale: the default init's logits are
    so flat that greedy decoding repeats one token, which would compare nothing."""
    path = folder / "model.safetensors"
    weights = load_file(str(path))
    generator = torch.Generator().manual_seed(5)
    for name, value in weights.items():
        if "norm" not in name:
            scale = 0.3 if "embed" in name else 0.15
            weights[name] = torch.randn(value.shape, generator=generator) * scale
    save_file(weights, str(path), metadata={"format": "pt"})


@contextlib.contextmanager
def serving(llm_dir: Path, folder: Path):
    """vLLM as the stack runs it (its process spec: its own /tmp), on a free port, until
    ready; its log is ``folder``/vllm.log."""
    (port,) = free_ports(1)
    server = vllm.VllmServer(
        python=vllm.python_of(Path(".venv-vllm"), REPO), llm_dir=llm_dir,
        host="127.0.0.1", port=port, gpu=False,
        # The loop ran float32 on the CPU: compare like with like.
        dtype="float32",
    )
    with supervised(specs=[vllm_spec(server, folder)], logs=folder, timeout=240):
        yield server


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("peaked_llm")
    write_llm(root, seed=0)
    peaked(root / LLM_DIR)
    return root / LLM_DIR


@pytest.fixture(scope="module")
def server(llm_dir, tmp_path_factory):
    with serving(llm_dir, tmp_path_factory.mktemp("vllm")) as running:
        yield running


@pytest.fixture(scope="module")
def client(server, llm_dir) -> VllmLlm:
    return VllmLlm(server.url, llm_dir, cpu=True)


def ids(client: VllmLlm, prompt: str, **sampling) -> list[AudioToken]:
    return list(client.generate(prompt, SamplingConfig(**sampling)))


@pytest.mark.parametrize("prompt", [
    prompts.cloning_prompt(TEXT, list(range(0, 4096, 128))),
    prompts.control_prompt(TEXT, "female", "high", "low"),
    prompts.cloning_prompt(TEXT, list(range(32)), list(range(100, 160)), "A reference line."),
], ids=["clone", "control", "clone-with-transcript"])
def test_greedy_tokens_are_the_transformers_loops(client, llm_dir, prompt):
    loop = SparkLlm(llm_dir)
    greedy = SamplingConfig(top_k=1, max_tokens=120)
    before = [t for _, t in loop.generate_many([Job(prompt, greedy)]) if t is not None]
    after = list(client.generate(prompt, greedy))
    assert len(set(before)) > 10, "a greedy run that repeats itself compares nothing"
    assert after == before


def test_a_seed_reproduces_and_every_bit_of_it_counts(client):
    prompt = prompts.cloning_prompt(TEXT, list(range(32)))
    first = ids(client, prompt, max_tokens=40, seed=7)
    # The random model spends some of its budget (40 + 16) on global tokens.
    assert 20 <= [t.kind for t in first].count("semantic") <= 40
    assert ids(client, prompt, max_tokens=40, seed=7) == first
    assert ids(client, prompt, max_tokens=40, seed=8) != first
    # The CPU generator keeps 32 bits; the fold keeps the high half counting.
    assert ids(client, prompt, max_tokens=40, seed=7 + 2**32) != first
    assert ids(client, prompt, max_tokens=40, seed=2**64 - 1) != ids(
        client, prompt, max_tokens=40, seed=2**63)


@pytest.mark.parametrize("max_tokens", [1, 7, 30])
def test_max_tokens_counts_the_semantic_tokens_after_a_described_voices_globals(
        client, max_tokens):
    prompt = prompts.control_prompt(TEXT, "male")
    tokens = ids(client, prompt, max_tokens=max_tokens, seed=3)
    kinds = [t.kind for t in tokens]
    globals_at = [i for i, kind in enumerate(kinds) if kind == "global"]
    if len(globals_at) >= prompts.GLOBAL_TOKENS:
        after = kinds[globals_at[prompts.GLOBAL_TOKENS - 1] + 1:]
        assert after.count("semantic") == max_tokens
        assert kinds[-1] == "semantic", "the last counted semantic token ends it"
    else:  # the budget ran out first
        assert len(tokens) <= max_tokens + 6 * prompts.GLOBAL_TOKENS + 16


def test_cancelling_mid_stream_aborts_the_request_in_vllm(client, server):
    before = vllm_metric(server.url, "vllm:generation_tokens_total")
    seen = []
    for token in client.generate(prompts.cloning_prompt(TEXT, list(range(32))),
                                 SamplingConfig(max_tokens=3000, seed=1),
                                 cancelled=lambda: len(seen) >= 20):
        seen.append(token)
    assert len(seen) == 20
    # vLLM stops generating once the stream is closed: far fewer than 3000 tokens.
    deadline = time.monotonic() + 10
    while vllm_metric(server.url, "vllm:num_requests_running") > 0:
        assert time.monotonic() < deadline, "the cancelled request is still running"
        time.sleep(0.05)
    assert vllm_metric(server.url, "vllm:generation_tokens_total") - before < 1000


def test_a_request_joins_a_running_batch_at_once(client):
    """Continuous batching: a second stream starts while the first runs, and its
    first token comes long before the first stream ends."""
    prompt = prompts.cloning_prompt(TEXT, list(range(32)))
    events = []
    started = threading.Event()

    def long_run():
        for n, _ in enumerate(client.generate(prompt, SamplingConfig(max_tokens=600, seed=1))):
            if n == 10:
                started.set()
        events.append("long ended")

    thread = threading.Thread(target=long_run)
    thread.start()
    assert started.wait(60)
    for _ in client.generate(prompt, SamplingConfig(max_tokens=1, seed=2)):
        events.append("short's first token")
        break
    thread.join(120)
    assert events == ["short's first token", "long ended"]


def test_a_shared_transcript_prefix_hits_vllms_prefix_cache(client, server):
    transcript = "This is the reference clip's transcript, long enough to fill blocks. " * 3
    semantic = list(range(200, 300))
    hits = vllm_metric(server.url, "vllm:prefix_cache_hits_total")
    for text in ("First sentence.", "Second sentence."):
        ids(client, prompts.cloning_prompt(text, list(range(32)), semantic, transcript),
            max_tokens=2, seed=1)
    assert vllm_metric(server.url, "vllm:prefix_cache_hits_total") - hits >= 32


def test_a_prompt_longer_than_the_model_is_invalid_argument(client):
    with pytest.raises(ModelError, match="INVALID_ARGUMENT.*tokens"):
        ids(client, prompts.cloning_prompt("word " * 5000, list(range(32))), max_tokens=5)


def test_an_unreachable_server_is_unavailable(llm_dir):
    (port,) = free_ports(1)
    with pytest.raises(ModelError, match="UNAVAILABLE.*not reachable"):
        ids(VllmLlm(f"http://127.0.0.1:{port}", llm_dir, cpu=True),
            prompts.cloning_prompt(TEXT, list(range(32))), max_tokens=5)
