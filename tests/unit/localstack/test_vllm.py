"""The vLLM server's command line and environment, and its settings in the stack."""

import dataclasses
from pathlib import Path

import pytest

from localstack import vllm
from localstack.config import StackConfig
from services.common.settings import SettingsError


def server(**changes) -> vllm.VllmServer:
    base = vllm.VllmServer(python=Path("/v/bin/python"), llm_dir=Path("/m/LLM"),
                           host="127.0.0.1", port=8003, gpu=False)
    return dataclasses.replace(base, **changes)


def flags(argv: list[str]) -> dict[str, str | None]:
    """--name value / --name pairs of an argv (after the module)."""
    out, key = {}, None
    for arg in argv[3:]:
        if arg.startswith("--"):
            key = arg
            out[key] = None
        else:
            out[key] = arg
    return out


def test_the_cpu_server_is_one_eager_process_with_small_cache_blocks():
    argv = server().argv()
    assert argv[:3] == ["/v/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    got = flags(argv)
    assert got["--model"] == "/m/LLM" and got["--served-model-name"] == "spark-llm"
    assert (got["--host"], got["--port"]) == ("127.0.0.1", "8003")
    assert "--enable-prefix-caching" in got and "--enforce-eager" in got
    assert got["--block-size"] == "32" and got["--distributed-executor-backend"] == "uni"
    assert "--gpu-memory-utilization" not in got
    env = server(cpu_threads=3, cpu_kv_cache_gib=4).env({"PYTHONPATH": "/repo", "HOME": "/h"})
    assert "PYTHONPATH" not in env and env["HOME"] == "/h"
    assert (env["VLLM_CPU_KVCACHE_SPACE"], env["OMP_NUM_THREADS"]) == ("4", "3")
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0" and env["HF_HUB_OFFLINE"] == "1"


def test_the_gpu_server_compiles_and_takes_its_share_of_memory():
    got = flags(server(gpu=True, gpu_memory_utilization=0.35).argv())
    assert got["--gpu-memory-utilization"] == "0.35"
    assert not {"--enforce-eager", "--block-size", "--distributed-executor-backend"} & set(got)
    env = server(gpu=True).env({})
    assert not [k for k in env if k.startswith("VLLM_CPU") or k == "VLLM_ENABLE_V1_MULTIPROCESSING"]
    assert "--enforce-eager" in flags(server(gpu=True, eager="on").argv())
    assert "--enforce-eager" not in flags(server(eager="off").argv())


def test_a_missing_environment_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="make vllm-env"):
        vllm.python_of(Path(".venv-vllm"), tmp_path)
    (tmp_path / "v" / "bin").mkdir(parents=True)
    (tmp_path / "v" / "bin" / "python").touch()
    assert vllm.python_of(Path("v"), tmp_path) == tmp_path / "v" / "bin" / "python"


@pytest.mark.parametrize(("change", "variable"), [
    ({"vllm_eager": "maybe"}, "LLM_SERVER_EAGER"),
    ({"vllm_cpu_kv_cache_gib": 0}, "LLM_SERVER_CPU_KV_CACHE_GIB"),
    ({"vllm_gpu_memory_utilization": 1.0}, "LLM_SERVER_GPU_MEMORY_UTILIZATION"),
    ({"vllm_gpu_memory_utilization": 0.0}, "LLM_SERVER_GPU_MEMORY_UTILIZATION"),
])
def test_bad_llm_server_settings_are_refused_naming_the_variable(change, variable):
    with pytest.raises(SettingsError, match=variable):
        dataclasses.replace(StackConfig(), **change).validate()


def test_the_llm_servers_port_is_one_of_the_stacks_distinct_ports():
    config = StackConfig()
    with pytest.raises(SettingsError, match="must all differ"):
        dataclasses.replace(config, vllm_port=config.triton_http_port).validate()
