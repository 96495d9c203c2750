"""Scaled out, two of each: calls balanced over two RVC instances, and graceful drain when one of
two gateways, or one of two RVC instances, is restarted under load.

Two gateways stand behind one Envoy, and both send conversions to two RVC
instances (a name resolving to both addresses, as a headless Service does). A
steady load of streamed syntheses and conversions runs through the edge while
one instance gets SIGTERM in the middle of a call: it must finish what it
holds, take nothing new, exit, and, restarted by the supervisor as Kubernetes
would, take its share again. Not one request may fail.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import urllib.request

import grpc
import numpy as np
import pytest
from voice.v1 import gateway_pb2, gateway_pb2_grpc, rvc_pb2, rvc_pb2_grpc, tts_pb2

from edge.config import EdgeConfig
from edge.render import write
from localstack import components
from localstack.config import free_ports
from localstack.supervise.probes import http_ok
from localstack.supervise.supervisor import Supervisor
from services.common.audio import PcmAudio
from services.common.audio_proto import audio_to_proto
from tests.integration.stacks import REPO, envoy_spec, supervised

RVC_VOICE = "untrained-v2-f0-48k"
CONCURRENCY = 3
REQUEST_TIMEOUT = 60.0
# How long a restarted instance may take to come back and serve again.
RECOVERY_BOUND = 90.0


def _env_of(stack, name: str) -> dict[str, str]:
    return next(c.spec.env for c in stack.supervisor.children if c.spec.name == name)


class Fleet:
    def __init__(self, supervisor: Supervisor, api_port: int, metrics: dict[str, int],
                 grpc_ports: dict[str, int]) -> None:
        self.supervisor = supervisor
        self.api_port = api_port
        self.metrics = metrics
        self.grpc_ports = grpc_ports

    def child(self, name: str):
        return next(c for c in self.supervisor.children if c.spec.name == name)

    def counter(self, name: str, metric: str, method: str) -> float:
        """Sum of ``metric`` samples for ``method`` on instance ``name``'s /metrics (0 if down)."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics[name]}/metrics", timeout=2
            ) as reply:
                text = reply.read().decode()
        except OSError:
            return 0.0
        pattern = re.compile(rf'^{metric}{{[^}}]*grpc_method="{method}"[^}}]*}} (\S+)$', re.M)
        return sum(float(value) for value in pattern.findall(text))


@pytest.fixture(scope="module")
def fleet(stack, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("drain")
    (rvc_a, rvc_b, gw_a, gw_b, m_rvc_a, m_rvc_b, m_gw_a, m_gw_b,
     api, admin) = free_ports(10)
    rvc_env = {
        key: _env_of(stack, "rvc")[key] for key in ("RVC_MODELS_DIR", "RVC_ASSETS_DIR")
    }
    rvc_env.update({"RVC_WORKERS": "1", "RVC_CPU_THREADS": "1", "RVC_DRAIN_SECONDS": "30"})
    gateway_env = {
        "TTS_TARGET": f"127.0.0.1:{stack.config.tts_port}",
        "RVC_TARGET": f"ipv4:127.0.0.1:{rvc_a},127.0.0.1:{rvc_b}",
        "GATEWAY_VOICES_DIR": _env_of(stack, "gateway")["GATEWAY_VOICES_DIR"],
        "GATEWAY_DRAIN_SECONDS": "30",
    }
    specs = [
        components.service_spec(REPO, "rvc", "RVC", rvc_a, m_rvc_a, rvc_env),
        components.service_spec(REPO, "rvc", "RVC", rvc_b, m_rvc_b, rvc_env),
        components.service_spec(REPO, "gateway", "GATEWAY", gw_a, m_gw_a, gateway_env),
        components.service_spec(REPO, "gateway", "GATEWAY", gw_b, m_gw_b, gateway_env),
    ]
    for spec, name in zip(specs, ("rvc-a", "rvc-b", "gateway-a", "gateway-b"), strict=True):
        spec.name = name
    edge = EdgeConfig(
        descriptor=REPO / "gen" / "voice_v1.pb", gateway_host="127.0.0.1", gateway_port=gw_a,
        more_gateways=(("127.0.0.1", gw_b),), listen_host="127.0.0.1", listen_port=api,
        admin_port=admin,
    )
    # Ready when the gateways behind it see every service serving.
    specs.append(envoy_spec(write(edge, run_dir / "envoy.json"), admin, probe=http_ok(
        f"http://127.0.0.1:{api}/v1/health", lambda body: body.get("status") == "SERVING")))
    with supervised(specs=specs, logs=run_dir / "logs") as running:
        yield Fleet(running.supervisor, api,
                    {"rvc-a": m_rvc_a, "rvc-b": m_rvc_b, "gateway-a": m_gw_a, "gateway-b": m_gw_b},
                    {"rvc-a": rvc_a, "rvc-b": rvc_b, "gateway-a": gw_a, "gateway-b": gw_b})


def _tone() -> PcmAudio:
    t = np.arange(16_000) / 16_000
    return PcmAudio((0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16_000)


def _conversion() -> rvc_pb2.ConversionParams:
    return rvc_pb2.ConversionParams(model=RVC_VOICE, f0_method=rvc_pb2.F0_METHOD_PM)


class Load:
    """CONCURRENCY callers sending through the edge until stopped; every outcome kept."""

    def __init__(self, api_port: int) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{api_port}")
        self.stub = gateway_pb2_grpc.GatewayStub(self.channel)
        self.ok = 0
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    async def _stream(self) -> None:
        request = gateway_pb2.SynthesizeRequest(
            text="One. Two.", voice="demo-spark", conversion=_conversion(),
            sampling=tts_pb2.SamplingParams(seed=7, max_tokens=150),
        )
        pieces = 0
        async for _ in self.stub.SynthesizeStream(request, timeout=REQUEST_TIMEOUT):
            pieces += 1
        assert pieces > 0, "a stream with no audio"

    async def _convert(self) -> None:
        reply = await self.stub.Rvc(
            rvc_pb2.ConvertRequest(params=_conversion(), audio=audio_to_proto(_tone())),
            timeout=REQUEST_TIMEOUT,
        )
        assert reply.audio.sample_rate == 48_000

    async def _caller(self, kind: int) -> None:
        while not self._stop.is_set():
            try:
                await (self._stream() if kind % 2 == 0 else self._convert())
                self.ok += 1
            except grpc.aio.AioRpcError as exc:
                self.failures.append(f"{exc.code().name}: {exc.details()}")
            except AssertionError as exc:
                self.failures.append(str(exc))

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._caller(k)) for k in range(CONCURRENCY)]

    async def wait_ok(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.ok < count:
            assert time.monotonic() < deadline, f"only {self.ok} requests succeeded: {self.failures}"
            await asyncio.sleep(0.1)

    async def finish(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self.channel.close()


async def _poll(condition, timeout: float, what: str) -> float:
    """Seconds until ``condition()`` held; fails the test past ``timeout``."""
    start = time.monotonic()
    while not await asyncio.to_thread(condition):
        assert time.monotonic() - start < timeout, f"{what} did not happen in {timeout:.0f} s"
        await asyncio.sleep(0.1)
    return time.monotonic() - start


async def _restart_under_load(fleet: Fleet, name: str, method: str) -> None:
    child = fleet.child(name)
    old = child.process
    starts = child.starts
    load = Load(fleet.api_port)
    load.start()
    try:
        await load.wait_ok(CONCURRENCY, timeout=120)
        # SIGTERM while this instance is in the middle of a call, so the drain has work to finish.
        await _poll(lambda: fleet.counter(name, "grpc_server_in_flight_requests", method) >= 1,
                    60, f"a {method} call in flight on {name}")
        os.kill(old.pid, signal.SIGTERM)
        drained = await _poll(lambda: old.poll() is not None, 45, f"{name} to drain and exit")
        assert old.returncode == 0, f"{name} exited with {old.returncode}, not a clean drain"
        log = child.log_path.read_text(errors="replace")
        assert "draining" in log
        # The call it held was not cut off: no request fails (asserted at the end).
        print(f"{name}: drained and exited in {drained:.1f} s after SIGTERM")
        # Restarted, serving again, and taking its share of new calls.
        recovered = await _poll(
            lambda: child.starts > starts and child.alive and child.spec.probe(),
            RECOVERY_BOUND, f"{name} to be restarted and serving",
        )
        await _poll(lambda: fleet.counter(name, "grpc_server_handled_total", method) >= 1,
                    RECOVERY_BOUND, f"the restarted {name} to serve a {method} call")
        print(f"{name}: serving again {recovered:.1f} s after it exited; "
              f"{load.ok} requests succeeded so far")
    finally:
        await load.finish()
    assert load.failures == [], load.failures
    assert load.ok >= 2 * CONCURRENCY


async def test_concurrent_conversions_through_one_gateway_reach_both_rvc_instances(fleet):
    """The gateway's RVC target resolves to both instances; its channel balances calls
    per instance instead of pinning them all to one connection."""
    requests = 8
    done_before = [await _jobs_done(fleet, name) for name in ("rvc-a", "rvc-b")]
    request = rvc_pb2.ConvertRequest(params=_conversion(), audio=audio_to_proto(_tone()))
    address = f"127.0.0.1:{fleet.grpc_ports['gateway-b']}"
    async with grpc.aio.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        # GetStatus asks RVC over the channel conversions use: it connects to both
        # instances first, so the burst does not all land on whichever was ready first.
        for _ in range(4):
            await stub.GetStatus(gateway_pb2.GetStatusRequest(), timeout=30)
        replies = await asyncio.gather(*(stub.Rvc(request, timeout=240) for _ in range(requests)))
    assert all(r.audio.sample_rate == 48_000 for r in replies)
    done = [await _jobs_done(fleet, name) - before
            for name, before in zip(("rvc-a", "rvc-b"), done_before, strict=True)]
    print("conversions per instance:", done)
    # Every conversion ran once, and each instance took a share of them.
    assert sum(done) == requests, done
    assert min(done) >= requests // 4, done


async def _jobs_done(fleet: Fleet, name: str) -> int:
    address = f"127.0.0.1:{fleet.grpc_ports[name]}"
    async with grpc.aio.insecure_channel(address) as channel:
        status = await rvc_pb2_grpc.VoiceConversionStub(channel).GetStatus(
            rvc_pb2.GetRvcStatusRequest(), timeout=30)
    return sum(w.jobs_done for w in status.workers)


async def test_restarting_one_of_two_gateways_under_load_fails_no_request(fleet):
    await _restart_under_load(fleet, "gateway-a", "SynthesizeStream")


async def test_restarting_one_of_two_rvc_instances_under_load_fails_no_request(fleet):
    await _restart_under_load(fleet, "rvc-a", "Convert")
