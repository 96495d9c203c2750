"""Triton model: Spark TTS orchestration (BLS) over audio_tokenizer, llm and vocoder.
A shell: the work is triton_serving.spark_synthesis's; this file speaks Triton."""

from functools import partial

import numpy as np
import triton_python_backend_utils as pb_utils

from triton_serving.bls import call, stream
from triton_serving.cancellation import CancelFlags
from triton_serving.counters import Counter
from triton_serving.side_by_side import SideBySide
from triton_serving.spark_synthesis import SAMPLE_RATE, SparkSynthesis
from triton_serving.speaker_cache import SpeakerCache, codec_digest
from triton_serving.tensors import optional, tensor
from triton_serving.values import Inputs, parameter


class TritonPythonModel(SideBySide):
    def initialize(self, args):
        self.start_pool(int(parameter(args, "spark_tts_max_concurrency", "8")))
        # The family must outlive its metrics, so it is kept on the model.
        self.lookups = pb_utils.MetricFamily(
            name="spark_tts_speaker_cache_lookups_total",
            description="Reference clips looked up in the speaker cache, by result.",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        # Counted from the pool's threads: see triton_serving.counters.
        counters = {result: Counter(self.lookups.Metric(labels={"result": result}))
                    for result in ("hit", "miss")}
        self.synthesis = SparkSynthesis(
            cache=SpeakerCache(int(parameter(args, "spark_tts_speaker_cache_size", "256"))),
            encode_reference=lambda wav: call(
                "audio_tokenizer", {"reference_wav": wav}, ["global_tokens", "semantic_tokens"]),
            generate_tokens=lambda inputs, request_id: stream(
                "llm", inputs, ["kind", "index"], request_id),
            vocode=lambda global_ids, semantic_ids: call("vocoder", {
                "global_tokens": global_ids, "semantic_tokens": semantic_ids}, ["waveform"])[0],
            raise_cancel_flag=CancelFlags(parameter(args, "spark_tts_cancel_dir")).set,
            count_lookup=lambda result: counters[result].increment(1),
            # Tokens per llm response. The chunk plan's boundaries (20, 40, 80, 160, ...
            # semantic tokens) are multiples of 10, so groups of 10 delay no chunk.
            token_group=int(parameter(args, "spark_tts_token_group", "10")),
            log=pb_utils.Logger.log_info,
            # Names the audio tokenizer's weights: tokens a caller kept are used only
            # under the weights that made them.
            codec=codec_digest(parameter(args, "spark_tts_model_dir")),
        )

    def answer(self, request, sender):
        def send(chunk):
            speaker = chunk.speaker
            global_ids = speaker.global_ids if speaker is not None else ()
            semantic_ids = speaker.semantic_ids if speaker is not None else ()
            codec = self.synthesis.codec if speaker is not None else ""
            sender.send(pb_utils.InferenceResponse([
                tensor("waveform", chunk.audio),
                tensor("sample_rate", np.array([SAMPLE_RATE], np.int32)),
                tensor("speaker_id", np.array([chunk.speaker_id.encode()], np.object_)),
                tensor("semantic_tokens", np.array([chunk.semantic_tokens], np.int32)),
                tensor("final", np.array([chunk.final], np.bool_)),
                # Set on the first response of a clip's (or cached speaker's) request.
                tensor("speaker_global_ids", np.array(global_ids, np.int32)),
                tensor("speaker_semantic_ids", np.array(semantic_ids, np.int32)),
                tensor("speaker_codec", np.array([codec.encode()], np.object_)),
            ]))

        self.synthesis.synthesize(Inputs(partial(optional, request)), send, request.is_cancelled)
