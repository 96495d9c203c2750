"""`python -m localstack` (what `make run` starts) as a user runs it.

The one suite that starts the stack outside tests.integration.stacks.supervised, on
purpose: what is under test is the runner process itself (its banner, its exit code
on SIGINT and SIGTERM, the process tree it leaves), which the factory's in-process
supervisor would stand in for."""

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

from localstack.config import PORT_FIELDS, free_ports
from tests.integration.http_client import call
from tests.processes import descendants, running, wait_until_gone

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
    "vllm_port": "LLM_SERVER_PORT",
}


class Runner:
    def __init__(self, tmp_path: Path, *components: str) -> None:
        self.ports = dict(zip(PORT_FIELDS, free_ports(len(PORT_FIELDS)), strict=True))
        env = dict(os.environ, STACK_RUN_DIR=str(tmp_path / "run"), MODELS_DIR=str(tmp_path / "m"))
        env.update({ENV_NAMES[k]: str(v) for k, v in self.ports.items()})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "localstack", *components],
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


def _pid_of(stack: Runner, needle: bytes) -> int:
    for pid in descendants(stack.process.pid):
        try:
            if needle in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except FileNotFoundError:
            continue
    raise AssertionError(f"no process matching {needle!r}")


def _wait_health(stack: Runner, port_field: str, wanted: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        try:
            status = stack.health(port_field)
        except grpc.RpcError:
            status = None
        if status == wanted:
            break
        time.sleep(0.2)
    return status


def test_runner_serves_heals_and_stops_on_sigint_without_leaving_a_process(runner):
    """One stack, as `make run` starts it: healthy, restarts a dead service, health
    follows Triton, and Ctrl-C leaves nothing behind."""
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    stack = runner()
    stack.wait_for("Ctrl-C stops everything")
    printed = "".join(stack.output)
    assert f"curl http://127.0.0.1:{stack.ports['api_port']}/v1/health" in printed
    assert f"envoy        REST + gRPC (public)  http://127.0.0.1:{stack.ports['api_port']}" in printed
    reply = call("GET", f"http://127.0.0.1:{stack.ports['api_port']}/v1/health")
    assert reply.status == 200 and reply.json()["status"] == "SERVING"
    old = call("GET", f"http://127.0.0.1:{stack.ports['api_port']}/health").json()
    assert (old["status"], old["healthy"], old["serving_status"]) == ("ready", True, "SERVING")

    # A killed service comes back, as under Kubernetes.
    rvc = _pid_of(stack, b"services.rvc")
    os.kill(rvc, signal.SIGKILL)
    stack.wait_for("started rvc")
    assert _wait_health(stack, "rvc_port", serving) == serving
    assert not running(rvc)

    # A stalled Triton makes the TTS service NOT_SERVING, and it recovers.
    triton = _pid_of(stack, b"tritonserver")
    os.kill(triton, signal.SIGSTOP)
    try:
        assert _wait_health(stack, "tts_port", not_serving, 30) == not_serving
        body = call("GET", f"http://127.0.0.1:{stack.ports['api_port']}/v1/health").json()
        assert body["status"] == "DEGRADED"
        # The old server's view: one stage of two is ready.
        old = call("GET", f"http://127.0.0.1:{stack.ports['api_port']}/health").json()
        assert (old["status"], old["tts_ready"], old["rvc_ready"]) == ("degraded", False, True)
    finally:
        os.kill(triton, signal.SIGCONT)
    assert _wait_health(stack, "tts_port", serving, 30) == serving

    tree = descendants(stack.process.pid)
    # tritonserver and its Python backend stubs, three services and envoy.
    assert len(tree) >= 8
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=90) == 0
    assert wait_until_gone(tree) == []


def test_sigterm_stops_the_runner_without_leaving_a_process(runner):
    stack = runner()
    stack.wait_for("Ctrl-C stops everything")
    tree = descendants(stack.process.pid)
    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(timeout=90) == 0
    assert wait_until_gone(tree) == []


def test_triton_alone(runner):
    stack = runner("triton")
    stack.wait_for("The voice pipeline is up")
    ready = call("GET", f"http://127.0.0.1:{stack.ports['triton_http_port']}/v2/health/ready")
    assert ready.status == 200
    with pytest.raises(grpc.RpcError):
        stack.health("gateway_port")
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=60) == 0
