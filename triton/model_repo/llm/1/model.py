"""Triton model: Spark TTS LLM generation, streamed token by token (decoupled)."""

from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from spark_serving.cancellation import CancelFlags
from spark_serving.errors import triton_error
from spark_serving.tensors import device, optional, parameter, required, scalar, tensor, text

from spark_tts.layout import LLM_DIR
from spark_tts.llm import SparkLlm
from spark_tts.sampling import SamplingConfig

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
KINDS = {"semantic": 0, "global": 1}


def sampling_from(request) -> SamplingConfig:
    defaults = SamplingConfig()
    seed = scalar(optional(request, "seed"), -1)
    return SamplingConfig(
        temperature=float(scalar(optional(request, "temperature"), defaults.temperature)),
        top_k=int(scalar(optional(request, "top_k"), defaults.top_k)),
        top_p=float(scalar(optional(request, "top_p"), defaults.top_p)),
        max_tokens=int(scalar(optional(request, "max_tokens"), defaults.max_tokens)),
        seed=None if seed < 0 else int(seed),
    )


class TritonPythonModel:
    def initialize(self, args):
        model_dir = Path(parameter(args, "spark_tts_model_dir"))
        self.llm = SparkLlm(model_dir / LLM_DIR, device(args))
        self.cancel_flags = CancelFlags(parameter(args, "spark_tts_cancel_dir"))

    def execute(self, requests):
        for request in requests:
            self._generate(request)
        return None

    def _generate(self, request):
        sender = request.get_response_sender()
        flag = request.request_id()
        stopped = []

        def cancelled():
            # Never ask the request after its final response: Triton has freed it.
            if not stopped and (request.is_cancelled() or self.cancel_flags.is_set(flag)):
                stopped.append(True)
            return bool(stopped)

        produced = 0
        error = None
        try:
            prompt = text(required(request, "prompt"))
            for token in self.llm.generate(prompt, sampling_from(request), cancelled):
                produced += 1
                sender.send(pb_utils.InferenceResponse([
                    tensor("kind", np.array([KINDS[token.kind]], np.int32)),
                    tensor("index", np.array([token.index], np.int32)),
                ]))
        except Exception as exc:  # every failure goes back to the caller, typed
            error = triton_error(exc)
        outcome = "cancelled" if stopped else "failed" if error else "finished"
        pb_utils.Logger.log_info(f"llm request {flag} {outcome} after {produced} tokens")
        self.cancel_flags.clear(flag)
        if error is not None:
            sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)
        else:
            sender.send(flags=FINAL)
