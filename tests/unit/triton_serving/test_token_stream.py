"""triton_serving.token_stream: the llm model's work, with the engine, the cancel
flags and Triton's responses faked."""

from __future__ import annotations

import numpy as np
import pytest

from spark_tts.llm_tokens import AudioToken
from spark_tts.sampling import SamplingConfig
from triton_serving.errors import ModelError
from triton_serving.llm_io import KINDS, MAX_GROUP
from triton_serving.token_stream import TokenStream
from triton_serving.values import Inputs

FLAG = "req-1"


def tokens(count: int) -> list[AudioToken]:
    """Globals then semantics, so that a group can hold both kinds."""
    return [AudioToken("global" if i % 3 == 0 else "semantic", 100 + i) for i in range(count)]


class Flags:
    def __init__(self) -> None:
        self.raised: set[str] = set()
        self.cleared: list[str] = []

    def is_set(self, request_id: str) -> bool:
        return request_id in self.raised

    def clear(self, request_id: str) -> None:
        self.cleared.append(request_id)
        self.raised.discard(request_id)


class Engine:
    """Stands in for VllmLlm.generate: yields ``made`` and, as vLLM's client does,
    stops when ``cancelled()`` says so (asked after each token)."""

    def __init__(self, made: list[AudioToken], fails_after: int | None = None) -> None:
        self.made = made
        self.fails_after = fails_after
        self.calls: list[tuple[str, SamplingConfig]] = []
        self.yielded = 0
        self.on_token = lambda count: None

    def __call__(self, prompt, sampling, cancelled, called_off):
        self.calls.append((prompt, sampling))
        for token in self.made:
            if self.fails_after is not None and self.yielded == self.fails_after:
                raise ModelError("UNAVAILABLE", "the LLM server broke off")
            self.yielded += 1
            yield token
            self.on_token(self.yielded)
            if cancelled():
                return


class Harness:
    def __init__(self, made: list[AudioToken], fails_after: int | None = None) -> None:
        self.engine = Engine(made, fails_after)
        self.flags = Flags()
        self.logs: list[str] = []
        self.sent: list[tuple[list[int], list[int]]] = []
        self.client_gone = False
        self.stream = TokenStream(self.engine, self.flags, self.logs.append)

    def answer(self, **inputs) -> None:
        values = {"prompt": np.array([b"<|task_tts|>hello"], np.object_)}
        values.update(inputs)
        self.stream.answer(FLAG, Inputs(values.get), lambda: self.client_gone,
                           lambda kinds, indexes: self.sent.append((kinds, indexes)))

    def sent_tokens(self) -> list[tuple[int, int]]:
        return [pair for kinds, indexes in self.sent for pair in zip(kinds, indexes, strict=True)]


def codes(made: list[AudioToken]) -> list[tuple[int, int]]:
    return [(KINDS[t.kind], t.index) for t in made]


@pytest.mark.parametrize(("count", "group", "sizes"), [
    (7, 3, [3, 3, 1]), (6, 3, [3, 3]), (4, 1, [1, 1, 1, 1]), (5, 10, [5]), (0, 4, []),
])
def test_tokens_leave_in_groups_with_their_kind_codes(count, group, sizes):
    made = tokens(count)
    harness = Harness(made)
    harness.answer(token_group=np.array([group], np.int32))
    assert [len(kinds) for kinds, _ in harness.sent] == sizes
    assert harness.sent_tokens() == codes(made)
    assert harness.logs == [f"llm request {FLAG} finished after {count} tokens"]
    assert harness.flags.cleared == [FLAG]


@pytest.mark.parametrize(("asked", "group"), [(None, 1), (0, 1), (-5, 1), (1000, MAX_GROUP)])
def test_the_group_size_defaults_to_one_and_stays_in_range(asked, group):
    made = tokens(MAX_GROUP * 2 + 1)
    harness = Harness(made)
    harness.answer(**({} if asked is None else {"token_group": np.array([asked], np.int32)}))
    assert max(len(kinds) for kinds, _ in harness.sent) == group
    assert harness.sent_tokens() == codes(made)


def test_the_prompt_and_sampling_reach_the_engine():
    harness = Harness(tokens(2))
    harness.answer(temperature=np.array([0.25], np.float32), top_k=np.array([7], np.int32),
                   max_tokens=np.array([12], np.int32), seed=np.array([5], np.uint64))
    (prompt, sampling), = harness.engine.calls
    assert prompt == "<|task_tts|>hello"
    defaults = SamplingConfig()
    assert (sampling.temperature, sampling.top_k, sampling.top_p, sampling.max_tokens) == (
        0.25, 7, defaults.top_p, 12)
    assert sampling.seed is not None


def test_a_client_cancel_ends_the_stream_without_its_last_group():
    harness = Harness(tokens(20))

    def leave(count):
        if count == 7:
            harness.client_gone = True

    harness.engine.on_token = leave
    harness.answer(token_group=np.array([3], np.int32))
    assert harness.engine.yielded == 7
    assert [len(kinds) for kinds, _ in harness.sent] == [3, 3], "the 7th token is not sent"
    assert harness.logs == [f"llm request {FLAG} cancelled after 7 tokens"]
    assert harness.flags.cleared == [FLAG]


def test_spark_tts_calling_it_off_cancels_the_stream_and_clears_the_flag():
    harness = Harness(tokens(20))

    def call_off(count):
        if count == 4:
            harness.flags.raised.add(FLAG)

    harness.engine.on_token = call_off
    harness.answer(token_group=np.array([2], np.int32))
    assert harness.engine.yielded == 4
    assert harness.logs == [f"llm request {FLAG} cancelled after 4 tokens"]
    assert harness.flags.cleared == [FLAG] and not harness.flags.is_set(FLAG)


def test_the_engine_is_given_the_flag_as_called_off():
    harness = Harness([])
    seen = []

    def engine(prompt, sampling, cancelled, called_off):
        seen.append((called_off(), cancelled()))
        harness.flags.raised.add(FLAG)
        seen.append((called_off(), cancelled()))
        return iter(())

    harness.stream.generate = engine
    harness.answer()
    assert seen == [(False, False), (True, True)]


def test_an_engine_failure_propagates_is_logged_and_clears_the_flag():
    harness = Harness(tokens(10), fails_after=5)
    with pytest.raises(ModelError) as caught:
        harness.answer(token_group=np.array([2], np.int32))
    assert caught.value.status == "UNAVAILABLE"
    assert [len(kinds) for kinds, _ in harness.sent] == [2, 2]
    assert harness.logs == [f"llm request {FLAG} failed after 5 tokens"]
    assert harness.flags.cleared == [FLAG]


def test_a_request_without_a_prompt_fails_before_the_engine_and_clears_the_flag():
    harness = Harness(tokens(3))
    with pytest.raises(ModelError) as caught:
        harness.stream.answer(FLAG, Inputs({}.get), lambda: False,
                              lambda kinds, indexes: harness.sent.append((kinds, indexes)))
    assert caught.value.status == "INVALID_ARGUMENT" and "prompt" in str(caught.value)
    assert harness.engine.calls == [] and harness.sent == []
    assert harness.logs == [f"llm request {FLAG} failed after 0 tokens"]
    assert harness.flags.cleared == [FLAG]
