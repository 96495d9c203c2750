"""Client channels spread calls over every address a target resolves to."""

import asyncio
import contextlib
from collections import Counter

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from voice.v1 import rvc_pb2, rvc_pb2_grpc

from services.common import server
from services.common.channels import open_channel
from services.common.server import Servicer
from tests.grpc_hosts import hosted


class Numbered(rvc_pb2_grpc.VoiceConversionServicer):
    """Answers GetStatus with its own number, so the caller sees who served it."""

    def __init__(self, number: int) -> None:
        self.number = number

    async def GetStatus(self, request, context):
        return rvc_pb2.RvcStatus(workers_configured=self.number)


def numbered(number: int) -> Servicer:
    return Servicer(
        Numbered(number),
        rvc_pb2_grpc.add_VoiceConversionServicer_to_server,
        rvc_pb2.DESCRIPTOR.services_by_name["VoiceConversion"].full_name,
    )


async def test_calls_round_robin_over_every_resolved_address():
    async with hosted([numbered(1)]) as one, hosted([numbered(2)]) as two, hosted(
        [numbered(3)]
    ) as three:
        # A resolver answering with three addresses, as DNS does for a headless Service.
        target = "ipv4:" + ",".join(f"127.0.0.1:{h.grpc_port}" for h in (one, two, three))
        channel = open_channel(target)
        stub = rvc_pb2_grpc.VoiceConversionStub(channel)
        try:
            # wait_for_ready: round_robin starts calls once a subchannel is up.
            served = Counter([
                (await stub.GetStatus(rvc_pb2.GetRvcStatusRequest(), wait_for_ready=True))
                .workers_configured
                for _ in range(30)
            ])
        finally:
            await channel.close()
    assert set(served) == {1, 2, 3}
    # Round robin, not random: no address gets more than its share plus the warm-up.
    assert max(served.values()) - min(served.values()) <= 3, served


async def test_a_peer_that_is_not_serving_gets_no_calls_until_it_serves_again():
    serving = {"value": False}

    async def ready() -> bool:
        return serving["value"]

    async with hosted([numbered(1)]) as one, hosted(
        [numbered(2)], readiness=ready, readiness_interval=0.05
    ) as two:
        channel = open_channel(
            f"ipv4:127.0.0.1:{one.grpc_port},127.0.0.1:{two.grpc_port}", skip_not_serving=True
        )
        stub = rvc_pb2_grpc.VoiceConversionStub(channel)

        async def who() -> int:
            reply = await stub.GetStatus(rvc_pb2.GetRvcStatusRequest(), wait_for_ready=True)
            return reply.workers_configured

        try:
            # Draining or starting: health says NOT_SERVING, so every call goes to the other.
            assert {await who() for _ in range(20)} == {1}
            serving["value"] = True
            seen = set()
            for _ in range(400):  # the health watch reports SERVING within a few probes
                seen.add(await who())
                if seen == {1, 2}:
                    break
            assert seen == {1, 2}
        finally:
            await channel.close()


async def _after_quiet_pings(host_factory, monkeypatch) -> str:
    """A client pinging every 200 ms holds a quiet call open (as the gateway's health
    Watch on its RVC channel is) for up to 8 s, then sends a call: how the two fared.

    The client pings without limit while no data flows, so a server that objects does
    so within seconds, every time; with gRPC's default client (2 pings, then one more
    alongside the next call's data) the same GOAWAY hit whichever call came next."""
    monkeypatch.setattr(server, "KEEPALIVE_MS", 200)
    async with host_factory() as port:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[
            ("grpc.keepalive_time_ms", server.KEEPALIVE_MS),
            ("grpc.keepalive_timeout_ms", 1000),
            ("grpc.http2.max_pings_without_data", 0),
        ])
        health_stub = health_pb2_grpc.HealthStub(channel)
        quiet = health_stub.Watch(health_pb2.HealthCheckRequest())
        try:
            await quiet.read()
            try:  # the time under test: pings on a quiet connection
                await asyncio.wait_for(quiet.read(), timeout=8)
                watch = "a message"
            except asyncio.TimeoutError:
                watch = "quiet"
            except grpc.aio.AioRpcError as exc:
                watch = f"{exc.code().name}: {exc.details()}"
            try:
                await health_stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
                return f"watch {watch}, call OK"
            except grpc.aio.AioRpcError as exc:
                return f"watch {watch}, call {exc.code().name}: {exc.details()}"
        finally:
            quiet.cancel()
            await channel.close()


@pytest.mark.slow  # seconds of real time: an outage, keepalive pings
async def test_our_servers_accept_keepalive_pings_on_a_quiet_connection(monkeypatch):
    @contextlib.asynccontextmanager
    async def ours():
        async with hosted([numbered(1)]) as host:
            yield host.grpc_port

    assert await _after_quiet_pings(ours, monkeypatch) == "watch quiet, call OK"


@pytest.mark.slow  # seconds of real time: an outage, keepalive pings
async def test_a_default_grpc_server_would_close_the_connection(monkeypatch):
    """The control: gRPC's default ping policy (the cause of a CI failure, 503 "Too many
    pings" on the old API, when our servers used it)."""
    @contextlib.asynccontextmanager
    async def default_server():
        plain = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), plain)
        port = plain.add_insecure_port("127.0.0.1:0")
        await plain.start()
        try:
            yield port
        finally:
            await plain.stop(0)

    outcome = await _after_quiet_pings(default_server, monkeypatch)
    assert outcome.startswith("watch UNAVAILABLE: Too many pings"), outcome
