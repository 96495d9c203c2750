"""piper_serving.voices' loading helpers: the device choice and the load log."""

from pathlib import Path

import pytest

from piper_serving.voices import logged, use_cuda


@pytest.mark.parametrize("on_gpu", [False, True])
def test_cpu_is_never_cuda(on_gpu):
    assert use_cuda("cpu", on_gpu) is False


@pytest.mark.parametrize("choice", ["gpu", "", "CUDA"])
def test_an_unknown_device_is_refused(choice):
    with pytest.raises(ValueError, match="piper_device must be auto, cpu or cuda"):
        use_cuda(choice, True)


def test_auto_off_a_gpu_is_the_cpu():
    assert use_cuda("auto", False) is False


def test_each_load_is_logged_with_the_voices_name():
    logs, loads = [], []

    def load(model, config):
        loads.append((model, config))
        return "voice"

    logged_load = logged(load, logs.append)
    assert logged_load(Path("/v/en_GB-x.onnx"), Path("/v/en_GB-x.onnx.json")) == "voice"
    assert loads == [(Path("/v/en_GB-x.onnx"), Path("/v/en_GB-x.onnx.json"))]
    assert len(logs) == 1 and logs[0].startswith("piper: loaded voice en_GB-x in ")
    assert logs[0].endswith(" s")
