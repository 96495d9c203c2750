"""Client channels to other services.

Targets are gRPC name strings. ``dns:///tts.voice.svc:50052`` against a
Kubernetes headless Service resolves to every pod, and round_robin spreads
calls over them instead of pinning all of them to one HTTP/2 connection.
"""

from __future__ import annotations

import json

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common import server
from services.common.interceptors import client_interceptors
from services.common.internal_tls import channel_credentials
from services.common.settings import InternalTls

_ROUND_ROBIN = {"loadBalancingConfig": [{"round_robin": {}}]}
# healthCheckConfig: the channel watches each peer's grpc.health.v1 status and
# sends nothing to one that is NOT_SERVING (starting, or draining after SIGTERM),
# so a rolling restart moves calls to the other peers before any is refused.
_HEALTH_CHECKED = {**_ROUND_ROBIN, "healthCheckConfig": {"serviceName": ""}}


def open_channel(
    target: str, skip_not_serving: bool = False, tls: InternalTls = InternalTls()
) -> grpc.aio.Channel:
    """A channel balancing calls over every address of ``target``.

    ``skip_not_serving``: leave out peers whose health is NOT_SERVING. Right where
    several interchangeable peers stand behind the target; with a single peer it
    turns "not ready yet" into an immediate UNAVAILABLE, and the channel's own
    health checks then never reach a peer that is not serving.
    ``tls``: internal mTLS (internal_tls.py), when it is on.
    """
    config = _HEALTH_CHECKED if skip_not_serving else _ROUND_ROBIN
    options = (
        *server.GRPC_OPTIONS,
        ("grpc.service_config", json.dumps(config)),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", server.KEEPALIVE_MS),
        # A peer that restarts (a pod rolled, a process respawned) is back in
        # well under a second; do not sit out gRPC's default 1-120 s back-off.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2_000),
    )
    if tls.enabled:
        return grpc.aio.secure_channel(target, channel_credentials(tls), options=options,
                                       interceptors=client_interceptors())
    return grpc.aio.insecure_channel(target, options=options, interceptors=client_interceptors())


async def check_health(
    channel: grpc.aio.Channel, service: str = "", timeout: float = 2.0
) -> tuple[str, str]:
    """(status name, detail) of a peer's grpc.health.v1 service; never raises."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        # wait_for_ready: a connection still being (re)established is not a
        # failed peer; the timeout bounds the wait.
        reply = await stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout, wait_for_ready=True
        )
    except grpc.aio.AioRpcError as exc:
        return "UNREACHABLE", f"{exc.code().name}: {exc.details()}"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status), ""
