"""Asyncio gRPC server bootstrap shared by every service.

Adds the standard health and reflection services, the interceptors and a
/metrics endpoint; keeps health in step with a readiness probe; and on
SIGTERM or SIGINT drains: health turns NOT_SERVING, new calls are refused,
calls in flight get ``drain_seconds`` to finish.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.admission import Admission, Limits
from services.common.interceptors import Policy, ServerInterceptor
from services.common.internal_tls import server_credentials
from services.common.logs import configure_logging
from services.common.metrics import ServerMetrics
from services.common.settings import ServerSettings, SettingsError

log = logging.getLogger(__name__)

# Whole clips travel in one message; 64 MiB holds minutes of 48 kHz audio.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
GRPC_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)
# Request metadata a server takes (gRPC's default soft limit is 8 KiB, refused with
# RESOURCE_EXHAUSTED). The edge refuses headers past 32 KiB, and forwards a REST
# call's URL twice (as :path and as x-envoy-original-path), so a long query string
# the edge let through must fit here.
MAX_METADATA_BYTES = 96 * 1024
# gRPC servers share ports by default; a second copy of a service must fail
# to start instead of silently taking half of the first one's traffic.
SERVER_OPTIONS = (
    *GRPC_OPTIONS,
    ("grpc.so_reuseport", 0),
    ("grpc.max_metadata_size", MAX_METADATA_BYTES),
    ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES + 32 * 1024),
)
# Our channels (channels.py) ping a connection this often while a call is open, and
# our servers accept pings twice as often. gRPC's default server policy allows one
# ping in 5 minutes without data and answers the third early one with GOAWAY
# "too_many_pings", which ended every call on the connection once a quiet call (the
# channel's own health Watch) had been open a minute or so.
KEEPALIVE_MS = 30_000
# No HPACK dynamic table for the headers we receive (SETTINGS_HEADER_TABLE_SIZE 0).
# grpcio (1.85) remembers a header value it failed to parse in the table entry, and a
# later header that reuses that entry's name fails too: one request's malformed
# grpc-timeout ("abc") made every later grpc-timeout on the connection "Error parsing
# 'grpc-timeout' metadata" (INTERNAL), for every client behind the edge's shared
# connection, until the connection closed. Without the table nothing is remembered;
# the edge also refuses a malformed grpc-timeout (edge.timeout).
HPACK_DECODER_TABLE = ("grpc.http2.hpack_table_size.decoder", 0)


def server_options(max_message_bytes: int) -> tuple[tuple[str, object], ...]:
    sized = {"grpc.max_receive_message_length": max_message_bytes,
             "grpc.max_send_message_length": max_message_bytes}
    return (
        *((key, sized.get(key, value)) for key, value in SERVER_OPTIONS),
        ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_MS // 2),
        HPACK_DECODER_TABLE,
    )

ReadinessProbe = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class Servicer:
    """A servicer object, the generated function that registers it, and its full name."""

    impl: object
    add_to_server: Callable[[object, grpc.aio.Server], None]
    full_name: str


class ServiceHost:
    def __init__(
        self,
        settings: ServerSettings,
        servicers: Sequence[Servicer],
        readiness: ReadinessProbe | None = None,
        readiness_interval: float = 2.0,
        on_stop: Sequence[Callable[[], Awaitable[None]]] = (),
        metrics: ServerMetrics | None = None,
        env_prefix: str = "",
    ) -> None:
        self.settings = settings
        # Pass ``metrics`` to register a service's own metrics in the same registry.
        self.metrics = metrics or ServerMetrics()
        # Messages name a limit as the variable that sets it (GATEWAY_MAX_QUEUED_STREAMS).
        name = (lambda field: f"{env_prefix}_{field}".upper()) if env_prefix else str
        self.admission = Admission(Limits(
            settings.max_concurrent_streams, settings.max_queued_streams,
            settings.retry_after_seconds,
            concurrent_name=name("max_concurrent_streams"), queue_name=name("max_queued_streams"),
        ))
        self.metrics.watch_queue(lambda: self.admission.waiting)
        self._servicers = servicers
        self._readiness = readiness
        self._readiness_interval = readiness_interval
        self._on_stop = on_stop
        self._health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._probe_task: asyncio.Task | None = None
        self._stopping = False
        self.grpc_port = 0
        self.metrics_port = 0

    @property
    def service_names(self) -> list[str]:
        return [s.full_name for s in self._servicers]

    async def start(self) -> None:
        policy = Policy(
            self.metrics, self.admission,
            self.settings.default_deadline_seconds, self.settings.max_deadline_seconds,
        )
        server = grpc.aio.server(interceptors=[ServerInterceptor(policy)],
                                 options=server_options(self.settings.max_message_bytes))
        for servicer in self._servicers:
            servicer.add_to_server(servicer.impl, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        try:
            tls = self.settings.internal_tls
            self.grpc_port = (
                server.add_secure_port(self.settings.grpc_address, server_credentials(tls))
                if tls.enabled else server.add_insecure_port(self.settings.grpc_address)
            )
        except RuntimeError:
            self.grpc_port = 0
        if self.grpc_port == 0:
            await server.stop(None)
            raise OSError(f"cannot listen on {self.settings.grpc_address} (in use?)")
        try:
            self.metrics_port = self.metrics.serve(self.settings.host, self.settings.metrics_port)
        except OSError as exc:
            await server.stop(None)
            raise OSError(
                f"cannot serve metrics on port {self.settings.metrics_port}: {exc}"
            ) from None
        await server.start()
        self._server = server
        await self._set_serving(await self._probe())
        if self._readiness is not None:
            self._probe_task = asyncio.create_task(self._probe_forever())
        log.info(
            "listening",
            extra={
                "grpc": f"{self.settings.host}:{self.grpc_port}",
                "metrics": f"http://{self.settings.host}:{self.metrics_port}/metrics",
                "services": self.service_names,
            },
        )

    async def _probe(self) -> bool:
        if self._readiness is None:
            return True
        try:
            return await self._readiness()
        except Exception:  # a failing probe means not ready, never a dead server
            log.warning("readiness probe failed", exc_info=True)
            return False

    async def _probe_forever(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self._readiness_interval)
            if not self._stopping:
                await self._set_serving(await self._probe())

    async def _set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.service_names):
            await self._health.set(name, status)

    async def stop(self) -> None:
        """Drain and stop; safe to call more than once."""
        if self._stopping or self._server is None:
            return
        self._stopping = True
        log.info("draining", extra={"grace_seconds": self.settings.drain_seconds})
        await self._health.enter_graceful_shutdown()
        if self._probe_task is not None:
            self._probe_task.cancel()
        await self._server.stop(self.settings.drain_seconds)
        for callback in self._on_stop:
            await callback()
        self.metrics.close()
        log.info("stopped")

    async def run_until_signal(self) -> None:
        """Start, serve until SIGTERM or SIGINT, then drain."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        await stop.wait()
        await self.stop()


class HasServer(Protocol):
    server: ServerSettings


S = TypeVar("S", bound=HasServer)


def run_service(
    name: str, load: Callable[[], S], build: Callable[[S], Awaitable[ServiceHost]]
) -> None:
    """A service's whole ``main``: settings, logging, then serve until a signal.

    A bad setting ends the process with exit code 2 and one line saying which.
    """
    try:
        settings = load()
    except SettingsError as exc:
        print(f"{name}: bad setting: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_logging(name, settings.server.log_level, settings.server.log_format)

    async def serve() -> None:
        host = await build(settings)
        await host.run_until_signal()

    asyncio.run(serve())
