"""Prometheus metrics every service exposes on its own /metrics port."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# The *_created series double every metric for no use to dashboards or alerts.
prometheus_client.disable_created_metrics()

# Voice requests run from milliseconds (health, status) to tens of seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# Compute seconds per second of audio: below 1 is faster than real time.
REAL_TIME_FACTOR_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
        pass


@dataclass
class ServerMetrics:
    """gRPC request counts and latencies, by method and status code."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        prometheus_client.ProcessCollector(registry=self.registry)
        prometheus_client.PlatformCollector(registry=self.registry)
        labels = ("grpc_service", "grpc_method", "grpc_code")
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed, by status code.",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "grpc_server_handling_seconds",
            "Time from an RPC's arrival to its completion, by status code.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "grpc_server_in_flight_requests",
            "RPCs being handled now.",
            ("grpc_service", "grpc_method"),
            registry=self.registry,
        )

    def watch_queue(self, waiting: Callable[[], int]) -> None:
        """Report how many calls wait for a slot (see services.common.admission)."""
        Gauge(
            "grpc_server_queued_requests",
            "Working RPCs waiting for a free slot on this instance.",
            registry=self.registry,
        ).set_function(waiting)

    def handled_counts(self, service: str) -> list[tuple[str, str, int]]:
        """(method, status code, count) of every RPC of ``service`` completed so far."""
        counts = []
        for metric in self.handled.collect():
            for sample in metric.samples:
                labels = sample.labels
                if sample.name.endswith("_total") and labels["grpc_service"] == service:
                    counts.append((labels["grpc_method"], labels["grpc_code"], int(sample.value)))
        return sorted(counts)

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics over HTTP; returns the bound port (useful when port is 0)."""
        app = prometheus_client.make_wsgi_app(self.registry)
        server = make_server(host, port, app, _ThreadingServer, handler_class=_QuietHandler)
        # A short poll keeps shutdown quick when a service stops.
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
            name="metrics-http",
        ).start()
        self._http_server = server
        return server.server_port

    def close(self) -> None:
        server = getattr(self, "_http_server", None)
        if server is not None:
            server.shutdown()
            server.server_close()


def split_method(full_method: str) -> tuple[str, str]:
    """'/voice.v1.Gateway/Synthesize' -> ('voice.v1.Gateway', 'Synthesize')."""
    _, _, rest = full_method.partition("/")
    service, _, method = rest.partition("/")
    return service or "unknown", method or "unknown"
