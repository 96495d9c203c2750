"""Triton model: reference clip -> BiCodec tokens (spark_tts.AudioTokenizer)."""

import numpy as np
import triton_python_backend_utils as pb_utils

from spark_tts.audio_tokenizer import AudioTokenizer
from triton_serving.errors import ModelError, triton_error
from triton_serving.tensors import required, tensor
from triton_serving.values import device, parameter


class TritonPythonModel:
    def initialize(self, args):
        self.tokenizer = AudioTokenizer(parameter(args, "spark_tts_model_dir"), device(args))

    def execute(self, requests):
        return [self._one(request) for request in requests]

    def _one(self, request):
        try:
            wav = required(request, "reference_wav").astype(np.float32).reshape(-1)
            if wav.size == 0:
                raise ModelError("INVALID_ARGUMENT", "reference audio is empty")
            global_ids, semantic_ids = self.tokenizer.tokenize(wav)
            return pb_utils.InferenceResponse([
                tensor("global_tokens", np.asarray(global_ids, np.int32)),
                tensor("semantic_tokens", np.asarray(semantic_ids, np.int32)),
            ])
        except Exception as exc:  # every failure goes back to the caller, typed
            return pb_utils.InferenceResponse(error=triton_error(exc))
