"""`python -m services.stack` (what `make run` starts) as a user runs it."""

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.stack.config import PORT_FIELDS, free_ports
from tests.integration.http_client import call
from tests.processes import descendants, running, wait_until_gone

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ENV_NAMES = {
    "api_port": "API_PORT",
    "envoy_admin_port": "ENVOY_ADMIN_PORT",
    "gateway_port": "GATEWAY_GRPC_PORT",
    "gateway_metrics_port": "GATEWAY_METRICS_PORT",
    "tts_port": "TTS_GRPC_PORT",
    "tts_metrics_port": "TTS_METRICS_PORT",
    "rvc_port": "RVC_GRPC_PORT",
    "rvc_metrics_port": "RVC_METRICS_PORT",
    "triton_http_port": "TRITON_HTTP_PORT",
    "triton_grpc_port": "TRITON_GRPC_PORT",
    "triton_metrics_port": "TRITON_METRICS_PORT",
}


class Runner:
    def __init__(self, tmp_path: Path, *components: str) -> None:
        self.ports = dict(zip(PORT_FIELDS, free_ports(len(PORT_FIELDS)), strict=True))
        env = dict(os.environ, STACK_RUN_DIR=str(tmp_path / "run"), MODELS_DIR=str(tmp_path / "m"))
        env.update({ENV_NAMES[k]: str(v) for k, v in self.ports.items()})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.stack", *components],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: queue.Queue = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.output.append(line)
            if text in line:
                return
        pytest.fail(f"{text!r} never appeared; output:\n{''.join(self.output[-40:])}")

    def health(self, port_field: str) -> int:
        with grpc.insecure_channel(f"127.0.0.1:{self.ports[port_field]}") as channel:
            return health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            ).status

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def runner(tmp_path):
    started = []

    def start(*components):
        started.append(Runner(tmp_path, *components))
        return started[-1]

    yield start
    for r in started:
        r.kill()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_runner_serves_then_stops_without_leaving_a_process(runner, sig):
    stack = runner()
    stack.wait_for("Ctrl-C stops everything")
    printed = "".join(stack.output)
    assert f"curl http://127.0.0.1:{stack.ports['api_port']}/health" in printed
    assert f"envoy        REST + gRPC (public)  http://127.0.0.1:{stack.ports['api_port']}" in printed
    reply = call("GET", f"http://127.0.0.1:{stack.ports['api_port']}/health")
    assert reply.status == 200 and reply.json()["status"] == "SERVING"
    tree = descendants(stack.process.pid)
    # tritonserver, its Python backend stub(s) if any, three services and envoy.
    assert len(tree) >= 5
    stack.process.send_signal(sig)
    assert stack.process.wait(timeout=60) == 0
    assert wait_until_gone(tree) == []


def test_tts_health_follows_triton_and_recovers(runner):
    stack = runner()
    stack.wait_for("The voice pipeline is up")
    triton = next(
        p for p in descendants(stack.process.pid)
        if Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0].endswith(b"tritonserver")
    )
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    os.kill(triton, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 30
        while stack.health("tts_port") != not_serving and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stack.health("tts_port") == not_serving
        body = call("GET", f"http://127.0.0.1:{stack.ports['api_port']}/health").json()
        assert body["status"] == "DEGRADED"
    finally:
        os.kill(triton, signal.SIGCONT)
    deadline = time.monotonic() + 30
    while stack.health("tts_port") != serving and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stack.health("tts_port") == serving
    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(timeout=60) == 0


def test_runner_restarts_a_killed_service(runner):
    stack = runner()
    stack.wait_for("The voice pipeline is up")
    rvc = next(
        p for p in descendants(stack.process.pid)
        if b"services.rvc" in Path(f"/proc/{p}/cmdline").read_bytes()
    )
    os.kill(rvc, signal.SIGKILL)
    stack.wait_for("started rvc")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if stack.health("rvc_port") == health_pb2.HealthCheckResponse.SERVING:
                break
        except grpc.RpcError:
            time.sleep(0.2)
    assert stack.health("rvc_port") == health_pb2.HealthCheckResponse.SERVING
    assert not running(rvc)
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=60) == 0


def test_triton_alone(runner):
    stack = runner("triton")
    stack.wait_for("The voice pipeline is up")
    ready = call("GET", f"http://127.0.0.1:{stack.ports['triton_http_port']}/v2/health/ready")
    assert ready.status == 200
    with pytest.raises(grpc.RpcError):
        stack.health("gateway_port")
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=60) == 0
