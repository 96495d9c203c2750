"""An instance's limits on working calls: slots, a bounded queue, refusals with retry-after."""

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from voice.v1 import tts_pb2, tts_pb2_grpc

from services.common.admission import Admission, Limits, is_limited
from services.common.errors import DeadlineExceeded, Overloaded
from services.common.request_context import time_remaining
from services.common.server import ServiceHost, Servicer
from services.common.settings import ServerSettings, SettingsError, from_env


def admission(concurrent=1, queue=1):
    return Admission(Limits(concurrent, queue, 2.5, "X_MAX_CONCURRENT_STREAMS", "X_MAX_QUEUED_STREAMS"))


async def test_calls_beyond_the_slots_wait_and_beyond_the_queue_are_refused():
    gate = admission(concurrent=1, queue=1)
    release = asyncio.Event()
    order = []

    async def call(name):
        async with gate.slot(timeout=10):
            order.append(name)
            await release.wait()

    first = asyncio.create_task(call("first"))
    await asyncio.sleep(0)
    second = asyncio.create_task(call("second"))
    while gate.waiting < 1:
        await asyncio.sleep(0)
    assert (gate.running, order) == (1, ["first"])
    with pytest.raises(Overloaded) as refused:
        async with gate.slot(timeout=10):
            pass
    assert "X_MAX_CONCURRENT_STREAMS=1" in refused.value.message
    assert "X_MAX_QUEUED_STREAMS=1" in refused.value.message
    assert refused.value.retry_after == 3  # whole seconds, rounded up
    release.set()
    await asyncio.gather(first, second)
    assert order == ["first", "second"]
    assert (gate.running, gate.waiting) == (0, 0)


async def test_a_wait_longer_than_the_deadline_ends_in_deadline_exceeded_and_frees_its_place():
    gate = admission(concurrent=1, queue=1)
    release = asyncio.Event()

    async def hold():
        async with gate.slot(timeout=None):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    with pytest.raises(DeadlineExceeded, match="waiting for a free slot"):
        async with gate.slot(timeout=0.05):
            pass
    assert gate.waiting == 0
    release.set()
    await holder
    async with gate.slot(timeout=1):
        assert gate.running == 1
    assert gate.running == 0


async def test_a_cancelled_waiter_leaves_the_counts_right():
    gate = admission(concurrent=1, queue=2)
    release = asyncio.Event()

    async def hold():
        async with gate.slot(timeout=None):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(hold())
    while gate.waiting < 1:
        await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (gate.running, gate.waiting) == (1, 0)
    release.set()
    await holder
    assert gate.running == 0


async def test_zero_means_no_limit():
    gate = admission(concurrent=0, queue=0)
    async with gate.slot(timeout=None), gate.slot(timeout=None), gate.slot(timeout=None):
        assert gate.running == 3
    assert gate.running == 0


def test_reporting_calls_are_never_limited():
    assert is_limited("voice.v1.Gateway", "SynthesizeStream")
    assert is_limited("voice.v1.VoiceConversion", "LoadModel")
    assert not is_limited("voice.v1.Gateway", "GetHealth")
    assert not is_limited("voice.v1.Gateway", "ListVoices")
    assert not is_limited("grpc.health.v1.Health", "Check")


def test_limit_settings_are_read_and_checked():
    settings = from_env(ServerSettings, "TTS", {
        "TTS_MAX_CONCURRENT_STREAMS": "3", "TTS_MAX_QUEUED_STREAMS": "0",
        "TTS_DEFAULT_DEADLINE_SECONDS": "20", "TTS_MAX_DEADLINE_SECONDS": "60",
    })
    assert (settings.max_concurrent_streams, settings.max_queued_streams) == (3, 0)
    with pytest.raises(SettingsError, match="default_deadline_seconds"):
        from_env(ServerSettings, "TTS", {"TTS_DEFAULT_DEADLINE_SECONDS": "90",
                                         "TTS_MAX_DEADLINE_SECONDS": "60"})
    with pytest.raises(SettingsError, match="max_concurrent_streams"):
        from_env(ServerSettings, "TTS", {"TTS_MAX_CONCURRENT_STREAMS": "-1"})


class Held(tts_pb2_grpc.TextToSpeechServicer):
    """Each Synthesize call reports its deadline and waits for the test to let it go."""

    def __init__(self):
        self.entered = asyncio.Queue()
        self.release = asyncio.Event()

    async def Synthesize(self, request, context):
        await self.entered.put(time_remaining())
        await self.release.wait()
        yield tts_pb2.SynthesizeSpeechResponse(speaker_id="done")

    async def GetStatus(self, request, context):
        return tts_pb2.TtsStatus()


async def start_host(servicer, **limits):
    settings = ServerSettings(grpc_port=0, metrics_port=0, drain_seconds=0, **limits)
    host = ServiceHost(settings, [Servicer(
        servicer, tts_pb2_grpc.add_TextToSpeechServicer_to_server,
        tts_pb2.DESCRIPTOR.services_by_name["TextToSpeech"].full_name,
    )], env_prefix="TTS")
    await host.start()
    return host


async def test_a_full_instance_refuses_with_resource_exhausted_and_retry_after_but_still_reports():
    servicer = Held()
    host = await start_host(servicer, max_concurrent_streams=1, max_queued_streams=0,
                            retry_after_seconds=4)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.grpc_port}") as channel:
            stub = tts_pb2_grpc.TextToSpeechStub(channel)
            first = stub.Synthesize(tts_pb2.SynthesizeSpeechRequest(text="a"), timeout=30)
            reply = asyncio.ensure_future(first.read())
            await servicer.entered.get()
            refused = stub.Synthesize(tts_pb2.SynthesizeSpeechRequest(text="b"), timeout=30)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await refused.read()
            assert error.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "TTS_MAX_CONCURRENT_STREAMS=1" in error.value.details()
            assert ("retry-after", "4") in tuple(error.value.trailing_metadata())
            # Status and health answer while the instance is full.
            await stub.GetStatus(tts_pb2.GetTtsStatusRequest(), timeout=5)
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            servicer.release.set()
            assert (await reply).speaker_id == "done"
    finally:
        await host.stop()


async def test_calls_get_the_default_deadline_and_no_more_than_the_maximum():
    servicer = Held()
    servicer.release.set()
    host = await start_host(servicer, default_deadline_seconds=40, max_deadline_seconds=50)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.grpc_port}") as channel:
            stub = tts_pb2_grpc.TextToSpeechStub(channel)
            async for _ in stub.Synthesize(tts_pb2.SynthesizeSpeechRequest(text="a")):
                pass
            async for _ in stub.Synthesize(tts_pb2.SynthesizeSpeechRequest(text="a"), timeout=500):
                pass
            async for _ in stub.Synthesize(tts_pb2.SynthesizeSpeechRequest(text="a"), timeout=10):
                pass
        unset, too_long, short = [servicer.entered.get_nowait() for _ in range(3)]
        assert 35 < unset <= 40
        assert 45 < too_long <= 50
        assert 5 < short <= 10.5  # as gRPC hands it over (it rounds up)
    finally:
        await host.stop()
