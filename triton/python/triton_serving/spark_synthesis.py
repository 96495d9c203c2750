"""Spark TTS synthesis for the ``spark_tts`` model, free of Triton.

The model (triton/model_repo/spark_tts/1/model.py) is a shell: it hands a request's
inputs over as ``Inputs`` and the calls to the other three models as callables, as
``StreamJoiner`` takes its ``vocode``:

- ``encode_reference(wav)`` -> (global ids, semantic ids): the ``audio_tokenizer``;
- ``generate_tokens(inputs, request_id)`` -> an iterator of ``(outputs, error)``
  replies (``outputs["kind"]``, ``outputs["index"]``; an error message instead when
  the ``llm`` failed; no ``kind`` in its empty last reply). The request is sent when
  it is called, its replies read as iterated;
- ``vocode(global_ids, semantic_ids)`` -> waveform: the ``vocoder``;
- ``raise_cancel_flag(request_id)``: stops an ``llm`` generation this request left
  (triton_serving.cancellation).

Here: the speaker (a reference clip's tokens, looked up in the speaker cache first,
a cached speaker's id, tokens a caller kept from an earlier reply, or a described
voice), the prompt, the llm's tokens routed
(global tokens to the voice, semantic tokens to the audio), the audio streamed in
chunks (spark_tts.streaming) or vocoded in one piece, and the errors.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from spark_tts import prompts
from spark_tts.streaming import StreamJoiner
from triton_serving.errors import ModelError
from triton_serving.llm_io import KINDS
from triton_serving.speaker_cache import Speaker, SpeakerCache, speaker_id
from triton_serving.values import Inputs, text

SAMPLE_RATE = 16_000
SAMPLING_INPUTS = ("temperature", "top_k", "top_p", "max_tokens", "seed")
GLOBAL = KINDS["global"]

Reply = tuple[Mapping[str, np.ndarray], "str | None"]
EncodeReference = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
GenerateTokens = Callable[[dict[str, np.ndarray], str], Iterator[Reply]]
Vocode = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Chunk:
    """One response of a synthesis."""

    audio: np.ndarray       # float32 samples at SAMPLE_RATE
    speaker_id: str         # the voice's id on the first chunk ("" for a described voice), then ""
    semantic_tokens: int    # semantic tokens the llm had produced when the chunk left
    final: bool
    # On the first chunk of a clip's or cached speaker's request: its tokens, to keep.
    speaker: Speaker | None = None


def given_speaker(inputs: Inputs, codec: str) -> Speaker | None:
    """The tokens a request gives instead of a clip (inputs global_ids, semantic_ids,
    codec), checked; None when it gives none."""
    global_ids = inputs.optional("global_ids")
    if global_ids is None or not global_ids.size:
        return None
    semantic_ids = inputs.optional("semantic_ids")
    given = inputs.text("codec")
    if given != codec:
        raise ModelError("FAILED_PRECONDITION", f"the speaker tokens were made by codec "
                         f"{given[:40]!r}; this model's audio tokenizer is {codec!r}")
    globals_ = global_ids.reshape(-1).astype(np.int64).tolist()
    if len(globals_) != prompts.GLOBAL_TOKENS:
        raise ModelError("INVALID_ARGUMENT", f"global_ids has {len(globals_)} tokens; "
                         f"{prompts.GLOBAL_TOKENS} are needed")
    semantics = [] if semantic_ids is None else semantic_ids.reshape(-1).astype(np.int64).tolist()
    if not semantics:
        raise ModelError("INVALID_ARGUMENT", "semantic_ids is empty")
    for name, ids, vocab in (("global_ids", globals_, prompts.GLOBAL_VOCAB),
                             ("semantic_ids", semantics, prompts.SEMANTIC_VOCAB)):
        if not all(0 <= i < vocab for i in ids):
            raise ModelError("INVALID_ARGUMENT", f"{name} holds ids outside 0..{vocab - 1}")
    return Speaker(tuple(globals_), tuple(semantics))


class SparkSynthesis:
    """Synthesises requests; one instance serves them all, from any thread."""

    def __init__(
        self,
        *,
        cache: SpeakerCache,
        encode_reference: EncodeReference,
        generate_tokens: GenerateTokens,
        vocode: Vocode,
        raise_cancel_flag: Callable[[str], None],
        count_lookup: Callable[[str], None] = lambda result: None,
        token_group: int = 10,
        log: Callable[[str], None] = lambda message: None,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        codec: str = "",
    ) -> None:
        self.cache = cache
        self.encode_reference = encode_reference
        self.generate_tokens = generate_tokens
        self.vocode = vocode
        self.raise_cancel_flag = raise_cancel_flag
        self.count_lookup = count_lookup  # "hit" or "miss", one speaker cache lookup each
        self.token_group = token_group
        self.log = log
        self.new_id = new_id
        self.codec = codec  # the audio tokenizer's weights digest (speaker_cache.codec_digest)

    def speaker(self, inputs: Inputs) -> tuple[Speaker | None, str]:
        """(the speaker or None for a described voice, the speaker's id: "" for a
        described voice or given tokens)."""
        given = given_speaker(inputs, self.codec)
        if given is not None:
            return given, ""
        wav = inputs.optional("reference_wav")
        named = inputs.text("speaker_id")
        if wav is not None and wav.size:
            key = speaker_id(wav.reshape(-1))
            speaker = self.cache.get(key)
            if speaker is None:
                self.count_lookup("miss")
                global_ids, semantic_ids = self.encode_reference(
                    wav.reshape(-1).astype(np.float32)
                )
                speaker = Speaker(tuple(global_ids.tolist()), tuple(semantic_ids.tolist()))
                self.cache.put(key, speaker)
            else:
                self.count_lookup("hit")
            return speaker, key
        if named:
            speaker = self.cache.get(named)
            if speaker is None:
                raise ModelError("NOT_FOUND", f"speaker {named[:48]!r} is not cached (any more)")
            self.count_lookup("hit")
            return speaker, named
        if inputs.text("gender"):
            return None, ""
        raise ModelError("INVALID_ARGUMENT", "give reference_wav, speaker_id or gender "
                         "(or a clip's global_ids + semantic_ids + codec)")

    @staticmethod
    def prompt(inputs: Inputs, speaker: Speaker | None, body: str) -> str:
        if speaker is None:
            try:
                return prompts.control_prompt(
                    body,
                    inputs.text("gender"),
                    inputs.text("pitch") or "moderate",
                    inputs.text("speed") or "moderate",
                )
            except ValueError as exc:
                raise ModelError("INVALID_ARGUMENT", str(exc)) from None
        transcript = inputs.text("reference_text")
        return prompts.cloning_prompt(
            body, speaker.global_ids, speaker.semantic_ids if transcript else None, transcript
        )

    def llm_inputs(self, inputs: Inputs, prompt: str) -> dict[str, np.ndarray]:
        """The llm request's inputs. The llm batches requests, so its tensors carry a
        batch dimension of 1."""
        sent = {"prompt": np.array([[prompt.encode()]], dtype=np.object_)}
        for name in SAMPLING_INPUTS:
            value = inputs.optional(name)
            if value is not None:
                sent[name] = value.reshape(1, 1)
        sent["token_group"] = np.array([[self.token_group]], np.int32)
        return sent

    def synthesize(
        self, inputs: Inputs, send: Callable[[Chunk], None], is_cancelled: Callable[[], bool]
    ) -> None:
        """Send the request's audio, the last chunk marked final; raise ModelError when
        it fails. ``is_cancelled`` is asked between the llm's replies."""
        body = text(inputs.required("text")).strip()
        if not body:
            raise ModelError("INVALID_ARGUMENT", "text is empty")
        streaming = inputs.optional("streaming")
        streaming = True if streaming is None else bool(streaming.reshape(-1)[0])
        speaker, key = self.speaker(inputs)
        prompt = self.prompt(inputs, speaker, body)
        llm_id = self.new_id()
        replies = self.generate_tokens(self.llm_inputs(inputs, prompt), llm_id)

        global_ids = list(speaker.global_ids) if speaker is not None else []
        pending: list[int] = []  # semantic tokens that came before the voice's globals
        count = 0

        def vocode(semantic: list[int]) -> np.ndarray:
            return self.vocode(np.asarray(global_ids, np.int32), np.asarray(semantic, np.int32))

        joiner = StreamJoiner(vocode)
        first = True

        def emit(audio: np.ndarray, final: bool = False) -> None:
            nonlocal first
            send(Chunk(audio.astype(np.float32), key if first else "", count, final,
                       speaker if first and key else None))
            first = False

        # Leaving before the llm's last reply (cancel, vocoder failure, ...) raises
        # the flag that stops it; the llm clears the flag when it stops.
        llm_done = False
        try:
            for outputs, error in replies:
                if is_cancelled():
                    self.log(f"spark_tts: client cancelled; stopping llm {llm_id}")
                    raise ModelError("CANCELLED", "the client cancelled the request")
                if error is not None:
                    raise ModelError.passed_on("llm", error)
                kinds = outputs.get("kind")
                if kinds is None:
                    continue  # the empty final reply
                indexes = outputs["index"]
                for kind, index in zip(kinds.reshape(-1).tolist(),
                                       indexes.reshape(-1).tolist(), strict=True):
                    if kind == GLOBAL:
                        if len(global_ids) < prompts.GLOBAL_TOKENS:
                            global_ids.append(index)
                        continue
                    count += 1
                    pending.append(index)
                    if len(global_ids) < prompts.GLOBAL_TOKENS or not streaming:
                        continue
                    for semantic in pending:
                        audio = joiner.add(semantic)
                        if audio is not None and audio.size:
                            emit(audio)
                    pending.clear()
            llm_done = True
        finally:
            if not llm_done:
                self.raise_cancel_flag(llm_id)
        if len(global_ids) < prompts.GLOBAL_TOKENS:
            raise ModelError(
                "INTERNAL", f"the LLM produced {len(global_ids)} global tokens; 32 are needed"
            )
        if count == 0:
            raise ModelError("INTERNAL", "the LLM produced no semantic tokens")
        if not streaming:
            emit(vocode(pending), final=True)
            return
        for semantic in pending:
            audio = joiner.add(semantic)
            if audio is not None and audio.size:
                emit(audio)
        emit(joiner.finish(), final=True)
