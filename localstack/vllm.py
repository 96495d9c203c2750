"""The vLLM server that decodes the Spark LLM: its command line, environment and probe.

It runs from its own environment (`make vllm-env`: .venv-vllm), beside Triton, whose
``llm`` model streams from it (triton_serving.vllm_client). The k8s manifests start
the same server with the same arguments (tests/unit/deploy checks them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SERVED_NAME = "spark-llm"
# KV cache blocks of 32 tokens: the smallest the CPU attention takes, so a shared
# prompt prefix (a voice's reference transcript) is reused to within 32 tokens.
CPU_BLOCK_SIZE = 32


@dataclass(frozen=True)
class VllmServer:
    python: Path
    llm_dir: Path
    host: str
    port: int
    gpu: bool
    # cpu: the KV cache's size in GiB (vLLM takes whole ones); gpu: the fraction of
    # GPU memory vLLM takes.
    cpu_kv_cache_gib: int = 1
    gpu_memory_utilization: float = 0.5
    # Eager mode (no torch.compile / CUDA graphs) starts in seconds instead of a
    # minute; "auto": eager on the CPU, compiled with CUDA graphs on a GPU.
    eager: str = "auto"
    cpu_threads: int = 1
    # The weights' dtype in vLLM: auto takes the checkpoint's (bf16 for Spark-TTS-0.5B;
    # vLLM runs a float32 one in bf16 on the CPU).
    dtype: str = "auto"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def argv(self) -> list[str]:
        eager = self.eager == "on" or (self.eager == "auto" and not self.gpu)
        args = [
            str(self.python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.llm_dir),
            "--served-model-name", SERVED_NAME,
            "--host", self.host,
            "--port", str(self.port),
            "--enable-prefix-caching",
            "--seed", "0",
            "--dtype", self.dtype,
            "--disable-uvicorn-access-log",
        ]
        if eager:
            args.append("--enforce-eager")
        if self.gpu:
            args += ["--gpu-memory-utilization", f"{self.gpu_memory_utilization:g}"]
        else:
            # One process on the CPU: the engine runs in the server (no engine core or
            # worker processes to start, and nothing to hand tokens across).
            args += ["--block-size", str(CPU_BLOCK_SIZE), "--distributed-executor-backend", "uni"]
        return args

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        # Its interpreter is not the project's: no project paths on it.
        env.pop("PYTHONPATH", None)
        env.update({
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "PYTHONUNBUFFERED": "1",
            # Its temporary files (the vllm_dist_* rendezvous file, ZeroMQ sockets) go
            # in /tmp, which the stack mounts privately for it (private_tmp.py): not a
            # deeper TMPDIR, since a socket's path must stay under 108 bytes.
            "TMPDIR": "/tmp",
        })
        if not self.gpu:
            env.update({
                "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
                "VLLM_CPU_KVCACHE_SPACE": str(self.cpu_kv_cache_gib),
                # No pinning: "auto" pins a thread to each core of the first NUMA node,
                # whatever else runs there (Triton's models, RVC) or a container's
                # CPU limit allows; OMP_NUM_THREADS threads float instead.
                "VLLM_CPU_OMP_THREADS_BIND": "nobind",
                "OMP_NUM_THREADS": str(self.cpu_threads),
            })
        return env


def python_of(venv: Path, repo: Path) -> Path:
    """The vLLM environment's interpreter (``venv`` relative to the repository)."""
    venv = venv if venv.is_absolute() else repo / venv
    python = venv / "bin" / "python"
    if not python.exists():
        raise FileNotFoundError(
            f"{python} not found: vLLM's environment is missing (make vllm-env installs it)"
        )
    return python
