"""Reading the Spark LLM's generated ids (the served engine's and the bench loop's):
audio tokens, stop tokens, Spark's max_tokens and the budget."""

import pytest

from spark_tts import prompts
from spark_tts.llm_tokens import STOP_TOKENS, AudioToken, Reader, TokenTable, token_budget
from spark_tts.tiny_models import build_tokenizer

CLONE = prompts.cloning_prompt("Hello.", list(range(32)))
CONTROL = prompts.control_prompt("Hello.", "female")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def table(tokenizer):
    return TokenTable(tokenizer)


def read(table, tokenizer, prompt, max_tokens, names):
    """The tokens a reader yields for ``names``, until it says done; and how many it read."""
    reader = Reader(table, prompt, max_tokens)
    out, taken = [], 0
    for token_id in tokenizer.convert_tokens_to_ids(names):
        taken += 1
        token = reader.read(token_id)
        if token is not None:
            out.append(token)
        if reader.done:
            break
    return out, taken, reader.done


def test_every_audio_token_and_stop_token_is_known(table):
    assert len(table.audio) == prompts.SEMANTIC_VOCAB + prompts.GLOBAL_VOCAB
    assert len(table.stop_ids) == len(STOP_TOKENS)


@pytest.mark.parametrize("stop", STOP_TOKENS)
def test_a_stop_token_ends_the_request(table, tokenizer, stop):
    names = [prompts.semantic_token(4), stop, prompts.semantic_token(5)]
    assert read(table, tokenizer, CLONE, 10, names) == ([AudioToken("semantic", 4)], 2, True)


def test_stray_text_is_skipped_and_counts_only_against_the_budget(table, tokenizer):
    names = ["<|task_tts|>", prompts.semantic_token(1), "<|start_content|>",
             prompts.semantic_token(2), prompts.semantic_token(3)]
    tokens, taken, done = read(table, tokenizer, CLONE, 2, names)
    assert tokens == [AudioToken("semantic", 1), AudioToken("semantic", 2)]
    assert (taken, done) == (4, True)


def test_a_described_voices_globals_come_first_and_do_not_count(table, tokenizer):
    names = [prompts.semantic_token(0)] + [prompts.global_token(i) for i in range(32)]
    names += [prompts.semantic_token(i) for i in range(5)]
    tokens, taken, done = read(table, tokenizer, CONTROL, 3, names)
    # The semantic token before the 32nd global is passed on but not counted.
    assert [t.kind for t in tokens] == ["semantic"] + ["global"] * 32 + ["semantic"] * 3
    assert done


def test_the_budget_ends_a_request_that_never_reaches_max_tokens(table, tokenizer):
    assert token_budget(CLONE, 5) == 5 + 16
    assert token_budget(CONTROL, 5) == 5 + 6 * 32 + 16
    names = [prompts.global_token(1)] * 40
    tokens, taken, done = read(table, tokenizer, CLONE, 5, names)
    assert (len(tokens), taken, done) == (21, 21, True)


def test_nothing_is_asked_for_with_max_tokens_below_one(table):
    assert Reader(table, CLONE, 0).done


def test_a_tokenizer_lacking_an_audio_token_is_refused(tokenizer):
    class Lacking:
        unk_token_id = None
        eos_token_id = tokenizer.eos_token_id

        @staticmethod
        def convert_tokens_to_ids(names):
            ids = tokenizer.convert_tokens_to_ids(names)
            return [None if n == prompts.semantic_token(77) else i for n, i in zip(names, ids, strict=True)]

    with pytest.raises(ValueError, match=r"<\|bicodec_semantic_77\|>"):
        TokenTable(Lacking())
