"""The web playground on Kubernetes: the edge pods' Envoy serves web/ from the ConfigMap
edge-web, which kustomize makes from the copies edge.k8s keeps in k8s/base/edge/web/."""

from __future__ import annotations

import json

import pytest

from edge import k8s as edge_k8s
from edge import web as edge_web
from tests.unit.deploy.test_k8s import OVERLAYS, REPO, container, of_kind, pod_spec, render


def _page_files(config: dict) -> list[str]:
    (listener,) = [x for x in config["static_resources"]["listeners"] if x["name"] == "edge"]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    return [r["direct_response"]["body"]["filename"] for r in routes
            if r.get("name", "").startswith("web:")]


def test_the_committed_configs_read_the_pages_from_the_mount():
    for path in edge_k8s.COMMITTED_EDGES:
        config = json.loads(path.read_text())
        assert _page_files(config) == [str(edge_k8s.WEB_DIR / name) for name in edge_web.FILES]


def test_the_committed_page_files_are_those_of_web():
    """kustomize reads no file outside k8s/base: edge.k8s copies web/ there."""
    committed = sorted(p.name for p in edge_k8s.COMMITTED_WEB.iterdir())
    assert committed == sorted(edge_web.FILES), "run python -m edge.k8s"
    for name in edge_web.FILES:
        assert (edge_k8s.COMMITTED_WEB / name).read_bytes() == (REPO / "web" / name).read_bytes(), \
            f"k8s/base/edge/web/{name} is stale: run python -m edge.k8s"


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_edge_pods_get_the_playground(name):
    """The ConfigMap edge-web holds every file of web/, mounted read-only where the edge's
    envoy.json reads them; its name is hashed, so a changed page rolls the edge pods."""
    overlay = render(f"overlays/{name}")
    workload = of_kind(overlay, "Deployment")["edge"]
    (mount,) = [m for m in container(workload, "envoy")["volumeMounts"]
                if m["mountPath"] == str(edge_k8s.WEB_DIR)]
    assert mount.get("readOnly") is True
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    config_map = of_kind(overlay, "ConfigMap")[volumes[mount["name"]]["configMap"]["name"]]
    assert config_map["metadata"]["name"].startswith("edge-web-")
    assert config_map["data"] == {
        file: (REPO / "web" / file).read_text() for file in edge_web.FILES}
    (envoy_map,) = [c for n, c in of_kind(overlay, "ConfigMap").items() if n.startswith("envoy-")]
    assert _page_files(json.loads(envoy_map["data"]["envoy.json"])) == [
        str(edge_k8s.WEB_DIR / file) for file in edge_web.FILES]
