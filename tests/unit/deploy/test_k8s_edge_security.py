"""The gpu overlay's edge: TLS and JWT from Secrets mounted where its Envoy config reads them."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from tests.unit.deploy.test_k8s import container, of_kind, pod_spec, render


def _edge(target: str) -> tuple[dict, dict]:
    """(the envoy container, its pod's volumes by name) and the config it runs."""
    objects = render(target)
    workload = of_kind(objects, "Deployment")["edge"]
    envoy = container(workload, "envoy")
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    (config_mount,) = [m for m in envoy["volumeMounts"] if m["mountPath"] == "/etc/envoy"]
    config_map = of_kind(objects, "ConfigMap")[volumes[config_mount["name"]]["configMap"]["name"]]
    return {"container": envoy, "volumes": volumes}, json.loads(config_map["data"]["envoy.json"])


def _public_chain(config: dict) -> dict:
    (listener,) = [x for x in config["static_resources"]["listeners"] if x["name"] == "edge"]
    (chain,) = listener["filter_chains"]
    return chain


def _secret_behind(edge: dict, path: str) -> dict:
    """The Secret volume mounted (read-only) over the folder holding ``path``."""
    folder = str(PurePosixPath(path).parent)
    (mount,) = [m for m in edge["container"]["volumeMounts"] if m["mountPath"] == folder]
    assert mount["readOnly"] is True
    return edge["volumes"][mount["name"]]["secret"]


def test_gpu_edge_reads_its_certificate_and_jwks_from_the_secrets():
    edge, config = _edge("overlays/gpu")
    chain = _public_chain(config)
    context = chain["transport_socket"]["typed_config"]["common_tls_context"]
    assert context["alpn_protocols"] == ["h2", "http/1.1"]
    (certificate,) = context["tls_certificates"]
    cert = certificate["certificate_chain"]["filename"]
    key = certificate["private_key"]["filename"]
    # The keys of a kubernetes.io/tls Secret.
    assert (PurePosixPath(cert).name, PurePosixPath(key).name) == ("tls.crt", "tls.key")
    assert _secret_behind(edge, cert)["secretName"] == "edge-tls"
    assert _secret_behind(edge, key)["secretName"] == "edge-tls"
    assert _secret_behind(edge, key)["defaultMode"] == 0o440

    filters = chain["filters"][0]["typed_config"]["http_filters"]
    (jwt,) = [f["typed_config"] for f in filters if f["name"] == "envoy.filters.http.jwt_authn"]
    (provider,) = jwt["providers"].values()
    assert provider["audiences"] == ["voice-pipeline"]
    jwks = provider["local_jwks"]["filename"]
    assert PurePosixPath(jwks).name == "jwks.json"
    assert _secret_behind(edge, jwks)["secretName"] == "edge-jwks"


def test_no_key_or_secret_is_in_the_manifests():
    for target in ("overlays/gpu", "overlays/cpu"):
        objects = render(target)
        assert not of_kind(objects, "Secret"), target
        assert "PRIVATE KEY" not in json.dumps(objects), target


def test_cpu_overlay_edge_stays_plain():
    edge, config = _edge("overlays/cpu")
    chain = _public_chain(config)
    assert "transport_socket" not in chain
    names = [f["name"] for f in chain["filters"][0]["typed_config"]["http_filters"]]
    assert "envoy.filters.http.jwt_authn" not in names
    assert not {"edge-tls", "edge-jwks"} & set(edge["volumes"])
