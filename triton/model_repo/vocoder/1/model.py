"""Triton model: BiCodec tokens -> waveform (spark_tts.Vocoder)."""

import numpy as np
import triton_python_backend_utils as pb_utils

from spark_tts.vocoder import Vocoder
from triton_serving.errors import ModelError, triton_error
from triton_serving.tensors import required, tensor
from triton_serving.values import device, parameter


class TritonPythonModel:
    def initialize(self, args):
        self.vocoder = Vocoder(parameter(args, "spark_tts_model_dir"), device(args))

    def execute(self, requests):
        return [self._one(request) for request in requests]

    def _one(self, request):
        try:
            global_ids = required(request, "global_tokens").reshape(-1)
            semantic_ids = required(request, "semantic_tokens").reshape(-1)
            if semantic_ids.size == 0:
                raise ModelError("INVALID_ARGUMENT", "no semantic tokens to vocode")
            wav = self.vocoder(global_ids, semantic_ids)
            return pb_utils.InferenceResponse([tensor("waveform", wav.astype(np.float32))])
        except Exception as exc:  # every failure goes back to the caller, typed
            return pb_utils.InferenceResponse(error=triton_error(exc))
