"""The ``gateway`` cluster: every gateway instance, over HTTP/2, with the concurrency
limits (edge.limits), the health checks and ejection that let one drain
(edge.draining), and internal mTLS where configured (edge.security)."""

from __future__ import annotations

from edge import draining, limits, security
from edge.config import EdgeConfig
from edge.envoy_types import EXTENSIONS


def _endpoint(host: str, port: int) -> dict:
    return {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}


def gateway_cluster(config: EdgeConfig) -> dict:
    cluster = {
        "name": "gateway",
        "type": config.discovery,
        "connect_timeout": "2s",
        "lb_policy": "ROUND_ROBIN",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": EXTENSIONS + "upstreams.http.v3.HttpProtocolOptions",
                # A malformed response resets its own stream, not the connection and every
                # call on it: how a gateway cuts a REST stream (services.gateway.stream_abort).
                "explicit_http_config": {"http2_protocol_options": {
                    "override_stream_error_on_invalid_http_message": True,
                }},
            }
        },
        "load_assignment": {
            "cluster_name": "gateway",
            "endpoints": [
                {
                    "lb_endpoints": [
                        _endpoint(host, port)
                        for host, port in (
                            (config.gateway_host, config.gateway_port), *config.more_gateways
                        )
                    ]
                }
            ],
        },
        "circuit_breakers": limits.circuit_breakers(
            config.max_concurrent_streams, config.max_queue
        ),
        "health_checks": draining.health_checks(),
        "outlier_detection": draining.outlier_detection(),
    }
    if config.upstream_tls is not None:
        hosts = [config.gateway_host, *(host for host, _ in config.more_gateways)]
        cluster["transport_socket"] = security.upstream_transport_socket(
            config.upstream_tls, hosts)
    return cluster
