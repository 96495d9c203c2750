"""Triton model: Piper TTS (VITS voices in ONNX), one streamed response per sentence.
A shell: the work is piper_serving.synthesis's; this file speaks Triton."""

from functools import partial

import numpy as np
import triton_python_backend_utils as pb_utils

from piper_serving.synthesis import PiperSynthesis
from piper_serving.voices import PiperVoices, logged, piper_loader, use_cuda
from triton_serving.side_by_side import SideBySide
from triton_serving.tensors import optional, tensor
from triton_serving.values import Inputs, parameter


def names(values) -> np.ndarray:
    return np.array([v.encode() for v in values], dtype=np.object_)


class TritonPythonModel(SideBySide):
    def initialize(self, args):
        cuda = use_cuda(parameter(args, "piper_device", "auto"),
                        args.get("model_instance_kind") == "GPU")
        self.voices = PiperVoices(
            parameter(args, "piper_voices_dir") or None,
            parameter(args, "piper_default_voice"),
            loader=logged(piper_loader(cuda), pb_utils.Logger.log_info),
        )
        # The default voice is loaded now: a broken one fails the model, not a request.
        self.voices.get("")
        self.synthesis = PiperSynthesis(self.voices)
        self.start_pool(int(parameter(args, "piper_max_concurrency", "2")))

    def answer(self, request, sender):
        def send(response):
            listing = [] if response.voices is None else [
                tensor("voices", names(response.voices))]
            sender.send(pb_utils.InferenceResponse(listing + [
                tensor("waveform", response.audio),
                tensor("sample_rate", np.array([response.sample_rate], np.int32)),
                tensor("voice", names([response.voice])),
                tensor("final", np.array([response.final], np.bool_)),
            ]))

        self.synthesis.answer(Inputs(partial(optional, request)), send, request.is_cancelled)
