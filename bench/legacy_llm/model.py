"""Triton model: Spark TTS LLM generation, streamed token by token (decoupled).

The ``llm`` model as it was before vLLM: the transformers decoding loop
(``loop.py``) in the Triton stub, one batch at a time (Triton's dynamic
batching). Kept only for ``python -m bench --llm-engine transformers``, which
serves it from a copy of the model repository (bench/legacy_llm/repo.py) with
``loop.py`` copied beside this file into ``llm/1/``: Triton's Python backend
puts the model's version folder on ``sys.path``, while the repository root
(where ``bench`` lives) is not on the stub's path.
"""

from functools import partial
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from loop import Job, SparkLlm  # llm/1/loop.py, copied from bench/legacy_llm/loop.py

from spark_tts.layout import LLM_DIR
from triton_serving.cancellation import CancelFlags
from triton_serving.errors import triton_error
from triton_serving.llm_io import KINDS, sampling_from, token_group
from triton_serving.tensors import optional, tensor
from triton_serving.values import Inputs, device, parameter, text

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def initialize(self, args):
        model_dir = Path(parameter(args, "spark_tts_model_dir"))
        self.llm = SparkLlm(model_dir / LLM_DIR, device(args))
        self.cancel_flags = CancelFlags(parameter(args, "spark_tts_cancel_dir"))

    def execute(self, requests):
        # One batched generation for everything Triton handed over together.
        jobs, states = [], []
        for request in requests:
            inputs = Inputs(partial(optional, request))
            state = _RequestState(request, self.cancel_flags, token_group(inputs))
            try:
                prompt = text(inputs.required("prompt"))
                jobs.append(Job(prompt, sampling_from(inputs), state.cancelled))
                states.append(state)
            except Exception as exc:  # a bad request fails alone
                state.finish(triton_error(exc))
        try:
            for index, token in self.llm.generate_many(jobs):
                if token is None:
                    states[index].finish()
                else:
                    states[index].send(token)
        except Exception as exc:  # the batch failed: every unfinished request hears why
            for state in states:
                if not state.done:
                    state.finish(triton_error(exc))
        return None


class _RequestState:
    """One request of a batch: its sender, cancellation and bookkeeping. Tokens leave
    in groups of ``group`` (the last group may be shorter), one response each."""

    def __init__(self, request, cancel_flags: CancelFlags, group: int = 1) -> None:
        self.request = request
        self.sender = request.get_response_sender()
        self.flag = request.request_id()
        self.flags = cancel_flags
        self.group = group
        self.pending = []
        self.produced = 0
        self.stopped = False
        self.done = False

    def cancelled(self) -> bool:
        # Never ask the request after its final response: Triton has freed it.
        if not self.done and not self.stopped:
            self.stopped = self.request.is_cancelled() or self.flags.is_set(self.flag)
        return self.stopped

    def send(self, token) -> None:
        self.produced += 1
        self.pending.append(token)
        if len(self.pending) >= self.group:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        self.sender.send(pb_utils.InferenceResponse([
            tensor("kind", np.array([[KINDS[t.kind] for t in self.pending]], np.int32)),
            tensor("index", np.array([[t.index for t in self.pending]], np.int32)),
        ]))
        self.pending = []

    def finish(self, error=None) -> None:
        if error is None and not self.stopped:
            self.flush()
        outcome = "cancelled" if self.stopped else "failed" if error else "finished"
        pb_utils.Logger.log_info(f"llm request {self.flag} {outcome} after {self.produced} tokens")
        self.flags.clear(self.flag)
        self.done = True
        if error is not None:
            self.sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)
        else:
            self.sender.send(flags=FINAL)
