"""triton_serving.values: reading a request's inputs without Triton."""

import numpy as np
import pytest

from triton_serving.errors import ModelError
from triton_serving.values import Inputs


def test_inputs_read_through_the_lookup():
    inputs = Inputs({"text": np.array([["héllo".encode()]], np.object_),
                     "seed": np.array([[7]], np.uint64),
                     "empty": np.zeros(0, np.float32)}.get)
    assert inputs.text("text") == "héllo"
    assert inputs.text("missing") == "" and inputs.text("empty") == ""
    assert inputs.scalar("seed", None) == 7 and isinstance(inputs.scalar("seed", None), int)
    assert inputs.scalar("missing", 1.5) == 1.5 and inputs.scalar("empty", 2) == 2
    assert inputs.optional("missing") is None
    assert inputs.required("seed").tolist() == [[7]]


def test_a_missing_required_input_is_invalid():
    with pytest.raises(ModelError) as caught:
        Inputs({}.get).required("prompt")
    assert str(caught.value) == "INVALID_ARGUMENT: input prompt is required"


def test_text_that_is_not_utf8_is_invalid():
    with pytest.raises(ModelError) as caught:
        Inputs({"text": np.array([b"\xff"], np.object_)}.get).text("text")
    assert caught.value.status == "INVALID_ARGUMENT"
