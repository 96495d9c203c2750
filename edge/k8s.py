"""The edge's Envoy configurations for Kubernetes: k8s/base/edge/envoy.json,
k8s/overlays/gpu/envoy.json, the same with TLS and JWT authentication, and
k8s/overlays/gpu-mtls/envoy.json, the gpu edge speaking mTLS to the gateways.

The edge pods run Envoy alone; the gateway pods sit behind the headless
Service ``gateway``, which Envoy resolves with STRICT_DNS (the short name, in
the pod's own namespace through its DNS search path) and balances over per
request. The configuration is exactly what ``edge.render.render``
makes for those settings, plus one listener: Envoy's admin interface stays on
loopback (it can drain, quit and reconfigure Envoy), and a separate listener
on STATS_PORT passes two read-only admin paths through, ``GET /stats/prometheus``
(for Prometheus) and ``GET /ready`` (the kubelet's readiness probe: 503 once
Envoy drains), and answers 404 to anything else.

The web playground's files (web/, edge.web) reach the edge pods in the ConfigMap
``edge-web``, mounted at WEB_DIR: kustomize reads files inside its own folder only,
so the renderer copies them to k8s/base/edge/web/ (COMMITTED_WEB), beside envoy.json.

The gpu overlay's edge terminates TLS with the certificate of the Secret
``edge-tls`` (type kubernetes.io/tls) and checks bearer tokens against the
JWKS in the Secret ``edge-jwks`` (key ``jwks.json``); the overlay mounts both
at TLS_DIR and JWKS_DIR (docs/security.md says how to create them). The gpu-mtls
overlay's edge also shows the certificate of the Secret ``internal-tls-edge``
(mounted at INTERNAL_TLS_DIR) to the gateways and checks theirs against its CA
and the gateway Service's name.

    python -m edge.k8s            rewrite the files
    python -m edge.k8s --check    exit 1 when a committed file is stale

tests/unit/deploy/test_k8s.py fails when a committed file differs from
``render_k8s()`` or a copied page file from web/, so the files cannot drift from the code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from edge.config import EdgeConfig
from edge.envoy_types import EXTENSIONS
from edge.limits import EdgeRateLimit
from edge.render import render
from edge.security import EdgeJwt, EdgeTls
from edge.web import FILES as WEB_FILES
from edge.web import WEB_DIR as REPO_WEB_DIR
from services.common.settings import InternalTls

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "k8s" / "base" / "edge" / "envoy.json"
SECURE_COMMITTED = REPO / "k8s" / "overlays" / "gpu" / "envoy.json"
MTLS_COMMITTED = REPO / "k8s" / "overlays" / "gpu-mtls" / "envoy.json"
# The copies of web/ that the base's ConfigMap edge-web is generated from.
COMMITTED_WEB = REPO / "k8s" / "base" / "edge" / "web"

# Where the gateway image puts the descriptor set (`make protos` output).
DESCRIPTOR = Path("/app/gen/voice_v1.pb")
API_PORT = 8080
ADMIN_PORT = 9901
GATEWAY_PORT = 50051
# Envoy's metrics and readiness: the only admin paths reachable from outside the pod.
STATS_PORT = 9902
PASSED_ADMIN_PATHS = ("/stats/prometheus", "/ready")
# The gateway's headless Service (k8s/base/gateway/service.yaml).
GATEWAY_SERVICE = "gateway"
# Where the edge pods mount the ConfigMap edge-web (k8s/base/edge/deployment.yaml).
WEB_DIR = Path("/etc/edge-web")

K8S_EDGE = EdgeConfig(
    descriptor=DESCRIPTOR,
    gateway_host=GATEWAY_SERVICE,
    gateway_port=GATEWAY_PORT,
    listen_host="0.0.0.0",
    listen_port=API_PORT,
    admin_port=ADMIN_PORT,
    discovery="STRICT_DNS",
    web_dir=WEB_DIR,
)

# Where the gpu overlay mounts the Secrets edge-tls and edge-jwks.
TLS_DIR = Path("/etc/edge-tls")
JWKS_DIR = Path("/etc/edge-jwks")
# The audience a token must name: this API's, chosen here; tokens for other
# services of the same issuer are refused. Set JWT_ISSUER to pin the issuer too.
JWT_AUDIENCE = "voice-pipeline"
JWT_ISSUER = ""
# The scope a token needs to make, change or delete voices (edge.write_scope).
JWT_WRITE_SCOPE = "voices:write"
# Per token subject, per edge pod: 2 calls a second on average, 20 at once
# (each call may synthesise many seconds of audio).
RATE_LIMIT = EdgeRateLimit(per_second=2, burst=20)

K8S_SECURE_EDGE = dataclasses.replace(
    K8S_EDGE,
    tls=EdgeTls(cert=TLS_DIR / "tls.crt", key=TLS_DIR / "tls.key"),
    jwt=EdgeJwt(jwks=JWKS_DIR / "jwks.json", issuer=JWT_ISSUER, audiences=(JWT_AUDIENCE,),
                write_scope=JWT_WRITE_SCOPE),
    rate_limit=RATE_LIMIT,
)
# Where the gpu-mtls overlay mounts each pod's Secret internal-tls-<name>
# (cert-manager's layout: tls.crt, tls.key, ca.crt).
INTERNAL_TLS_DIR = Path("/etc/internal-tls")
K8S_MTLS_EDGE = dataclasses.replace(
    K8S_SECURE_EDGE,
    upstream_tls=InternalTls(cert=INTERNAL_TLS_DIR / "tls.crt", key=INTERNAL_TLS_DIR / "tls.key",
                             ca=INTERNAL_TLS_DIR / "ca.crt"),
)
# What each committed file holds.
COMMITTED_EDGES = {COMMITTED: K8S_EDGE, SECURE_COMMITTED: K8S_SECURE_EDGE,
                   MTLS_COMMITTED: K8S_MTLS_EDGE}



def _stats_listener() -> dict:
    manager = {
        "@type": EXTENSIONS + "filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "stats",
        "codec_type": "AUTO",
        "route_config": {
            "name": "stats",
            "virtual_hosts": [
                {
                    "name": "stats",
                    "domains": ["*"],
                    "routes": [
                        *(
                            {
                                "match": {
                                    "path": path,
                                    "headers": [
                                        {"name": ":method", "string_match": {"exact": "GET"}}
                                    ],
                                },
                                "route": {"cluster": "envoy_admin"},
                            }
                            for path in PASSED_ADMIN_PATHS
                        ),
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {
                                "status": 404,
                                "body": {"inline_string": "not found"},
                            },
                        },
                    ],
                }
            ],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": EXTENSIONS + "filters.http.router.v3.Router"},
            }
        ],
    }
    return {
        "name": "stats",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": STATS_PORT}},
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager",
                     "typed_config": manager}
                ]
            }
        ],
    }


def _admin_cluster() -> dict:
    return {
        "name": "envoy_admin",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "envoy_admin",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": "127.0.0.1",
                                        "port_value": ADMIN_PORT,
                                    }
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }


def render_k8s(edge: EdgeConfig = K8S_EDGE) -> dict:
    """render() for the edge pod, with the stats listener and its admin cluster added."""
    config = render(edge)
    config["static_resources"]["listeners"].append(_stats_listener())
    config["static_resources"]["clusters"].append(_admin_cluster())
    return config


def dumps(config: dict) -> str:
    return json.dumps(config, indent=2) + "\n"


def committed_files() -> dict[Path, str]:
    """Every file this module writes, and what it holds."""
    files = {path: dumps(render_k8s(edge)) for path, edge in COMMITTED_EDGES.items()}
    for name in WEB_FILES:
        files[COMMITTED_WEB / name] = (REPO_WEB_DIR / name).read_text()
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, do not write")
    args = parser.parse_args()
    stale = 0
    for path, text in committed_files().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                print(f"{path.relative_to(REPO)} is stale: run python -m edge.k8s",
                      file=sys.stderr)
                stale = 1
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path.relative_to(REPO))
    # A page file web/ no longer has.
    for path in sorted(COMMITTED_WEB.glob("*")):
        if path.name not in WEB_FILES:
            if args.check:
                print(f"{path.relative_to(REPO)} is no file of web/: run python -m edge.k8s",
                      file=sys.stderr)
                stale = 1
            else:
                path.unlink()
    return stale


if __name__ == "__main__":
    sys.exit(main())
