"""Every metric the monitoring objects read (alerts, recording rules, the
prometheus-adapter rules, the Grafana dashboard) is exported by a process of
the real stack: the three services, Triton and Envoy."""

from __future__ import annotations

import re
import urllib.request

import pytest

from tests.integration.http_client import call
from tests.unit.deploy.test_monitoring import EXTERNAL_PREFIXES, SYNTHETIC, referenced_metrics

# Metrics no process of the stack exports, and why that is right. Anything
# else read by a rule, the adapter or a panel must be scraped below.
NOT_FROM_THE_STACK = {
    **SYNTHETIC,  # "up": Prometheus writes it per target
    "DCGM_FI_DEV_GPU_UTIL": EXTERNAL_PREFIXES["DCGM_"],  # a node agent on GPU nodes only
}

_SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{|\s)", re.M)


def _scrape(url: str) -> set[str]:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return set(_SAMPLE.findall(reply.read().decode()))


@pytest.fixture(scope="module")
def exported(stack) -> dict[str, set[str]]:
    """Sample names per process, after a request that converts and one that fails,
    so that series created on first use exist."""
    ok = call("POST", f"{stack.api}/v1/synthesize",
              {"text": "Hi.", "voice": "demo-spark", "skip_rvc": False})
    assert ok.status == 200, ok.body[:300]
    bad = call("POST", f"{stack.api}/v1/synthesize", {"text": "", "voice": "demo-spark"})
    assert bad.status == 400
    config = stack.config
    endpoints = {
        "gateway": f"http://127.0.0.1:{config.gateway_metrics_port}/metrics",
        "tts_gateway": f"http://127.0.0.1:{config.tts_metrics_port}/metrics",
        "rvc": f"http://127.0.0.1:{config.rvc_metrics_port}/metrics",
        "triton": f"http://127.0.0.1:{config.triton_metrics_port}/metrics",
        "envoy": f"http://127.0.0.1:{config.envoy_admin_port}/stats/prometheus",
    }
    return {name: _scrape(url) for name, url in endpoints.items()}


def test_every_metric_the_monitoring_reads_is_exported(exported):
    everywhere = set().union(*exported.values())
    missing = {
        name: sorted(places)
        for name, places in referenced_metrics().items()
        if name not in everywhere and name not in NOT_FROM_THE_STACK
    }
    assert not missing, f"read by the monitoring but exported by no process: {missing}"


def test_the_allow_list_holds_only_what_is_really_read(exported):
    # A name dropped from the rules and panels must leave the allow-list too.
    assert set(NOT_FROM_THE_STACK) <= set(referenced_metrics())
    everywhere = set().union(*exported.values())
    assert not set(NOT_FROM_THE_STACK) & everywhere


def test_each_service_exports_its_own_metrics(exported):
    # The work above reached every stage, so each family is present where it belongs.
    assert {"gateway_time_to_first_audio_seconds_bucket", "gateway_stage_seconds_bucket",
            "gateway_real_time_factor_bucket", "gateway_audio_seconds_total",
            "gateway_rvc_skipped_total"} <= exported["gateway"]
    assert {"tts_time_to_first_audio_seconds_bucket", "tts_real_time_factor_bucket",
            "tts_in_flight_requests"} <= exported["tts_gateway"]
    assert {"rvc_queue_depth", "rvc_workers_configured", "rvc_workers_alive", "rvc_workers_busy",
            "rvc_worker_restarts_total", "rvc_worker_jobs_total", "rvc_conversion_seconds_bucket",
            "rvc_real_time_factor_bucket", "rvc_audio_seconds_total"} <= exported["rvc"]
    for service in ("gateway", "tts_gateway", "rvc"):
        assert {"grpc_server_handled_total", "grpc_server_handling_seconds_bucket",
                "grpc_server_in_flight_requests"} <= exported[service]
    assert "nv_inference_request_success" in exported["triton"]
    assert "envoy_http_downstream_rq_xx" in exported["envoy"]
