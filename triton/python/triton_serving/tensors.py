"""Reading request inputs and making output tensors in Triton's Python backend
(the values read are decoded by triton_serving.values, which needs no Triton)."""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils

from triton_serving.values import require


def optional(request, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def required(request, name: str) -> np.ndarray:
    return require(optional(request, name), name)


def tensor(name: str, array) -> pb_utils.Tensor:
    return pb_utils.Tensor(name, np.ascontiguousarray(array))
