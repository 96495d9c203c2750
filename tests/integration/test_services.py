"""Each service behind the edge: health, reflection, metrics, loopback-only ports."""

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tests.integration.http_client import call

SERVICES = {
    "gateway": ("gateway_port", "gateway_metrics_port", "voice.v1.Gateway"),
    "tts_gateway": ("tts_port", "tts_metrics_port", "voice.v1.TextToSpeech"),
    "rvc": ("rvc_port", "rvc_metrics_port", "voice.v1.VoiceConversion"),
}


@pytest.mark.parametrize("name", SERVICES)
def test_health_check_serves_overall_and_per_service(stack, name):
    port_field, _, service = SERVICES[name]
    with grpc.insecure_channel(f"127.0.0.1:{getattr(stack.config, port_field)}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for target in ("", service):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=target), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as caught:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("name", SERVICES)
def test_reflection_lists_the_services(stack, name):
    port_field, _, service = SERVICES[name]
    with grpc.insecure_channel(f"127.0.0.1:{getattr(stack.config, port_field)}") as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {service, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
        # The descriptors themselves come back too, so clients can call without stubs.
        assert database.FindFileContainingSymbol(service).package == "voice.v1"


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_exposes_prometheus_metrics(stack, name):
    _, metrics_field, service = SERVICES[name]
    # Make sure at least one RPC was counted on this service.
    port = getattr(stack.config, SERVICES[name][0])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    reply = call("GET", f"http://127.0.0.1:{getattr(stack.config, metrics_field)}/metrics")
    assert reply.status == 200
    text = reply.body.decode()
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="Check",grpc_service="grpc.health.v1.Health"}' in text
    assert "grpc_server_handling_seconds_bucket" in text
    assert "process_resident_memory_bytes" in text


def test_triton_and_envoy_metrics_are_exposed(stack):
    triton = call("GET", f"http://127.0.0.1:{stack.config.triton_metrics_port}/metrics")
    assert triton.status == 200 and b"nv_" in triton.body
    envoy = call("GET", f"http://127.0.0.1:{stack.config.envoy_admin_port}/stats/prometheus")
    assert envoy.status == 200 and b"envoy_http_downstream_rq_total" in envoy.body


def _listening_addresses() -> dict[int, set[str]]:
    """Local address of every listening TCP socket, by port, from /proc/net/tcp{,6}."""
    found: dict[int, set[str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] != "0A":  # LISTEN
                    continue
                address, port = fields[1].split(":")
                found.setdefault(int(port, 16), set()).add(address)
    return found


def test_only_the_edge_could_listen_publicly(stack):
    loopback = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}
    listening = _listening_addresses()
    internal = [
        getattr(stack.config, f)
        for f in (
            "gateway_port", "gateway_metrics_port", "tts_port", "tts_metrics_port", "rvc_port",
            "rvc_metrics_port", "triton_http_port", "triton_grpc_port", "triton_metrics_port",
            "envoy_admin_port",
        )
    ]
    for port in internal:
        assert port in listening, f"nothing listens on {port}"
        assert listening[port] <= loopback, f"port {port} listens on {listening[port]}"
