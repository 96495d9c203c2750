"""A called model's error keeps its status when spark_tts passes it on."""

import pytest

from triton_serving.errors import ModelError


@pytest.mark.parametrize(("message", "status", "text"), [
    ("UNAVAILABLE: the LLM server at http://127.0.0.1:8003 is not reachable",
     "UNAVAILABLE", "UNAVAILABLE: llm: the LLM server at http://127.0.0.1:8003 is not reachable"),
    ("INVALID_ARGUMENT: the prompt is 5000 tokens", "INVALID_ARGUMENT",
     "INVALID_ARGUMENT: llm: the prompt is 5000 tokens"),
    ("Segmentation fault: stub died", "INTERNAL", "INTERNAL: llm: Segmentation fault: stub died"),
    ("no status at all", "INTERNAL", "INTERNAL: llm: no status at all"),
])
def test_a_called_models_status_is_kept_when_it_names_one(message, status, text):
    error = ModelError.passed_on("llm", message)
    assert (error.status, str(error)) == (status, text)
