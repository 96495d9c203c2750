"""python -m services.rvc"""

from __future__ import annotations

import asyncio
import logging
import os

from voice.v1 import rvc_pb2, rvc_pb2_grpc

from services.common.metrics import ServerMetrics
from services.common.server import ServiceHost, Servicer, run_service
from services.rvc import metrics as rvc_metrics
from services.rvc.conversion import Converter
from services.rvc.model_store import ModelStore
from services.rvc.servicer import VoiceConversionServicer
from services.rvc.settings import RvcSettings
from services.rvc.worker_pool import WorkerPool
from services.rvc.worker_pool_types import PoolConfig

log = logging.getLogger(__name__)


def worker_devices(settings: RvcSettings) -> tuple[str, ...]:
    """One device per worker: spread over the visible GPUs, else all on the CPU."""
    device = settings.device
    if device == "auto":
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not gpus:
            return ("cpu",) * settings.workers
        return tuple(f"cuda:{i % gpus}" for i in range(settings.workers))
    if device == "cuda":
        device = "cuda:0"
    return (device,) * settings.workers


def pool_config(settings: RvcSettings) -> PoolConfig:
    devices = worker_devices(settings)
    cpu_workers = sum(d == "cpu" for d in devices)
    # CPU workers share the cores (or RVC_CPU_THREADS) instead of each spawning a
    # thread per core.
    budget = settings.cpu_threads or os.cpu_count() or 1
    threads = max(1, budget // cpu_workers) if cpu_workers else 0
    return PoolConfig(
        handler="services.rvc.worker:create",
        handler_args={
            "models_dir": str(settings.models_dir.resolve()),
            "assets_dir": str(settings.assets_dir.resolve()),
            "voice_cache": settings.voice_cache,
            "threads": threads,
        },
        devices=devices,
        max_queue=settings.max_queue,
        start_timeout=settings.worker_start_seconds,
        name="rvc-worker",
    )


async def build(settings: RvcSettings) -> ServiceHost:
    pool = WorkerPool(pool_config(settings))
    metrics = ServerMetrics()
    conversions = rvc_metrics.register(metrics.registry, pool, asyncio.get_running_loop())
    converter = Converter(
        settings, ModelStore(settings.models_dir, settings.model), pool, conversions
    )
    servicer = Servicer(
        VoiceConversionServicer(converter),
        rvc_pb2_grpc.add_VoiceConversionServicer_to_server,
        rvc_pb2.DESCRIPTOR.services_by_name["VoiceConversion"].full_name,
    )

    async def start_pool() -> None:
        try:
            await pool.start()
        except Exception as exc:
            # Without workers this service can do nothing: exit and let the supervisor
            # (make run, Kubernetes) restart it, with the reason as the last log line.
            log.critical("RVC workers failed to start: %s", exc)
            logging.shutdown()
            os._exit(3)

    starting = asyncio.create_task(start_pool())

    async def ready() -> bool:
        return converter.ready

    async def stop_pool() -> None:
        starting.cancel()
        await pool.stop()

    # Health is NOT_SERVING until the workers have loaded their models.
    return ServiceHost(
        settings.server, [servicer], readiness=ready, readiness_interval=0.5,
        on_stop=[stop_pool], metrics=metrics, env_prefix="RVC",
    )


if __name__ == "__main__":
    run_service("rvc", RvcSettings.load, build)
