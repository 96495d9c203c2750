"""The local stack the bench and the soak start: free ports, a run directory, the
LLM decoded by vLLM or by the transformers loop it replaced; and a watch that
restarts a process that dies, as `make run` does.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from bench.legacy_llm.repo import CPU_CONCURRENCY, GPU_CONCURRENCY, legacy_model_repo

REPO = Path(__file__).resolve().parents[1]
# Semantic tokens per sentence on the local stack (2 s of speech): its models are
# random weights, which run every sentence to the service's cap otherwise.
LOCAL_MAX_TOKENS = 100
# What decodes the Spark LLM behind Triton's llm model: vLLM (the stack as it is), or
# the transformers loop it replaced (bench/legacy_llm), kept for this comparison only.
ENGINES = ("vllm", "transformers")


def start_stack(run_dir: Path, models_dir: Path | None = None, engine: str = "vllm"):
    """The local stack on free ports, on ``models_dir`` (None: generated tiny models),
    its LLM decoded by ``engine``: vllm (the stack as it is), or transformers (the
    llm model of bench/legacy_llm, spark_tts's old concurrency cap, and no vLLM)."""
    from localstack import components
    from localstack.config import StackConfig
    from localstack.supervise.supervisor import Supervisor

    if engine not in ENGINES:
        raise ValueError(f"LLM engine {engine!r}: one of {', '.join(ENGINES)}")
    config = dataclasses.replace(
        StackConfig.load(), run_dir=run_dir, models_dir=models_dir or run_dir / "models",
        model_repo=REPO / "triton" / "model_repo", descriptor=REPO / "gen" / "voice_v1.pb",
    ).with_free_ports()
    if engine == "transformers":
        # As localstack/components.py decides where the models run.
        gpu = (components.gpu_visible() if config.spark_tts_device == "auto"
               else config.spark_tts_device != "cpu")
        repo = legacy_model_repo(config.model_repo, run_dir / "legacy-model-repo",
                                 GPU_CONCURRENCY if gpu else CPU_CONCURRENCY)
        config = dataclasses.replace(config, model_repo=repo)
    specs = components.build(config, REPO)
    if engine == "transformers":  # nothing asks the vLLM server: it would only take memory
        specs = [spec for spec in specs if spec.name != "vllm"]
    supervisor = Supervisor(specs, run_dir / "logs")
    try:
        supervisor.start(timeout=max(config.startup_timeout, 300))
    except BaseException:
        supervisor.stop(timeout=30)
        raise
    return config, supervisor


def watch(supervisor, stop: threading.Event) -> None:
    try:
        supervisor.watch(stop)
    except Exception as exc:  # a process that keeps dying: the run goes on, with errors
        print(f"stack: {exc}", flush=True)
