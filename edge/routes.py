"""The public connection manager's routes: gRPC by prefix to the gateways, REST's JSON
paths with a buffer for their bodies, the web playground's files (edge.web), CORS
preflights, the 100-continue detour, and a 404 for anything else (edge.paths)."""

from __future__ import annotations

from edge import draining, expect_continue, fields, paths, security, web
from edge.config import EdgeConfig

# The public API, its health, and reflection so that clients such as grpcurl
# can discover it; the internal services are not reachable through the edge.
PUBLIC_GRPC_PREFIXES = (
    "/voice.v1.Gateway/",
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
)


def to_gateway() -> dict:
    """The gateway routes' action."""
    # timeout 0: streams may run as long as their own deadline allows. Calls that
    # never reached a gateway (one draining or gone) are retried on another.
    return {"cluster": "gateway", "timeout": "0s", "retry_policy": draining.retry_policy()}


def _route(prefix: str) -> dict:
    return {"match": paths.grpc_match(prefix), "route": to_gateway()}


def route_config(config: EdgeConfig, filters: list[str]) -> dict:
    """The edge's one virtual host; ``filters`` are the chain's names, the ones the
    100-continue detour turns off among them."""
    # Plain text: a REST client gets it in the error shape, a gRPC one as UNIMPLEMENTED.
    not_found = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 404, "body": {"inline_string": paths.NO_ROUTE}},
    }
    host = {
        "name": "gateway",
        "domains": ["*"],
        "routes": [
            # Before the others: a request that expects 100-continue.
            expect_continue.continue_route(filters),
            *(_route(p) for p in PUBLIC_GRPC_PREFIXES),
            *fields.body_routes(to_gateway(), config.max_body_bytes),
            # Exact paths, GET only: after the API's routes, shadowing none of them.
            *(web.page_routes(config.web_dir) if config.web_dir else []),
            not_found,
        ],
    }
    if config.cors_origins:
        host["typed_per_filter_config"] = security.cors_policy(config.cors_origins)
        host["routes"].insert(-1, security.preflight_route())
    route_config = {"name": "edge", "virtual_hosts": [host]}
    if config.web_dir:
        # Envoy's default (4 KiB) is too small for the page's files.
        route_config["max_direct_response_body_size_bytes"] = web.MAX_FILE_BYTES
    return route_config
