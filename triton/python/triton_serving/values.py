"""A request's input values and a model's parameters, read without Triton's module.

The orchestrators (spark_synthesis, token_stream, piper_serving.synthesis) read
their inputs through ``Inputs``, a lookup by name that a model builds from its
request (``Inputs(lambda name: tensors.optional(request, name))``) and a test
from a dict (``Inputs(values.get)``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import numpy as np

from triton_serving.errors import ModelError


def require(value: np.ndarray | None, name: str) -> np.ndarray:
    """``value``, the input called ``name``; INVALID_ARGUMENT when it was not given."""
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


class Inputs:
    """A request's inputs by name: ``lookup(name)`` is the input's array, or None."""

    def __init__(self, lookup: Callable[[str], np.ndarray | None]) -> None:
        self._lookup = lookup

    def optional(self, name: str) -> np.ndarray | None:
        return self._lookup(name)

    def required(self, name: str) -> np.ndarray:
        return require(self._lookup(name), name)

    def text(self, name: str) -> str:
        return text(self._lookup(name))

    def scalar(self, name: str, default):
        return scalar(self._lookup(name), default)


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
