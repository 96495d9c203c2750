"""The gpu-mtls overlay: every internal gRPC hop speaks mutual TLS, each pod with the
certificate of its own Secret, mounted where its settings, args or Envoy config read it."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

import pytest

from services.common.settings import TLS_VARIABLES
from tests.unit.deploy.test_k8s import container, env_of, of_kind, pod_spec, render
from tests.unit.deploy.test_k8s_edge_security import _edge

MTLS = "overlays/gpu-mtls"
# Deployment -> its container, each showing the Secret internal-tls-<deployment>.
PODS = {"gateway": "gateway", "tts-gateway": "tts-gateway", "rvc": "rvc", "triton": "triton",
        "edge": "envoy"}
FILES = ("tls.crt", "tls.key", "ca.crt")  # cert-manager's layout of a certificate Secret


@pytest.fixture(scope="module")
def objects():
    return render(MTLS)


def _secret_of(workload: dict, c: dict, path: str) -> dict:
    """The Secret volume mounted read-only over the folder holding ``path``."""
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    folder = str(PurePosixPath(path).parent)
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == folder]
    assert mount["readOnly"] is True
    return volumes[mount["name"]]["secret"]


@pytest.mark.parametrize("deployment", ["gateway", "tts-gateway", "rvc"])
def test_services_read_their_own_certificate(objects, deployment):
    workload = of_kind(objects, "Deployment")[deployment]
    c = container(workload, PODS[deployment])
    env = env_of(c)
    paths = [env[var] for var in TLS_VARIABLES]
    assert [PurePosixPath(p).name for p in paths] == list(FILES)
    for path in paths:
        secret = _secret_of(workload, c, path)
        assert secret["secretName"] == f"internal-tls-{deployment}"
        assert secret["defaultMode"] == 0o440


def test_triton_grpc_requires_client_certificates(objects):
    workload = of_kind(objects, "Deployment")["triton"]
    c = container(workload, "triton")
    flags = dict(arg.split("=", 1) for arg in c["args"])
    assert flags["--grpc-use-ssl"] == flags["--grpc-use-ssl-mutual"] == "true"
    for flag, name in (("--grpc-server-cert", "tls.crt"), ("--grpc-server-key", "tls.key"),
                       ("--grpc-root-cert", "ca.crt")):
        assert PurePosixPath(flags[flag]).name == name
        assert _secret_of(workload, c, flags[flag])["secretName"] == "internal-tls-triton"
    # The kubelet's probes and Prometheus use Triton's plain HTTP ports.
    assert "httpGet" in c["readinessProbe"]


def test_the_edge_shows_its_certificate_and_checks_the_gateways(objects):
    edge, config = _edge(MTLS)
    (cluster,) = [x for x in config["static_resources"]["clusters"] if x["name"] == "gateway"]
    context = cluster["transport_socket"]["typed_config"]
    assert context["@type"].endswith("UpstreamTlsContext")
    common = context["common_tls_context"]
    (pair,) = common["tls_certificates"]
    validation = common["validation_context"]
    files = [pair["certificate_chain"]["filename"], pair["private_key"]["filename"],
             validation["trusted_ca"]["filename"]]
    assert [PurePosixPath(f).name for f in files] == list(FILES)
    for path in files:
        folder = str(PurePosixPath(path).parent)
        (mount,) = [m for m in edge["container"]["volumeMounts"] if m["mountPath"] == folder]
        assert mount["readOnly"] is True
        assert edge["volumes"][mount["name"]]["secret"]["secretName"] == "internal-tls-edge"
    # The name Envoy dials (the gateway's headless Service) must be on its certificate.
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    host = endpoint["address"]["socket_address"]["address"]
    assert validation["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": host}}]
    assert host in of_kind(objects, "Service")


def test_it_is_the_gpu_overlay_plus_mtls(objects):
    gpu = render("overlays/gpu")
    assert set(of_kind(objects, "Deployment")) == set(of_kind(gpu, "Deployment"))
    # The public edge keeps the gpu overlay's TLS and bearer tokens.
    edge, config = _edge(MTLS)
    (listener,) = [x for x in config["static_resources"]["listeners"] if x["name"] == "edge"]
    assert "transport_socket" in listener["filter_chains"][0]
    assert {"edge-tls", "edge-jwks", "internal-tls"} <= set(edge["volumes"])
    # Without the overlay, no internal hop is encrypted.
    for name, workload in of_kind(gpu, "Deployment").items():
        c = container(workload, PODS[name])
        assert not set(TLS_VARIABLES) & set(env_of(c)), name
        assert not any(a.startswith("--grpc-use-ssl") for a in c.get("args", [])), name


def test_no_certificate_or_key_is_in_the_overlay(objects):
    assert not of_kind(objects, "Secret")
    assert "PRIVATE KEY" not in json.dumps(objects)
