"""Triton model: Spark TTS orchestration (BLS) over audio_tokenizer, llm and vocoder."""

import uuid

import numpy as np
import triton_python_backend_utils as pb_utils

from spark_serving.cancellation import CancelFlags
from spark_serving.counters import Counter
from spark_serving.errors import ModelError
from spark_serving.side_by_side import SideBySide
from spark_serving.speaker_cache import Speaker, SpeakerCache, speaker_id
from spark_serving.tensors import optional, parameter, required, tensor, text
from spark_tts import prompts
from spark_tts.streaming import StreamJoiner

SAMPLE_RATE = 16_000
SAMPLING_INPUTS = ("temperature", "top_k", "top_p", "max_tokens", "seed")


def call(model, inputs, outputs):
    """One BLS call; a failed one raises with the callee's message."""
    response = pb_utils.InferenceRequest(
        model_name=model, inputs=inputs, requested_output_names=outputs
    ).exec()
    if response.has_error():
        raise ModelError("INTERNAL", f"{model}: {response.error().message()}")
    return [pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs]


class TritonPythonModel(SideBySide):
    def initialize(self, args):
        self.start_pool(int(parameter(args, "spark_tts_max_concurrency", "8")))
        self.cache = SpeakerCache(int(parameter(args, "spark_tts_speaker_cache_size", "256")))
        self.cancel_flags = CancelFlags(parameter(args, "spark_tts_cancel_dir"))
        # Tokens per llm response. The chunk plan's boundaries (20, 40, 80, 160, ...
        # semantic tokens) are multiples of 10, so groups of 10 delay no chunk.
        self.token_group = int(parameter(args, "spark_tts_token_group", "10"))
        # The family must outlive its metrics, so it is kept on the model.
        self.lookups = lookups = pb_utils.MetricFamily(
            name="spark_tts_speaker_cache_lookups_total",
            description="Reference clips looked up in the speaker cache, by result.",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        # Counted from the pool's threads: see spark_serving.counters.
        self.hits = Counter(lookups.Metric(labels={"result": "hit"}))
        self.misses = Counter(lookups.Metric(labels={"result": "miss"}))

    def answer(self, request, sender):
        self._synthesize(request, sender)

    def _speaker(self, request):
        """(prompt builder, fixed global tokens or None, speaker id) for this request."""
        wav = optional(request, "reference_wav")
        named = text(optional(request, "speaker_id"))
        if wav is not None and wav.size:
            key = speaker_id(wav.reshape(-1))
            speaker = self.cache.get(key)
            if speaker is None:
                self.misses.increment(1)
                global_ids, semantic_ids = call(
                    "audio_tokenizer",
                    [tensor("reference_wav", wav.reshape(-1).astype(np.float32))],
                    ["global_tokens", "semantic_tokens"],
                )
                speaker = Speaker(tuple(global_ids.tolist()), tuple(semantic_ids.tolist()))
                self.cache.put(key, speaker)
            else:
                self.hits.increment(1)
            return speaker, key
        if named:
            speaker = self.cache.get(named)
            if speaker is None:
                raise ModelError("NOT_FOUND", f"speaker {named[:48]!r} is not cached (any more)")
            self.hits.increment(1)
            return speaker, named
        if text(optional(request, "gender")):
            return None, ""
        raise ModelError("INVALID_ARGUMENT", "give reference_wav, speaker_id or gender")

    def _prompt(self, request, speaker, body):
        if speaker is None:
            try:
                return prompts.control_prompt(
                    body,
                    text(optional(request, "gender")),
                    text(optional(request, "pitch")) or "moderate",
                    text(optional(request, "speed")) or "moderate",
                )
            except ValueError as exc:
                raise ModelError("INVALID_ARGUMENT", str(exc)) from None
        transcript = text(optional(request, "reference_text"))
        return prompts.cloning_prompt(
            body, speaker.global_ids, speaker.semantic_ids if transcript else None, transcript
        )

    def _synthesize(self, request, sender):
        body = text(required(request, "text")).strip()
        if not body:
            raise ModelError("INVALID_ARGUMENT", "text is empty")
        streaming = optional(request, "streaming")
        streaming = True if streaming is None else bool(streaming.reshape(-1)[0])
        speaker, key = self._speaker(request)
        # The llm batches requests, so its tensors carry a batch dimension of 1.
        prompt = self._prompt(request, speaker, body).encode()
        inputs = [tensor("prompt", np.array([[prompt]], dtype=np.object_))]
        for name in SAMPLING_INPUTS:
            value = optional(request, name)
            if value is not None:
                inputs.append(tensor(name, value.reshape(1, 1)))
        inputs.append(tensor("token_group", np.array([[self.token_group]], np.int32)))
        llm_id = uuid.uuid4().hex
        tokens = pb_utils.InferenceRequest(
            model_name="llm", inputs=inputs, requested_output_names=["kind", "index"],
            request_id=llm_id,
        ).exec(decoupled=True)

        global_ids = list(speaker.global_ids) if speaker is not None else []
        pending: list[int] = []  # semantic tokens that came before the voice's globals
        count = 0

        def vocode(semantic):
            return call("vocoder", [
                tensor("global_tokens", np.asarray(global_ids, np.int32)),
                tensor("semantic_tokens", np.asarray(semantic, np.int32)),
            ], ["waveform"])[0]

        joiner = StreamJoiner(vocode)
        first = True

        def emit(audio, final=False):
            nonlocal first
            sender.send(pb_utils.InferenceResponse([
                tensor("waveform", audio.astype(np.float32)),
                tensor("sample_rate", np.array([SAMPLE_RATE], np.int32)),
                tensor("speaker_id", np.array([key.encode() if first else b""], np.object_)),
                tensor("semantic_tokens", np.array([count], np.int32)),
                tensor("final", np.array([final], np.bool_)),
            ]))
            first = False

        # Leaving before the llm's last response (cancel, vocoder failure, ...)
        # raises the flag that stops it; the llm clears the flag when it stops.
        llm_done = False
        try:
            for response in tokens:
                if request.is_cancelled():
                    pb_utils.Logger.log_info(f"spark_tts: client cancelled; stopping llm {llm_id}")
                    raise ModelError("CANCELLED", "the client cancelled the request")
                if response.has_error():
                    raise ModelError.passed_on("llm", response.error().message())
                kinds = pb_utils.get_output_tensor_by_name(response, "kind")
                if kinds is None:
                    continue  # the empty final response
                indexes = pb_utils.get_output_tensor_by_name(response, "index").as_numpy()
                for kind, index in zip(kinds.as_numpy().reshape(-1).tolist(),
                                       indexes.reshape(-1).tolist(), strict=True):
                    if kind == 1:
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
                self.cancel_flags.set(llm_id)
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
