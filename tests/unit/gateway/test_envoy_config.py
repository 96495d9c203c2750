"""The rendered edge configuration is one Envoy itself accepts."""

import json
import subprocess
from pathlib import Path

import pytest

from services.gateway.envoy import EdgeConfig, render, write
from services.stack.components import envoy_binary

DESCRIPTOR = Path("gen/voice_v1.pb")


def test_only_the_gateway_health_and_reflection_are_public_and_admin_is_loopback():
    config = render(EdgeConfig(descriptor=DESCRIPTOR))
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    routes = manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    prefixes = [r["match"]["prefix"] for r in routes]
    assert prefixes == [
        "/voice.v1.Gateway/",
        "/grpc.health.v1.Health/",
        "/grpc.reflection.v1.ServerReflection/",
        "/grpc.reflection.v1alpha.ServerReflection/",
        "/",
    ]
    assert routes[-1]["direct_response"]["status"] == 404


@pytest.mark.parametrize("discovery", ["STATIC", "STRICT_DNS"])
def test_envoy_validates_the_configuration(tmp_path, discovery):
    host = "127.0.0.1" if discovery == "STATIC" else "localhost"
    path = write(
        EdgeConfig(descriptor=DESCRIPTOR.resolve(), gateway_host=host, discovery=discovery),
        tmp_path / "envoy.json",
    )
    json.loads(path.read_text())
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
