"""Start real gRPC servers in the test process, on loopback ports the kernel picks."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import grpc

from services.common.server import ServiceHost, Servicer
from services.common.settings import ServerSettings

TEST_SERVER = ServerSettings(host="127.0.0.1", grpc_port=0, metrics_port=0, drain_seconds=0)


@contextlib.asynccontextmanager
async def hosted(
    servicers: Sequence[Servicer], settings: ServerSettings = TEST_SERVER, **kwargs
) -> AsyncIterator[ServiceHost]:
    host = ServiceHost(settings, servicers, **kwargs)
    await host.start()
    try:
        yield host
    finally:
        await host.stop()


def channel_to(host: ServiceHost) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(f"127.0.0.1:{host.grpc_port}")
