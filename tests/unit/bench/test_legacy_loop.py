"""The transformers decoding loop that vLLM replaced (kept for the bench's comparison), on
the tiny random-weight Qwen2: seeding, limits, cancelling, stop tokens."""

import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from bench.legacy_llm.loop import AudioToken, SparkLlm
from spark_tts import prompts
from spark_tts.layout import LLM_DIR
from spark_tts.sampling import SamplingConfig, next_token
from spark_tts.tiny_models import write_llm

PROMPT = prompts.control_prompt("hello there, how are you today?", "female", "high", "low")
# A cloned voice's prompt carries its globals: generation is semantic tokens from the start,
# which keeps the tests of the decoding loop short.
def clone_prompt(text: str) -> str:
    return prompts.cloning_prompt(text, list(range(prompts.GLOBAL_TOKENS)))


STOP_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|end_semantic_token|>")


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_llm")
    write_llm(root, seed=0)
    return root / LLM_DIR


@pytest.fixture(scope="module")
def llm(llm_dir):
    return SparkLlm(llm_dir)


def spoken(tokens):
    """Semantic tokens after a control prompt's 32 globals: those max_tokens counts."""
    kinds = [t.kind for t in tokens]
    globals_at = [i for i, kind in enumerate(kinds) if kind == "global"]
    if len(globals_at) < prompts.GLOBAL_TOKENS:
        return 0
    return kinds[globals_at[prompts.GLOBAL_TOKENS - 1] + 1:].count("semantic")


def generate(llm, prompt=None, cancelled=None, **sampling):
    prompt = prompt or clone_prompt("hello there, how are you today?")
    config = SamplingConfig(**sampling)
    if cancelled is None:
        return list(llm.generate(prompt, config))
    return list(llm.generate(prompt, config, cancelled))


def test_same_seed_gives_the_same_tokens(llm):
    first = generate(llm, max_tokens=12, seed=7)
    assert first
    assert generate(llm, max_tokens=12, seed=7) == first


def test_different_seeds_give_different_tokens(llm):
    assert generate(llm, max_tokens=12, seed=1) != generate(llm, max_tokens=12, seed=2)


def test_tokens_are_audio_tokens_within_their_vocabularies(llm):
    tokens = generate(llm, max_tokens=20, seed=3)
    assert tokens
    assert all(isinstance(t, AudioToken) for t in tokens)
    assert {t.kind for t in tokens} <= {"semantic", "global"}
    for token in tokens:
        vocab = prompts.SEMANTIC_VOCAB if token.kind == "semantic" else prompts.GLOBAL_VOCAB
        assert 0 <= token.index < vocab


@pytest.mark.parametrize("max_tokens", [1, 5])
@pytest.mark.parametrize("seed", [4, 12])
def test_max_tokens_counts_the_semantic_tokens_after_the_globals(llm, max_tokens, seed):
    # Control mode: the 32 global tokens come first (the untrained model mixes others in);
    # a small max_tokens must not cut the voice short.
    tokens = generate(llm, prompt=PROMPT, max_tokens=max_tokens, seed=seed)
    assert [t.kind for t in tokens].count("global") >= prompts.GLOBAL_TOKENS
    assert spoken(tokens) == max_tokens
    assert tokens[-1].kind == "semantic"


def test_max_tokens_caps_the_semantic_tokens_of_a_cloned_voice(llm):
    # A cloning prompt carries its globals: every semantic token counts.
    clone = prompts.cloning_prompt("hello there.", list(range(prompts.GLOBAL_TOKENS)))
    tokens = generate(llm, prompt=clone, max_tokens=3, seed=4)
    assert sum(t.kind == "semantic" for t in tokens) == 3


def test_cancelled_stops_generation_after_n_checks(llm):
    calls = []

    def cancelled():
        calls.append(None)
        return len(calls) > 4

    tokens = generate(llm, cancelled=cancelled, max_tokens=10, seed=5)
    assert len(calls) == 5
    assert 1 <= len(tokens) <= 4
    # Up to the cancel, it is the same run as an uncancelled one.
    assert tokens == generate(llm, max_tokens=10, seed=5)[: len(tokens)]


def test_cancelled_from_the_start_yields_nothing(llm):
    assert generate(llm, cancelled=lambda: True, seed=5) == []


def audio_token(name):
    """The AudioToken a tokenizer entry stands for, if it is one."""
    for kind, parse, spell in (
        ("semantic", prompts.semantic_ids, prompts.semantic_token),
        ("global", prompts.global_ids, prompts.global_token),
    ):
        found = parse(name)
        if len(found) == 1 and spell(found[0]) == name:
            return AudioToken(kind, found[0])
    return None


def test_generation_matches_recomputing_the_whole_sequence(llm):
    """The cached, token-by-token loop must see the prompt and every earlier token."""
    config = SamplingConfig(max_tokens=8, seed=11)
    prompt = clone_prompt("hello there, how are you today?")
    tokens = list(llm.generate(prompt, config))
    assert len(tokens) >= 8

    ids = llm.tokenizer(prompt, return_tensors="pt").input_ids
    stop_ids = {llm.tokenizer.convert_tokens_to_ids(t) for t in STOP_TOKENS}
    generator = torch.Generator().manual_seed(config.seed)
    expected = []
    with torch.inference_mode():
        for _ in range(config.max_tokens + 16):
            token_id = next_token(llm.model(input_ids=ids).logits[0, -1], config, generator)
            if token_id in stop_ids:
                break
            token = audio_token(llm.tokenizer.convert_ids_to_tokens(token_id))
            if token is not None:
                expected.append(token)
            if sum(t.kind == "semantic" for t in expected) == config.max_tokens:
                break
            ids = torch.cat([ids, torch.tensor([[token_id]])], dim=1)
    assert tokens == expected


class ScriptedModel:
    """Stands in for the LLM: each step's logits favour the next scripted token."""

    def __init__(self, token_ids, vocab_size):
        self.token_ids = list(token_ids)
        self.vocab_size = vocab_size
        self.steps = 0

    def __call__(self, input_ids, cache=None, use_cache=True, **_):
        logits = torch.full((1, input_ids.shape[1], self.vocab_size), -1e4)
        logits[0, -1, self.token_ids[self.steps]] = 0.0
        self.steps += 1
        return SimpleNamespace(logits=logits, cache=("step", self.steps))


def script(llm, monkeypatch, *tokens):
    ids = llm.tokenizer.convert_tokens_to_ids(list(tokens))
    assert None not in ids
    model = ScriptedModel(ids, len(llm.tokenizer))
    monkeypatch.setattr(llm, "model", model)
    return model


@pytest.mark.parametrize("stop", STOP_TOKENS)
def test_a_stop_token_ends_generation(llm, monkeypatch, stop):
    model = script(
        llm, monkeypatch,
        prompts.global_token(9), prompts.semantic_token(4), stop, prompts.semantic_token(5),
    )
    tokens = generate(llm, top_k=1, seed=0)
    assert tokens == [AudioToken("global", 9), AudioToken("semantic", 4)]
    assert model.steps == 3


def test_stray_text_tokens_are_skipped_and_do_not_count(llm, monkeypatch):
    script(
        llm, monkeypatch,
        "<|start_semantic_token|>", prompts.semantic_token(1), "<|end_global_token|>",
        "<|task_tts|>", prompts.semantic_token(2), "<|im_end|>",
    )
    tokens = generate(llm, top_k=1, max_tokens=2, seed=0)
    assert tokens == [AudioToken("semantic", 1), AudioToken("semantic", 2)]


def test_global_tokens_do_not_count_toward_max_tokens(llm, monkeypatch):
    names = [prompts.global_token(i) for i in range(32)]
    names += [prompts.semantic_token(i) for i in range(3)] + ["<|im_end|>"]
    script(llm, monkeypatch, *names)
    tokens = generate(llm, prompt=PROMPT, top_k=1, max_tokens=2, seed=0)
    assert [t.kind for t in tokens] == ["global"] * 32 + ["semantic"] * 2


def test_a_tokenizer_lacking_an_audio_token_is_refused(llm_dir, tmp_path):
    broken = tmp_path / "LLM"
    shutil.copytree(llm_dir, broken)
    path = broken / "tokenizer.json"
    data = json.loads(path.read_text())
    missing = prompts.global_token(77)
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != missing]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"<\|bicodec_global_77\|>"):
        SparkLlm(broken)


def test_a_batch_streams_every_job_to_its_own_end(llm):
    from bench.legacy_llm.loop import Job

    jobs = [
        Job(clone_prompt("Short."), SamplingConfig(max_tokens=5, seed=1)),
        Job(clone_prompt("A rather longer sentence to pad the others."),
            SamplingConfig(max_tokens=12, seed=2)),
        Job(clone_prompt("Third."), SamplingConfig(max_tokens=8, seed=3)),
    ]
    tokens = {0: [], 1: [], 2: []}
    ended = []
    for index, token in llm.generate_many(jobs):
        assert index not in ended, "no token after a job's end"
        if token is None:
            ended.append(index)
        else:
            tokens[index].append(token)
    assert sorted(ended) == [0, 1, 2]
    for index, limit in ((0, 5), (1, 12), (2, 8)):
        assert 1 <= sum(t.kind == "semantic" for t in tokens[index]) <= limit


def test_identical_jobs_in_one_batch_generate_identical_tokens(llm):
    from bench.legacy_llm.loop import Job

    prompt = clone_prompt("Twins in one batch.")
    jobs = [Job(prompt, SamplingConfig(max_tokens=10, seed=9)) for _ in range(2)]
    streams = {0: [], 1: []}
    for index, token in llm.generate_many(jobs):
        if token is not None:
            streams[index].append(token)
    assert streams[0] == streams[1] and streams[0]


def test_cancelling_one_job_leaves_the_others_running(llm):
    from bench.legacy_llm.loop import Job

    calls = {"n": 0}

    def cancel_soon():
        calls["n"] += 1
        return calls["n"] > 3

    jobs = [
        Job(clone_prompt("Stop me."), SamplingConfig(max_tokens=50, seed=1), cancel_soon),
        Job(clone_prompt("Keep going."), SamplingConfig(max_tokens=20, seed=2)),
    ]
    tokens = {0: [], 1: []}
    for index, token in llm.generate_many(jobs):
        if token is not None:
            tokens[index].append(token)
    assert len(tokens[0]) < 5
    assert sum(t.kind == "semantic" for t in tokens[1]) == 20
