"""Triton model: the Spark TTS LLM's tokens, streamed from vLLM (decoupled).

vLLM batches every stream continuously; this model only turns each request into a
vLLM request (triton_serving.vllm_client) and its tokens into responses, each
request on a thread of its own, so none waits for another to end. A shell: the
work is triton_serving.token_stream's; this file speaks Triton.
"""

from functools import partial
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from spark_tts.layout import LLM_DIR
from triton_serving.cancellation import CancelFlags
from triton_serving.side_by_side import SideBySide
from triton_serving.tensors import optional, tensor
from triton_serving.token_stream import TokenStream
from triton_serving.values import Inputs, parameter
from triton_serving.vllm_client import VllmLlm


class TritonPythonModel(SideBySide):
    def initialize(self, args):
        model_dir = Path(parameter(args, "spark_tts_model_dir"))
        self.start_pool(int(parameter(args, "spark_tts_llm_max_streams", "256")))
        self.llm = VllmLlm(
            parameter(args, "spark_tts_llm_url"), model_dir / LLM_DIR,
            cpu=parameter(args, "spark_tts_llm_device", "cpu") == "cpu",
        )
        self.cancel_flags = CancelFlags(parameter(args, "spark_tts_cancel_dir"))
        self.tokens = TokenStream(self.llm.generate, self.cancel_flags, pb_utils.Logger.log_info)

    def answer(self, request, sender):
        def send(kinds, indexes):
            sender.send(pb_utils.InferenceResponse([
                tensor("kind", np.array([kinds], np.int32)),
                tensor("index", np.array([indexes], np.int32)),
            ]))

        inputs = Inputs(partial(optional, request))
        self.tokens.answer(request.request_id(), inputs, request.is_cancelled, send)
