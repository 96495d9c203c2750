"""Where every process of the local stack listens, and what it serves."""

from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from edge.config import MAX_BODY_BYTES
from edge.limits import MAX_TRUSTED_PROXY_HOPS, EdgeRateLimit, check_limits
from edge.security import EdgeJwt, EdgeTls, check_jwks
from localstack.prepare.model_repo import parse_instances
from services.common.settings import InternalTls, SettingsError, check_port, env_field, from_env

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
    "vllm_port",
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
    # The vLLM server of the Spark LLM (localstack/vllm.py): its environment
    # (make vllm-env), eager mode (auto: on the CPU only), the CPU KV cache in GiB
    # and, on a GPU, the fraction of its memory vLLM takes. (Not VLLM_*: vLLM reads
    # variables of that prefix itself; VLLM_PORT is one of its own.)
    vllm_port: int = env_field("LLM_SERVER_PORT", 8003)
    vllm_venv: Path = env_field("LLM_SERVER_VENV", Path(".venv-vllm"))
    vllm_eager: str = env_field("LLM_SERVER_EAGER", "auto")
    vllm_cpu_kv_cache_gib: int = env_field("LLM_SERVER_CPU_KV_CACHE_GIB", 1)
    vllm_gpu_memory_utilization: float = env_field("LLM_SERVER_GPU_MEMORY_UTILIZATION", 0.5)
    model_repo: Path = env_field("TRITON_MODEL_REPO", Path("triton/model_repo"))
    # Instances per Triton model, "llm=2,vocoder=2"; unnamed models get one.
    triton_instances: str = env_field("TRITON_INSTANCES", "")
    # auto: CUDA when a GPU is visible, else CPU; or cpu, cuda, cuda:N.
    spark_tts_device: str = env_field("SPARK_TTS_DEVICE", "auto")
    # The TTS engine of requests that name none: spark, piper, or auto (Spark TTS
    # when its weights are installed, else Piper, which speaks real words on any CPU).
    tts_engine: str = env_field("STACK_TTS_ENGINE", "auto")
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
    # The edge's security, each off when unset (docs/security.md): TLS from a PEM
    # certificate (chain) and key; JWT auth against a JWKS of public keys;
    # browser origins allowed by CORS (comma-separated).
    edge_tls_cert: Path | None = env_field("EDGE_TLS_CERT", None)
    edge_tls_key: Path | None = env_field("EDGE_TLS_KEY", None)
    edge_jwks_file: Path | None = env_field("EDGE_JWKS_FILE", None)
    edge_jwt_issuer: str = env_field("EDGE_JWT_ISSUER", "")
    edge_jwt_audience: tuple[str, ...] = env_field("EDGE_JWT_AUDIENCE", ())
    edge_jwt_write_scope: str = env_field("EDGE_JWT_WRITE_SCOPE", "")
    edge_cors_origins: tuple[str, ...] = env_field("EDGE_CORS_ORIGINS", ())
    # The edge's limits (docs/security.md, edge/limits.py): the
    # largest REST body; calls in flight to the gateways and calls waiting for a
    # connection; per-client calls a second (0: off) and burst.
    edge_max_body_bytes: int = env_field("EDGE_MAX_BODY_BYTES", MAX_BODY_BYTES)
    edge_max_concurrent_streams: int = env_field("EDGE_MAX_CONCURRENT_STREAMS", 1000)
    edge_max_queue: int = env_field("EDGE_MAX_QUEUE", 1000)
    edge_rate_limit_per_second: float = env_field("EDGE_RATE_LIMIT_PER_SECOND", 0.0)
    edge_rate_limit_burst: int = env_field("EDGE_RATE_LIMIT_BURST", 10)
    # Proxies in front of the edge that append the address they saw to X-Forwarded-For
    # (a load balancer); 0: the client is the TCP peer, whatever X-Forwarded-For says.
    edge_trusted_proxy_hops: int = env_field("EDGE_TRUSTED_PROXY_HOPS", 0)
    # Mutual TLS between every internal hop (edge -> gateway -> TTS / RVC, TTS ->
    # Triton's gRPC): off unless INTERNAL_TLS_CERT, _KEY and _CA are set.
    internal_tls: InternalTls = dataclasses.field(default_factory=InternalTls)

    def validate(self) -> None:
        if self.tts_engine not in ("auto", "spark", "piper"):
            raise SettingsError(
                f"STACK_TTS_ENGINE={self.tts_engine!r}: expected auto, spark or piper")
        try:
            parse_instances(self.triton_instances)
        except ValueError as exc:
            raise SettingsError(f"TRITON_INSTANCES: {exc}") from None
        if self.spark_tts_device not in ("auto", "cpu") and not self.spark_tts_device.startswith(
            "cuda"
        ):
            raise SettingsError(f"SPARK_TTS_DEVICE={self.spark_tts_device!r}: auto, cpu or cuda[:N]")
        if self.vllm_eager not in ("auto", "on", "off"):
            raise SettingsError(f"LLM_SERVER_EAGER={self.vllm_eager!r}: expected auto, on or off")
        if not 1 <= self.vllm_cpu_kv_cache_gib <= 1024:
            raise SettingsError(f"LLM_SERVER_CPU_KV_CACHE_GIB={self.vllm_cpu_kv_cache_gib}: "
                                "expected 1..1024 (GiB)")
        if not 0 < self.vllm_gpu_memory_utilization < 1:
            raise SettingsError(f"LLM_SERVER_GPU_MEMORY_UTILIZATION={self.vllm_gpu_memory_utilization:g}: "
                                "expected a fraction between 0 and 1")
        for name, var in (("tts_cpu_threads", "STACK_TTS_CPU_THREADS"),
                          ("rvc_cpu_threads", "STACK_RVC_CPU_THREADS")):
            if not 0 <= getattr(self, name) <= 1024:
                raise SettingsError(f"{var}={getattr(self, name)}: expected 0..1024")
        for name in PORT_FIELDS:
            check_port(name, getattr(self, name))
        ports = [getattr(self, name) for name in PORT_FIELDS]
        if len(set(ports)) != len(ports):
            raise SettingsError(f"the stack's ports must all differ: {ports}")
        self._validate_edge_security()
        try:
            check_limits(
                self.edge_max_body_bytes, self.edge_max_concurrent_streams, self.edge_max_queue,
                self.edge_rate_limit_per_second, self.edge_rate_limit_burst,
            )
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        if not 0 <= self.edge_trusted_proxy_hops <= MAX_TRUSTED_PROXY_HOPS:
            raise SettingsError(f"EDGE_TRUSTED_PROXY_HOPS={self.edge_trusted_proxy_hops}: "
                                f"expected 0..{MAX_TRUSTED_PROXY_HOPS}")

    def _validate_edge_security(self) -> None:
        if (self.edge_tls_cert is None) != (self.edge_tls_key is None):
            raise SettingsError("EDGE_TLS_CERT and EDGE_TLS_KEY: set both, or neither")
        if self.edge_jwks_file is None and (self.edge_jwt_issuer or self.edge_jwt_audience
                                            or self.edge_jwt_write_scope):
            raise SettingsError("EDGE_JWT_ISSUER/EDGE_JWT_AUDIENCE/EDGE_JWT_WRITE_SCOPE need "
                                "EDGE_JWKS_FILE")
        for var, path in (("EDGE_TLS_CERT", self.edge_tls_cert),
                          ("EDGE_TLS_KEY", self.edge_tls_key),
                          ("EDGE_JWKS_FILE", self.edge_jwks_file)):
            if path is not None and not path.is_file():
                raise SettingsError(f"{var}={path}: no such file")
        if self.edge_tls_cert is not None and b"-----BEGIN" not in self.edge_tls_cert.read_bytes():
            raise SettingsError(f"EDGE_TLS_CERT={self.edge_tls_cert}: not a PEM certificate")
        if self.edge_jwks_file is not None:
            try:
                check_jwks(self.edge_jwks_file.read_text())
            except ValueError as exc:
                raise SettingsError(f"EDGE_JWKS_FILE={self.edge_jwks_file}: {exc}") from None
        for origin in self.edge_cors_origins:
            if not origin.startswith(("https://", "http://")) or origin.endswith("/"):
                raise SettingsError(
                    f"EDGE_CORS_ORIGINS: {origin!r} is not an origin (scheme://host[:port])"
                )

    def edge_tls(self) -> EdgeTls | None:
        if self.edge_tls_cert is None or self.edge_tls_key is None:
            return None
        return EdgeTls(cert=self.edge_tls_cert.resolve(), key=self.edge_tls_key.resolve())

    def edge_jwt(self) -> EdgeJwt | None:
        if self.edge_jwks_file is None:
            return None
        return EdgeJwt(
            jwks=self.edge_jwks_file.resolve(),
            issuer=self.edge_jwt_issuer,
            audiences=self.edge_jwt_audience,
            write_scope=self.edge_jwt_write_scope,
        )

    def edge_rate_limit(self) -> EdgeRateLimit | None:
        if not self.edge_rate_limit_per_second:
            return None
        return EdgeRateLimit(self.edge_rate_limit_per_second, self.edge_rate_limit_burst)

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
