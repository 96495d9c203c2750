"""Two RVC service instances behind one gateway: concurrent work reaches both.

The gateway's RVC target is a name that resolves to both addresses (as a
Kubernetes headless Service resolves to one address per pod); its channel
balances calls per instance instead of pinning them all to one connection.
"""

import asyncio

import grpc
import numpy as np
import pytest
from voice.v1 import gateway_pb2, gateway_pb2_grpc, rvc_pb2, rvc_pb2_grpc

from services.common.audio import PcmAudio
from services.common.audio_proto import audio_to_proto
from services.stack import components
from services.stack.config import free_ports
from services.stack.models import TINY_RVC_DIR
from services.stack.supervisor import Supervisor
from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration
REQUESTS = 8


@pytest.fixture
def two_rvc_one_gateway(stack, tmp_path):
    generated = stack.config.run_dir / "models" / TINY_RVC_DIR
    rvc_a, metrics_a, rvc_b, metrics_b, gateway, gateway_metrics = free_ports(6)
    rvc_env = {
        "RVC_MODELS_DIR": str(generated / "voices"),
        "RVC_ASSETS_DIR": str(generated / "assets"),
        "RVC_WORKERS": "1",
    }
    specs = [
        components.service_spec(REPO, "rvc", "RVC", rvc_a, metrics_a, rvc_env),
        components.service_spec(REPO, "rvc", "RVC", rvc_b, metrics_b, rvc_env),
        components.service_spec(REPO, "gateway", "GATEWAY", gateway, gateway_metrics, {
            "TTS_TARGET": f"127.0.0.1:{stack.config.tts_port}",
            "RVC_TARGET": f"ipv4:127.0.0.1:{rvc_a},127.0.0.1:{rvc_b}",
        }),
    ]
    # Two processes named rvc share a log otherwise.
    specs[1].name = "rvc-b"
    supervisor = Supervisor(specs, tmp_path / "logs")
    try:
        # Generous: a loaded machine takes longer to bring Triton up; readiness ends the wait.
        supervisor.start(timeout=300)
        yield gateway, (rvc_a, rvc_b)
    finally:
        supervisor.stop(timeout=30)


async def test_concurrent_conversions_through_the_gateway_reach_both_instances(two_rvc_one_gateway):
    gateway, instances = two_rvc_one_gateway
    t = np.arange(16_000) / 16_000
    audio = audio_to_proto(PcmAudio((0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16_000))
    request = rvc_pb2.ConvertRequest(
        params=rvc_pb2.ConversionParams(model="untrained-v2-f0-48k", f0_method=rvc_pb2.F0_METHOD_PM),
        audio=audio,
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway}") as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        # GetStatus asks RVC over the channel conversions use: it connects to both
        # instances first, so the burst below does not all land on whichever was
        # connected (and reported serving) first.
        for _ in range(4):
            await stub.GetStatus(gateway_pb2.GetStatusRequest(), timeout=30)
        replies = await asyncio.gather(*(stub.Rvc(request, timeout=240) for _ in range(REQUESTS)))
    assert all(r.audio.sample_rate == 48_000 for r in replies)
    done = []
    for port in instances:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            status = await rvc_pb2_grpc.VoiceConversionStub(channel).GetStatus(
                rvc_pb2.GetRvcStatusRequest(), timeout=30
            )
        done.append(sum(w.jobs_done for w in status.workers))
    # Every conversion ran once, and each instance took a share of them.
    print("conversions per instance:", done)
    assert sum(done) == REQUESTS, done
    assert min(done) >= REQUESTS // 4, done
