"""Triton model: Piper TTS (VITS voices in ONNX), one streamed response per sentence."""

import time

import numpy as np
import triton_python_backend_utils as pb_utils

from piper_serving.voices import PiperVoices, UnknownVoice, piper_loader, synthesis_config
from spark_serving.errors import ModelError
from spark_serving.side_by_side import SideBySide
from spark_serving.tensors import optional, parameter, required, scalar, tensor, text


def use_cuda(args) -> bool:
    """``auto`` means CUDA when this instance was placed on a GPU and onnxruntime has it."""
    choice = parameter(args, "piper_device", "auto")
    if choice not in ("auto", "cpu", "cuda"):
        raise ValueError(f"piper_device must be auto, cpu or cuda, not {choice!r}")
    if choice == "cpu":
        return False
    import onnxruntime

    available = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if choice == "cuda" and not available:
        raise ValueError("piper_device is cuda but onnxruntime has no CUDAExecutionProvider")
    return available and (choice == "cuda" or args.get("model_instance_kind") == "GPU")


def logged(load):
    """The loader, logging each voice it loads (a load takes about a second)."""

    def load_and_log(model, config):
        start = time.monotonic()
        voice = load(model, config)
        pb_utils.Logger.log_info(
            f"piper: loaded voice {model.stem} in {time.monotonic() - start:.1f} s"
        )
        return voice

    return load_and_log


def names(values) -> np.ndarray:
    return np.array([v.encode() for v in values], dtype=np.object_)


class TritonPythonModel(SideBySide):
    def initialize(self, args):
        cuda = use_cuda(args)
        self.voices = PiperVoices(
            parameter(args, "piper_voices_dir") or None,
            parameter(args, "piper_default_voice"),
            loader=logged(piper_loader(cuda)),
        )
        # The default voice is loaded now: a broken one fails the model, not a request.
        self.voices.get("")
        self.start_pool(int(parameter(args, "piper_max_concurrency", "2")))

    def answer(self, request, sender):
        listing = optional(request, "list_voices")
        if listing is not None and listing.size and bool(listing.reshape(-1)[0]):
            self._list(sender)
        else:
            self._synthesize(request, sender)

    def _list(self, sender):
        sender.send(pb_utils.InferenceResponse([
            tensor("voices", names(self.voices.names())),
            tensor("voice", names([self.voices.default_name()])),
            tensor("waveform", np.zeros(0, np.float32)),
            tensor("sample_rate", np.array([0], np.int32)),
            tensor("final", np.array([True], np.bool_)),
        ]))

    def _synthesize(self, request, sender):
        body = text(required(request, "text")).strip()
        if not body:
            raise ModelError("INVALID_ARGUMENT", "text is empty")
        try:
            name = self.voices.resolve(text(optional(request, "voice")))
            voice = self.voices.get(name)
        except UnknownVoice as exc:
            raise ModelError("NOT_FOUND", str(exc)) from None
        try:
            config = synthesis_config(
                scalar(optional(request, "speaker"), None),
                scalar(optional(request, "length_scale"), None),
                voice.config.num_speakers,
            )
        except ValueError as exc:
            raise ModelError("INVALID_ARGUMENT", str(exc)) from None

        def emit(audio, final):
            sender.send(pb_utils.InferenceResponse([
                tensor("waveform", audio.astype(np.float32)),
                tensor("sample_rate", np.array([voice.config.sample_rate], np.int32)),
                tensor("voice", names([name])),
                tensor("final", np.array([final], np.bool_)),
            ]))

        # Each step synthesises one sentence; the client may leave between any two.
        sentences = iter(voice.synthesize(body, config))
        spoken = 0
        while True:
            if request.is_cancelled():
                raise ModelError("CANCELLED", "the client cancelled the request")
            chunk = next(sentences, None)
            if chunk is None:
                break
            if chunk.audio_float_array.size:
                emit(chunk.audio_float_array, final=False)
                spoken += 1
        if not spoken:
            raise ModelError("INVALID_ARGUMENT", "the text has nothing to speak")
        emit(np.zeros(0, np.float32), final=True)
