"""Reading request inputs and making output tensors in Triton's Python backend."""

from __future__ import annotations

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

from spark_serving.errors import ModelError


def optional(request, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def required(request, name: str) -> np.ndarray:
    value = optional(request, name)
    if value is None:
        raise ModelError("INVALID_ARGUMENT", f"input {name} is required")
    return value


def text(value: np.ndarray | None) -> str:
    if value is None or value.size == 0:
        return ""
    item = value.reshape(-1)[0]
    try:
        return item.decode("utf-8") if isinstance(item, bytes) else str(item)
    except UnicodeDecodeError:
        raise ModelError("INVALID_ARGUMENT", "text inputs must be UTF-8") from None


def scalar(value: np.ndarray | None, default):
    return default if value is None or value.size == 0 else value.reshape(-1)[0].item()


def tensor(name: str, array) -> pb_utils.Tensor:
    return pb_utils.Tensor(name, np.ascontiguousarray(array))


def parameter(args: dict, name: str, default: str = "") -> str:
    """A model config parameter, overridable by the environment variable of the
    same name in upper case (so deployments need not edit config files)."""
    env = os.environ.get(name.upper())
    if env:
        return env
    parameters = json.loads(args["model_config"]).get("parameters", {})
    return parameters.get(name, {}).get("string_value", default) or default


def device(args: dict) -> str:
    """``auto`` means CUDA when this instance was placed on a GPU, else CPU."""
    choice = parameter(args, "spark_tts_device", "auto")
    if choice != "auto":
        return choice
    import torch

    if args.get("model_instance_kind") == "GPU" and torch.cuda.is_available():
        return f"cuda:{args.get('model_instance_device_id', '0')}"
    return "cpu"
