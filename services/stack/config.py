"""Where every process of the local stack listens, and what it serves."""

from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from services.common.settings import SettingsError, check_port, env_field, from_env
from services.stack.model_repo import parse_instances

PORT_FIELDS = (
    "api_port",
    "envoy_admin_port",
    "gateway_port",
    "gateway_metrics_port",
    "tts_port",
    "tts_metrics_port",
    "rvc_port",
    "rvc_metrics_port",
    "triton_http_port",
    "triton_grpc_port",
    "triton_metrics_port",
)


@dataclass(frozen=True)
class StackConfig:
    # The public edge. Everything else binds to loopback only.
    api_host: str = env_field("API_HOST", "127.0.0.1")
    api_port: int = env_field("API_PORT", 8080)
    envoy_admin_port: int = env_field("ENVOY_ADMIN_PORT", 9901)
    gateway_port: int = env_field("GATEWAY_GRPC_PORT", 50051)
    gateway_metrics_port: int = env_field("GATEWAY_METRICS_PORT", 9101)
    tts_port: int = env_field("TTS_GRPC_PORT", 50052)
    tts_metrics_port: int = env_field("TTS_METRICS_PORT", 9102)
    rvc_port: int = env_field("RVC_GRPC_PORT", 50053)
    rvc_metrics_port: int = env_field("RVC_METRICS_PORT", 9103)
    triton_http_port: int = env_field("TRITON_HTTP_PORT", 8000)
    triton_grpc_port: int = env_field("TRITON_GRPC_PORT", 8001)
    triton_metrics_port: int = env_field("TRITON_METRICS_PORT", 8002)
    model_repo: Path = env_field("TRITON_MODEL_REPO", Path("triton/model_repo"))
    # Instances per Triton model, "llm=2,vocoder=2"; unnamed models get one.
    triton_instances: str = env_field("TRITON_INSTANCES", "")
    # auto: CUDA when a GPU is visible, else CPU; or cpu, cuda, cuda:N.
    spark_tts_device: str = env_field("SPARK_TTS_DEVICE", "auto")
    # Torch threads of Spark TTS (Triton's Python models) and of the RVC workers when
    # they run on the CPU; 0: half the cores each. They run at once (sentence k is
    # converted while k+1 is synthesised): threads beyond the cores spin and slow both.
    tts_cpu_threads: int = env_field("STACK_TTS_CPU_THREADS", 0)
    rvc_cpu_threads: int = env_field("STACK_RVC_CPU_THREADS", 0)
    models_dir: Path = env_field("MODELS_DIR", Path("models"))
    descriptor: Path = env_field("VOICE_DESCRIPTOR", Path("gen/voice_v1.pb"))
    run_dir: Path = env_field("STACK_RUN_DIR", Path(".run"))
    startup_timeout: float = env_field("STACK_STARTUP_TIMEOUT", 120.0)
    stop_timeout: float = env_field("STACK_STOP_TIMEOUT", 30.0)

    def validate(self) -> None:
        try:
            parse_instances(self.triton_instances)
        except ValueError as exc:
            raise SettingsError(f"TRITON_INSTANCES: {exc}") from None
        if self.spark_tts_device not in ("auto", "cpu") and not self.spark_tts_device.startswith(
            "cuda"
        ):
            raise SettingsError(f"SPARK_TTS_DEVICE={self.spark_tts_device!r}: auto, cpu or cuda[:N]")
        for name, var in (("tts_cpu_threads", "STACK_TTS_CPU_THREADS"),
                          ("rvc_cpu_threads", "STACK_RVC_CPU_THREADS")):
            if not 0 <= getattr(self, name) <= 1024:
                raise SettingsError(f"{var}={getattr(self, name)}: expected 0..1024")
        for name in PORT_FIELDS:
            check_port(name, getattr(self, name))
        ports = [getattr(self, name) for name in PORT_FIELDS]
        if len(set(ports)) != len(ports):
            raise SettingsError(f"the stack's ports must all differ: {ports}")

    def cpu_threads(self) -> tuple[int, int]:
        """(Spark TTS, RVC) torch threads on the CPU: the settings, else half the cores each."""
        cores = os.cpu_count() or 1
        tts = self.tts_cpu_threads or max(1, cores // 2)
        rvc = self.rvc_cpu_threads or max(1, cores - cores // 2)
        return tts, rvc

    @classmethod
    def load(cls) -> "StackConfig":
        return from_env(cls, "STACK")

    def with_free_ports(self) -> "StackConfig":
        """A copy listening on ports the kernel reports free now (tests run several stacks)."""
        return dataclasses.replace(self, **dict(zip(PORT_FIELDS, free_ports(len(PORT_FIELDS)), strict=True)))


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()
