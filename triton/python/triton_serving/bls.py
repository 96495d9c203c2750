"""Calls from one Triton model to another (BLS), with inputs and outputs as numpy
arrays by name, so that the code deciding what to call needs no Triton."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import triton_python_backend_utils as pb_utils

from triton_serving.errors import ModelError
from triton_serving.tensors import tensor


def _request(model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str],
             **extra) -> pb_utils.InferenceRequest:
    return pb_utils.InferenceRequest(
        model_name=model, inputs=[tensor(name, value) for name, value in inputs.items()],
        requested_output_names=list(outputs), **extra,
    )


def call(model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> list[np.ndarray]:
    """One call's ``outputs``, in order; a failed call raises with the callee's message."""
    response = _request(model, inputs, outputs).exec()
    if response.has_error():
        raise ModelError("INTERNAL", f"{model}: {response.error().message()}")
    return [pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs]


def stream(model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str],
           request_id: str) -> Iterator[tuple[dict[str, np.ndarray], str | None]]:
    """A decoupled call, sent now; its responses as they come, each as (its outputs by
    name, those it carries; None) or, where the callee failed, ({}, its message)."""
    responses = _request(model, inputs, outputs, request_id=request_id).exec(decoupled=True)
    return (_reply(response, outputs) for response in responses)


def _reply(response, outputs: Sequence[str]) -> tuple[dict[str, np.ndarray], str | None]:
    if response.has_error():
        return {}, response.error().message()
    found = {}
    for name in outputs:
        output = pb_utils.get_output_tensor_by_name(response, name)
        if output is not None:
            found[name] = output.as_numpy()
    return found, None
