"""triton_serving.spark_synthesis: the spark_tts model's work, with its calls to the
other models (audio_tokenizer, llm, vocoder) and to Triton faked."""

from __future__ import annotations

import numpy as np
import pytest

from spark_tts import prompts
from spark_tts.layout import SAMPLES_PER_TOKEN
from spark_tts.streaming import ChunkPlan
from triton_serving.errors import ModelError
from triton_serving.llm_io import KINDS
from triton_serving.spark_synthesis import Chunk, SparkSynthesis
from triton_serving.speaker_cache import Speaker, SpeakerCache, codec_digest, speaker_id
from triton_serving.values import Inputs

GLOBAL, SEMANTIC = KINDS["global"], KINDS["semantic"]
REFERENCE_GLOBALS = np.arange(100, 100 + prompts.GLOBAL_TOKENS, dtype=np.int32)
REFERENCE_SEMANTICS = np.array([7, 8, 9], np.int32)
LLM_GLOBALS = list(range(500, 500 + prompts.GLOBAL_TOKENS))
PLAN = ChunkPlan()
CODEC = "bicodec-0123456789abcdef"


def reply(kind: int, indexes) -> tuple[dict[str, np.ndarray], None]:
    """One llm response of tokens of one kind, shaped [1, n] as the llm sends them."""
    indexes = list(indexes)
    return {"kind": np.full((1, len(indexes)), kind, np.int32),
            "index": np.array([indexes], np.int32)}, None


def grouped(tokens: list[tuple[int, int]], size: int) -> list:
    """(kind, index) tokens as llm responses of ``size``, mixed kinds allowed."""
    replies = []
    for start in range(0, len(tokens), size):
        group = tokens[start:start + size]
        replies.append(({"kind": np.array([[k for k, _ in group]], np.int32),
                         "index": np.array([[i for _, i in group]], np.int32)}, None))
    return replies


EMPTY_LAST = ({}, None)  # the llm's final response carries no tensors


def offline(semantic) -> np.ndarray:
    """What the fake vocoder makes of ``semantic`` in one piece."""
    return np.repeat(np.asarray(semantic, np.float32) / 100.0, SAMPLES_PER_TOKEN)


def text_input(value: str) -> np.ndarray:
    return np.array([value.encode()], dtype=np.object_)


def wav_input(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 1600)).astype(np.float32)


class Fakes:
    """The calls the model hands over, each recording what it was asked."""

    def __init__(self, replies=(), cancel_after: int | None = None, cache=None,
                 vocoder_fails_after: int | None = None) -> None:
        self.replies = list(replies)
        self.cancel_after = cancel_after  # is_cancelled turns True after this many asks
        self.vocoder_fails_after = vocoder_fails_after
        self.sent: list[Chunk] = []
        self.encoded: list[np.ndarray] = []
        self.llm_calls: list[tuple[dict, str]] = []
        self.vocoded: list[tuple[list[int], list[int]]] = []
        self.flags: list[str] = []
        self.lookups: list[str] = []
        self.logs: list[str] = []
        self.asked = 0
        self.replies_read = 0
        self.llm_finished = False
        self.sent_when_read: list[int] = []  # chunks sent when each next reply was asked for
        self.synthesis = SparkSynthesis(
            cache=cache if cache is not None else SpeakerCache(4),
            encode_reference=self.encode, generate_tokens=self.generate, vocode=self.vocode,
            raise_cancel_flag=self.flags.append, count_lookup=self.lookups.append,
            token_group=5, log=self.logs.append, codec=CODEC,
        )

    def encode(self, wav):
        self.encoded.append(wav)
        return REFERENCE_GLOBALS.copy(), REFERENCE_SEMANTICS.copy()

    def generate(self, inputs, request_id):
        self.llm_calls.append((inputs, request_id))
        return self._replies()

    def _replies(self):
        for one in self.replies:
            self.sent_when_read.append(len(self.sent))
            self.replies_read += 1
            yield one
        self.llm_finished = True

    def vocode(self, global_ids, semantic_ids):
        assert global_ids.dtype == np.int32 and semantic_ids.dtype == np.int32
        if self.vocoder_fails_after is not None and len(self.vocoded) >= self.vocoder_fails_after:
            raise ModelError("INTERNAL", "vocoder: out of memory")
        self.vocoded.append((global_ids.tolist(), semantic_ids.tolist()))
        return offline(semantic_ids)

    def is_cancelled(self) -> bool:
        self.asked += 1
        return self.cancel_after is not None and self.asked > self.cancel_after

    def run(self, **inputs) -> list[Chunk]:
        values = {k: text_input(v) if isinstance(v, str) else v for k, v in inputs.items()}
        self.synthesis.synthesize(Inputs(values.get), self.sent.append, self.is_cancelled)
        return self.sent

    @property
    def llm_id(self) -> str:
        (_, request_id), = self.llm_calls
        return request_id


def audio_of(chunks: list[Chunk]) -> np.ndarray:
    return np.concatenate([c.audio for c in chunks])


# -- routing ----------------------------------------------------------------------


def test_a_reference_voices_globals_come_first_and_the_semantic_tokens_stream():
    semantic = list(range(1, 101))
    fakes = Fakes([reply(SEMANTIC, semantic[i:i + 5]) for i in range(0, 100, 5)] + [EMPTY_LAST])
    chunks = fakes.run(text="Hello there.", reference_wav=wav_input())
    assert all(g == REFERENCE_GLOBALS.tolist() for g, _ in fakes.vocoded)
    np.testing.assert_allclose(audio_of(chunks), offline(semantic), atol=1e-6)
    assert all(c.audio.dtype == np.float32 for c in chunks)
    assert len(chunks) > 2, "the audio leaves in several chunks"
    # Audio leaves while the llm still generates: the first chunk before its last reply.
    assert fakes.sent_when_read[-1] > 0
    assert fakes.flags == [] and fakes.llm_finished


def test_chunks_leave_in_order_and_only_the_last_is_final():
    semantic = list(range(300))
    fakes = Fakes(grouped([(SEMANTIC, i) for i in semantic], 10) + [EMPTY_LAST])
    chunks = fakes.run(text="Hello there.", reference_wav=wav_input())
    assert [c.final for c in chunks] == [False] * (len(chunks) - 1) + [True]
    # The first chunk names the voice, the rest do not.
    assert chunks[0].speaker_id == speaker_id(wav_input().reshape(-1))
    assert all(c.speaker_id == "" for c in chunks[1:])
    # Each chunk says how many semantic tokens had come when it left.
    counts = [c.semantic_tokens for c in chunks]
    assert counts == sorted(counts) and counts[-1] == len(semantic)
    assert counts[0] == PLAN.first + PLAN.lookahead
    # Every non-empty chunk of audio; the joins add up to the offline waveform.
    assert all(c.audio.size for c in chunks[:-1])
    np.testing.assert_allclose(audio_of(chunks), offline(semantic), atol=1e-6)


def test_a_described_voice_takes_the_llms_first_32_globals():
    extra = [9000, 9001, 9002]
    semantic = list(range(40, 80))
    tokens = [(GLOBAL, i) for i in LLM_GLOBALS + extra] + [(SEMANTIC, i) for i in semantic]
    fakes = Fakes(grouped(tokens, 7) + [EMPTY_LAST])
    chunks = fakes.run(text="Hello there.", gender="female")
    assert fakes.vocoded and all(g == LLM_GLOBALS for g, _ in fakes.vocoded)
    assert fakes.encoded == [] and fakes.lookups == []
    np.testing.assert_allclose(audio_of(chunks), offline(semantic), atol=1e-6)
    assert chunks[0].speaker_id == ""


def test_a_reference_voice_ignores_globals_the_llm_makes():
    fakes = Fakes(grouped([(GLOBAL, 4000), (SEMANTIC, 1), (GLOBAL, 4001), (SEMANTIC, 2)], 2)
                  + [EMPTY_LAST])
    fakes.run(text="Hi.", reference_wav=wav_input(), streaming=np.array([False]))
    assert fakes.vocoded == [(REFERENCE_GLOBALS.tolist(), [1, 2])]


def test_semantic_tokens_before_the_globals_wait_for_them():
    early, late = list(range(1, 31)), list(range(31, 71))
    replies = ([reply(SEMANTIC, early)]
               + [reply(GLOBAL, LLM_GLOBALS[:16]), reply(GLOBAL, LLM_GLOBALS[16:])]
               + [reply(SEMANTIC, late[i:i + 10]) for i in range(0, len(late), 10)]
               + [EMPTY_LAST])
    fakes = Fakes(replies)
    chunks = fakes.run(text="Hello there.", gender="male", pitch="high", speed="low")
    # Thirty semantic tokens are a chunk's worth, but nothing leaves before the globals
    # are complete: no chunk when the globals' replies were asked for.
    assert fakes.sent_when_read[:4] == [0, 0, 0, 0]
    assert fakes.sent_when_read[4] > 0, "the held tokens leave once the globals are in"
    assert all(g == LLM_GLOBALS for g, _ in fakes.vocoded)
    np.testing.assert_allclose(audio_of(chunks), offline(early + late), atol=1e-6)
    assert chunks[-1].final and chunks[-1].semantic_tokens == len(early + late)


def test_without_streaming_one_final_chunk_of_all_the_tokens():
    semantic = list(range(120))
    fakes = Fakes(grouped([(SEMANTIC, i) for i in semantic], 10) + [EMPTY_LAST])
    chunks = fakes.run(text="Hello there.", reference_wav=wav_input(),
                       streaming=np.array([False]))
    assert len(chunks) == 1 and chunks[0].final
    assert fakes.vocoded == [(REFERENCE_GLOBALS.tolist(), semantic)]
    np.testing.assert_array_equal(chunks[0].audio, offline(semantic))
    assert chunks[0].semantic_tokens == len(semantic)
    assert chunks[0].speaker_id == speaker_id(wav_input().reshape(-1))


def test_a_few_tokens_still_stream_as_one_final_chunk():
    fakes = Fakes([reply(SEMANTIC, [5, 6, 7]), EMPTY_LAST])
    chunks = fakes.run(text="Hi.", reference_wav=wav_input())
    assert [c.final for c in chunks] == [True]
    np.testing.assert_allclose(chunks[0].audio, offline([5, 6, 7]), atol=1e-6)


# -- the llm request --------------------------------------------------------------


def test_the_llm_gets_the_cloning_prompt_sampling_and_token_group():
    fakes = Fakes([reply(SEMANTIC, [1]), EMPTY_LAST])
    fakes.run(text="  Hello there. ", reference_wav=wav_input(), reference_text="A transcript.",
              temperature=np.array([0.5], np.float32), seed=np.array([42], np.uint64))
    (inputs, _), = fakes.llm_calls
    assert list(inputs) == ["prompt", "temperature", "seed", "token_group"]
    expected = prompts.cloning_prompt("Hello there.", REFERENCE_GLOBALS.tolist(),
                                      REFERENCE_SEMANTICS.tolist(), "A transcript.")
    assert inputs["prompt"].shape == (1, 1) and inputs["prompt"][0, 0] == expected.encode()
    assert inputs["temperature"].shape == (1, 1) and inputs["temperature"][0, 0] == 0.5
    assert inputs["seed"][0, 0] == 42 and inputs["seed"].dtype == np.uint64
    assert inputs["token_group"].tolist() == [[5]]


def test_without_a_transcript_the_prompt_leaves_the_references_semantic_tokens_out():
    fakes = Fakes([reply(SEMANTIC, [1]), EMPTY_LAST])
    fakes.run(text="Hello.", reference_wav=wav_input())
    (inputs, _), = fakes.llm_calls
    assert inputs["prompt"][0, 0].decode() == prompts.cloning_prompt(
        "Hello.", REFERENCE_GLOBALS.tolist())


def test_a_described_voice_gets_the_control_prompt():
    fakes = Fakes(grouped([(GLOBAL, i) for i in LLM_GLOBALS] + [(SEMANTIC, 3)], 8)
                  + [EMPTY_LAST])
    fakes.run(text="Hello.", gender="male", pitch="very_high")
    (inputs, _), = fakes.llm_calls
    assert inputs["prompt"][0, 0].decode() == prompts.control_prompt(
        "Hello.", "male", "very_high", "moderate")


# -- errors -----------------------------------------------------------------------


def status_of(fakes: Fakes, **inputs) -> tuple[str, str]:
    with pytest.raises(ModelError) as caught:
        fakes.run(**inputs)
    return caught.value.status, str(caught.value)


def test_no_globals_from_the_llm_is_internal():
    fakes = Fakes([reply(SEMANTIC, range(50)), reply(GLOBAL, LLM_GLOBALS[:3]), EMPTY_LAST])
    status, message = status_of(fakes, text="Hello.", gender="female")
    assert status == "INTERNAL" and "produced 3 global tokens" in message
    assert fakes.sent == [] and fakes.vocoded == []
    assert fakes.flags == [], "the llm had finished: nothing to stop"


def test_no_semantic_tokens_from_the_llm_is_internal():
    fakes = Fakes([EMPTY_LAST])
    status, message = status_of(fakes, text="Hello.", reference_wav=wav_input())
    assert (status, message) == ("INTERNAL", "INTERNAL: the LLM produced no semantic tokens")
    assert fakes.sent == [] and fakes.flags == []


@pytest.mark.parametrize(("error", "status", "message"), [
    ("UNAVAILABLE: the LLM server is not reachable", "UNAVAILABLE",
     "UNAVAILABLE: llm: the LLM server is not reachable"),
    ("INVALID_ARGUMENT: the prompt is 5000 tokens", "INVALID_ARGUMENT",
     "INVALID_ARGUMENT: llm: the prompt is 5000 tokens"),
    ("stub crashed", "INTERNAL", "INTERNAL: llm: stub crashed"),
])
def test_an_llm_error_is_passed_on_with_its_status(error, status, message):
    fakes = Fakes([reply(SEMANTIC, range(25)), ({}, error), reply(SEMANTIC, range(5))])
    assert status_of(fakes, text="Hello.", reference_wav=wav_input()) == (status, message)
    assert fakes.replies_read == 2, "nothing is read after the error"
    assert fakes.flags == [fakes.llm_id]


@pytest.mark.parametrize(("inputs", "status", "needle"), [
    ({"reference_wav": wav_input()}, "INVALID_ARGUMENT", "input text is required"),
    ({"text": "   ", "reference_wav": wav_input()}, "INVALID_ARGUMENT", "text is empty"),
    ({"text": "Hello."}, "INVALID_ARGUMENT", "give reference_wav, speaker_id or gender"),
    ({"text": "Hello.", "gender": "robot"}, "INVALID_ARGUMENT", "gender 'robot'"),
    ({"text": "Hello.", "gender": "male", "speed": "warp"}, "INVALID_ARGUMENT", "speed 'warp'"),
    ({"text": "Hello.", "speaker_id": "spk-unknown"}, "NOT_FOUND", "spk-unknown"),
    ({"text": np.array([b"\xff\xfe"], np.object_), "gender": "male"}, "INVALID_ARGUMENT",
     "UTF-8"),
])
def test_bad_requests_fail_before_the_llm_is_called(inputs, status, needle):
    fakes = Fakes([reply(SEMANTIC, [1]), EMPTY_LAST])
    got, message = status_of(fakes, **inputs)
    assert got == status and needle in message
    assert fakes.llm_calls == [] and fakes.flags == []


# -- cancellation -----------------------------------------------------------------


def test_a_cancelled_client_raises_the_llms_flag():
    fakes = Fakes([reply(SEMANTIC, range(i, i + 5)) for i in range(0, 100, 5)] + [EMPTY_LAST],
                  cancel_after=3)
    status, _ = status_of(fakes, text="Hello.", reference_wav=wav_input())
    assert status == "CANCELLED"
    assert fakes.replies_read == 4 and not fakes.llm_finished
    assert fakes.flags == [fakes.llm_id]
    assert fakes.logs == [f"spark_tts: client cancelled; stopping llm {fakes.llm_id}"]
    assert not any(c.final for c in fakes.sent)


def test_a_vocoder_failure_mid_stream_raises_the_llms_flag():
    fakes = Fakes([reply(SEMANTIC, range(i, i + 10)) for i in range(0, 200, 10)] + [EMPTY_LAST],
                  vocoder_fails_after=1)
    status, message = status_of(fakes, text="Hello.", reference_wav=wav_input())
    assert (status, message) == ("INTERNAL", "INTERNAL: vocoder: out of memory")
    assert len(fakes.sent) == 1 and not fakes.llm_finished
    assert fakes.flags == [fakes.llm_id]


def test_a_vocoder_failure_after_the_llm_finished_raises_no_flag():
    fakes = Fakes([reply(SEMANTIC, range(12)), EMPTY_LAST], vocoder_fails_after=0)
    status, _ = status_of(fakes, text="Hello.", reference_wav=wav_input(),
                          streaming=np.array([False]))
    assert status == "INTERNAL" and fakes.llm_finished and fakes.flags == []


def test_a_completed_request_raises_no_flag_and_each_gets_its_own_llm_id():
    fakes = Fakes([reply(SEMANTIC, range(30)), EMPTY_LAST])
    fakes.run(text="Hello.", reference_wav=wav_input())
    fakes.replies = [reply(SEMANTIC, range(30)), EMPTY_LAST]
    fakes.run(text="Hello again.", reference_wav=wav_input())
    ids = [request_id for _, request_id in fakes.llm_calls]
    assert fakes.flags == [] and fakes.logs == []
    assert len(set(ids)) == 2 and all(ids)


# -- the speaker cache ------------------------------------------------------------


def test_a_repeated_clip_is_tokenised_once_and_counted_as_a_hit():
    fakes = Fakes()
    for _ in range(3):
        fakes.replies = [reply(SEMANTIC, [1, 2]), EMPTY_LAST]
        fakes.run(text="Hello.", reference_wav=wav_input(seed=1))
    assert len(fakes.encoded) == 1
    assert fakes.encoded[0].dtype == np.float32 and fakes.encoded[0].ndim == 1
    np.testing.assert_array_equal(fakes.encoded[0], wav_input(seed=1).reshape(-1))
    assert fakes.lookups == ["miss", "hit", "hit"]
    fakes.replies = [reply(SEMANTIC, [1, 2]), EMPTY_LAST]
    fakes.run(text="Hello.", reference_wav=wav_input(seed=2))
    assert len(fakes.encoded) == 2 and fakes.lookups[-1] == "miss"


def test_a_cached_speaker_id_speaks_with_the_clips_tokens_and_counts_a_hit():
    fakes = Fakes([reply(SEMANTIC, [1, 2]), EMPTY_LAST])
    key = fakes.run(text="Hello.", reference_wav=wav_input())[0].speaker_id
    fakes.sent.clear()
    fakes.replies = [reply(SEMANTIC, [3, 4]), EMPTY_LAST]
    chunks = fakes.run(text="Hello.", speaker_id=key)
    assert fakes.lookups == ["miss", "hit"] and len(fakes.encoded) == 1
    assert fakes.vocoded[-1] == (REFERENCE_GLOBALS.tolist(), [3, 4])
    assert chunks[0].speaker_id == key


def test_an_evicted_speaker_is_not_found_and_not_counted():
    fakes = Fakes(cache=SpeakerCache(1))
    fakes.replies = [reply(SEMANTIC, [1]), EMPTY_LAST]
    first = fakes.run(text="Hello.", reference_wav=wav_input(seed=1))[0].speaker_id
    fakes.replies = [reply(SEMANTIC, [1]), EMPTY_LAST]
    fakes.run(text="Hello.", reference_wav=wav_input(seed=2))
    status, _ = status_of(fakes, text="Hello.", speaker_id=first)
    assert status == "NOT_FOUND" and fakes.lookups == ["miss", "miss"]


def test_an_empty_clip_falls_back_to_the_speaker_id():
    fakes = Fakes([reply(SEMANTIC, [1]), EMPTY_LAST])
    key = fakes.run(text="Hello.", reference_wav=wav_input())[0].speaker_id
    fakes.replies = [reply(SEMANTIC, [1]), EMPTY_LAST]
    fakes.run(text="Hello.", reference_wav=np.zeros((1, 0), np.float32), speaker_id=key)
    assert fakes.lookups == ["miss", "hit"] and len(fakes.encoded) == 1


# -- a clip's tokens, kept by the caller --------------------------------------------


def tokens_input(globals_=REFERENCE_GLOBALS, semantics=REFERENCE_SEMANTICS, codec=CODEC) -> dict:
    return {"global_ids": np.asarray(globals_, np.int32),
            "semantic_ids": np.asarray(semantics, np.int32), "codec": codec}


def test_the_first_chunk_of_a_clip_carries_its_tokens_and_a_cached_speakers_too():
    fakes = Fakes([reply(SEMANTIC, range(1, 60)), EMPTY_LAST])
    chunks = fakes.run(text="Hello.", reference_wav=wav_input())
    assert len(chunks) > 1
    expected = Speaker(tuple(REFERENCE_GLOBALS.tolist()), tuple(REFERENCE_SEMANTICS.tolist()))
    assert chunks[0].speaker == expected
    assert all(c.speaker is None for c in chunks[1:])
    key = chunks[0].speaker_id
    fakes.sent.clear()
    fakes.replies = [reply(SEMANTIC, [1]), EMPTY_LAST]
    assert fakes.run(text="Hello.", speaker_id=key)[0].speaker == expected


def test_given_tokens_speak_as_the_clip_did_without_the_tokenizer_or_the_cache():
    by_clip = Fakes([reply(SEMANTIC, [1, 2, 3]), EMPTY_LAST])
    clip_chunks = by_clip.run(text="Hello.", reference_wav=wav_input(),
                              reference_text="A transcript.")
    by_tokens = Fakes([reply(SEMANTIC, [1, 2, 3]), EMPTY_LAST])
    chunks = by_tokens.run(text="Hello.", reference_text="A transcript.", **tokens_input())
    assert by_tokens.encoded == [] and by_tokens.lookups == []
    assert by_tokens.llm_calls[0][0]["prompt"][0, 0] == by_clip.llm_calls[0][0]["prompt"][0, 0]
    assert by_tokens.vocoded == by_clip.vocoded
    np.testing.assert_array_equal(audio_of(chunks), audio_of(clip_chunks))
    assert chunks[0].speaker_id == "" and all(c.speaker is None for c in chunks)


def test_tokens_of_another_codec_are_a_failed_precondition():
    fakes = Fakes([reply(SEMANTIC, [1]), EMPTY_LAST])
    status, message = status_of(fakes, text="Hello.", **tokens_input(codec="bicodec-other"))
    assert status == "FAILED_PRECONDITION" and "bicodec-other" in message and CODEC in message
    status, _ = status_of(fakes, text="Hello.", **tokens_input(codec=""))
    assert status == "FAILED_PRECONDITION" and fakes.llm_calls == []


@pytest.mark.parametrize("given, needle", [
    (tokens_input(globals_=REFERENCE_GLOBALS[:31]), "31 tokens"),
    (tokens_input(semantics=[]), "semantic_ids is empty"),
    (tokens_input(globals_=[4096] * 32), "global_ids holds ids outside 0..4095"),
    (tokens_input(semantics=[8192]), "semantic_ids holds ids outside 0..8191"),
    (tokens_input(semantics=[-1]), "semantic_ids holds ids outside"),
])
def test_malformed_tokens_are_invalid(given, needle):
    fakes = Fakes([reply(SEMANTIC, [1]), EMPTY_LAST])
    status, message = status_of(fakes, text="Hello.", **given)
    assert status == "INVALID_ARGUMENT" and needle in message, message
    assert fakes.llm_calls == []


def test_the_codec_digest_names_the_tokenizers_files(tmp_path):
    assert codec_digest("") == ""
    (tmp_path / "BiCodec").mkdir()
    (tmp_path / "BiCodec" / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "config.yaml").write_text("volume_normalize: true\n")
    (tmp_path / "LLM").mkdir()
    (tmp_path / "LLM" / "model.safetensors").write_bytes(b"llm")
    first = codec_digest(tmp_path)
    assert first.startswith("bicodec-") and len(first) == len("bicodec-") + 16
    assert codec_digest(str(tmp_path)) == first
    (tmp_path / "LLM" / "model.safetensors").write_bytes(b"another llm")
    assert codec_digest(tmp_path) == first, "the LLM makes no tokens of a clip"
    (tmp_path / "BiCodec" / "model.safetensors").write_bytes(b"other weights")
    assert codec_digest(tmp_path) != first
