"""RVC worker scaling: one request alone, then two at once, on 1 and 2 workers.

    python -m bench.rvc_workers [--seconds 4] [--rounds 3]

Starts the real RVC service (``python -m services.rvc``) on generated untrained
voices (same architecture and code path as real ones, tiny widths) and times
whole-clip conversions over gRPC on loopback. Prints a table and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from voice.v1 import rvc_pb2, rvc_pb2_grpc

from localstack.config import free_ports
from services.common.audio import PcmAudio
from services.common.audio_proto import audio_to_proto
from services.rvc.tiny_models import voice_name, write_tiny_models

REPO = Path(__file__).resolve().parents[1]


def speech_like(seconds: float, rate: int = 16_000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(180 + 50 * np.sin(2 * np.pi * 0.5 * t)) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 10))
    return (0.25 * voiced * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)).astype(np.float32)


async def wait_serving(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), 120)
        call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=300)
        async for reply in call:
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                call.cancel()
                return


async def measure(root: Path, workers: int, seconds: float, rounds: int, method: int) -> dict:
    port, metrics = free_ports(2)
    env = {**os.environ, "RVC_GRPC_PORT": str(port), "RVC_METRICS_PORT": str(metrics),
           "RVC_MODELS_DIR": str(root / "voices"), "RVC_ASSETS_DIR": str(root / "assets"),
           "RVC_WORKERS": str(workers), "RVC_DEVICE": os.environ.get("RVC_DEVICE", "auto"),
           "LOG_LEVEL": "WARNING"}
    service = subprocess.Popen([sys.executable, "-m", "services.rvc"], cwd=REPO, env=env)
    address = f"127.0.0.1:{port}"
    try:
        await wait_serving(address)
        request = rvc_pb2.ConvertRequest(
            params=rvc_pb2.ConversionParams(model=voice_name("v2", True, 48_000), f0_method=method),
            audio=audio_to_proto(PcmAudio(speech_like(seconds), 16_000)),
        )
        async with grpc.aio.insecure_channel(address) as channel:
            stub = rvc_pb2_grpc.VoiceConversionStub(channel)

            async def timed(n: int) -> float:
                start = time.perf_counter()
                await asyncio.gather(*(stub.Convert(request, timeout=600) for _ in range(n)))
                return time.perf_counter() - start

            await timed(workers)  # warm every worker
            one = statistics.median([await timed(1) for _ in range(rounds)])
            two = statistics.median([await timed(2) for _ in range(rounds)])
        return {"workers": workers, "one": one, "two": two}
    finally:
        service.terminate()
        service.wait(60)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="audio per request")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--f0", default="F0_METHOD_HARVEST")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_tiny_models(Path(tmp) / "rvc")
        rows = [await measure(root, w, args.seconds, args.rounds, getattr(rvc_pb2, args.f0))
                for w in (1, 2)]
    print(f"\nRVC whole-clip conversion, {args.seconds:g} s of audio per request, "
          f"{args.f0}, {os.cpu_count()} CPUs, median of {args.rounds}:")
    print("| workers | 1 request (s) | 2 concurrent (s) | 2 concurrent / 1 alone |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['workers']} | {row['one']:.2f} | {row['two']:.2f} | "
              f"{row['two'] / row['one']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
