"""Triton model: the Spark TTS LLM's tokens, streamed from vLLM (decoupled).

vLLM batches every stream continuously; this model only turns each request into a
vLLM request (spark_serving.vllm_client) and its tokens into responses, each
request on a thread of its own, so none waits for another to end.
"""

from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from spark_serving.cancellation import CancelFlags
from spark_serving.llm_io import KINDS, sampling_from, token_group
from spark_serving.side_by_side import SideBySide
from spark_serving.tensors import parameter, required, tensor, text
from spark_serving.vllm_client import VllmLlm
from spark_tts.layout import LLM_DIR


class TritonPythonModel(SideBySide):
    def initialize(self, args):
        model_dir = Path(parameter(args, "spark_tts_model_dir"))
        self.start_pool(int(parameter(args, "spark_tts_llm_max_streams", "256")))
        self.llm = VllmLlm(
            parameter(args, "spark_tts_llm_url"), model_dir / LLM_DIR,
            cpu=parameter(args, "spark_tts_llm_device", "cpu") == "cpu",
        )
        self.cancel_flags = CancelFlags(parameter(args, "spark_tts_cancel_dir"))

    def answer(self, request, sender):
        group = token_group(request)
        flag = request.request_id()
        outcome, produced, pending = "failed", 0, []

        def called_off() -> bool:  # spark_tts's flag: safe from the client's watcher
            return self.cancel_flags.is_set(flag)

        def cancelled() -> bool:  # asked on this request's own thread only
            return request.is_cancelled() or called_off()

        def flush() -> None:
            sender.send(pb_utils.InferenceResponse([
                tensor("kind", np.array([[KINDS[t.kind] for t in pending]], np.int32)),
                tensor("index", np.array([[t.index for t in pending]], np.int32)),
            ]))
            pending.clear()

        try:
            prompt = text(required(request, "prompt"))
            for token in self.llm.generate(prompt, sampling_from(request), cancelled, called_off):
                produced += 1
                pending.append(token)
                if len(pending) >= group:
                    flush()
            if cancelled():
                outcome = "cancelled"
            else:
                if pending:
                    flush()
                outcome = "finished"
        finally:
            pb_utils.Logger.log_info(f"llm request {flag} {outcome} after {produced} tokens")
            self.cancel_flags.clear(flag)
