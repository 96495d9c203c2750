"""The shared server bootstrap: graceful drain, health, and readiness probes."""

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from voice.v1 import tts_pb2, tts_pb2_grpc

from services.common.server import ServiceHost, Servicer
from services.common.settings import ServerSettings

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Gated(tts_pb2_grpc.TextToSpeechServicer):
    """Holds each call open until the test releases it."""

    def __init__(self):
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def Synthesize(self, request, context):
        self.entered.set()
        await self.release.wait()
        yield tts_pb2.SynthesizeSpeechResponse(speaker_id="finished")


def make_host(servicer, drain_seconds, **kwargs):
    settings = ServerSettings(grpc_port=0, metrics_port=0, drain_seconds=drain_seconds)
    return ServiceHost(
        settings,
        [
            Servicer(
                servicer,
                tts_pb2_grpc.add_TextToSpeechServicer_to_server,
                tts_pb2.DESCRIPTOR.services_by_name["TextToSpeech"].full_name,
            )
        ],
        **kwargs,
    )


async def test_drain_turns_health_off_and_lets_calls_in_flight_finish():
    servicer = Gated()
    host = make_host(servicer, drain_seconds=30)
    await host.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.grpc_port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == SERVING
        call = tts_pb2_grpc.TextToSpeechStub(channel).Synthesize(
            tts_pb2.SynthesizeSpeechRequest(text="x")
        )
        reply = asyncio.ensure_future(call.read())
        await servicer.entered.wait()
        stopping = asyncio.ensure_future(host.stop())
        assert (await watch.read()).status == NOT_SERVING
        watch.cancel()  # a probe's open Watch would otherwise hold the drain too
        assert not stopping.done()
        servicer.release.set()
        assert (await reply).speaker_id == "finished"
        assert await call.code() is grpc.StatusCode.OK
        await stopping


async def test_without_grace_calls_in_flight_are_cut_off():
    servicer = Gated()
    host = make_host(servicer, drain_seconds=0)
    await host.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.grpc_port}") as channel:
        call = tts_pb2_grpc.TextToSpeechStub(channel).Synthesize(
            tts_pb2.SynthesizeSpeechRequest(text="x")
        )
        reply = asyncio.ensure_future(call.read())
        await servicer.entered.wait()
        await host.stop()
        with pytest.raises(grpc.aio.AioRpcError):
            await reply


async def test_health_follows_the_readiness_probe():
    ready = {"value": False}

    async def probe():
        return ready["value"]

    host = make_host(Gated(), drain_seconds=0, readiness=probe, readiness_interval=0.05)
    await host.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.grpc_port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service="voice.v1.TextToSpeech")
            )
            assert (await watch.read()).status == NOT_SERVING
            ready["value"] = True
            assert (await watch.read()).status == SERVING
    finally:
        await host.stop()


async def test_a_crashing_probe_means_not_serving_not_a_dead_server():
    async def probe():
        raise RuntimeError("dependency exploded")

    host = make_host(Gated(), drain_seconds=0, readiness=probe)
    await host.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.grpc_port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert reply.status == NOT_SERVING
    finally:
        await host.stop()


async def test_an_occupied_port_is_a_clear_error():
    first = make_host(Gated(), drain_seconds=0)
    await first.start()
    try:
        settings = ServerSettings(grpc_port=first.grpc_port, metrics_port=0)
        second = ServiceHost(settings, [])
        with pytest.raises(OSError, match="cannot listen"):
            await second.start()
    finally:
        await first.stop()


async def test_a_client_cancelling_a_stream_is_counted_as_cancelled_not_as_an_error(caplog):
    servicer = Gated()
    host = make_host(servicer, drain_seconds=0)
    await host.start()
    labels = {
        "grpc_service": "voice.v1.TextToSpeech",
        "grpc_method": "Synthesize",
        "grpc_code": "CANCELLED",
    }
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.grpc_port}") as channel:
            call = tts_pb2_grpc.TextToSpeechStub(channel).Synthesize(
                tts_pb2.SynthesizeSpeechRequest(text="x")
            )
            await servicer.entered.wait()
            call.cancel()
        registry = host.metrics.registry
        for _ in range(200):
            if registry.get_sample_value("grpc_server_handled_total", labels) == 1.0:
                break
            await asyncio.sleep(0.01)
        assert registry.get_sample_value("grpc_server_handled_total", labels) == 1.0
        assert not [r for r in caplog.records if r.levelname == "ERROR"]
    finally:
        await host.stop()
