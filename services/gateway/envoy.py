"""The Envoy edge's configuration, rendered from settings.

Envoy listens on API_PORT, passes gRPC for the public services through to
the gateway, and transcodes REST to gRPC with the routes annotated in the
voice.v1 protos (grpc_json_transcoder over the generated descriptor set).
Anything else gets a 404; the admin interface listens on loopback only. Paths
are normalized before they are routed, so ``..`` or an encoded slash cannot reach
another service (services.gateway.edge_paths).

Every error a REST client gets has one JSON shape; services.gateway.edge_errors
says how. TLS, JWT authentication and CORS are off unless configured;
services.gateway.edge_security says how each works. The limits (body size,
calls in flight, per-client rate) and the retries that let a gateway drain are
in services.gateway.edge_limits, and with them the internal listener that answers
``Expect: 100-continue`` once the body limit has let a request by.

Deadlines: a REST client's ``grpc-timeout`` request header (``grpc-timeout: 500m``)
passes through the transcoder to the gateway, where it is the call's deadline
(``context.time_remaining()``); when it runs out the reply is 504
DEADLINE_EXCEEDED. That is how REST clients bound a call. Envoy itself does not
time routes (timeout 0s). A malformed one is refused, 400 / INVALID_ARGUMENT
naming the header (services.gateway.edge_timeout).

The transcoder would drop a JSON field its request message does not have; a
Lua filter ahead of it (services.gateway.edge_fields) refuses the request
instead (400, naming the field). The transcoder rejects a value of the wrong
type (400). A query parameter that names no field is ignored on every REST route
(``ignore_unknown_query_parameters``; ``?t=1`` worked on the old server); one that
names a field binds it, and must be well-formed (edge_fields again). Only gRPC
reaches a gateway: a request still REST at the router is a 404 (edge_paths).

Client addresses: the public listener takes the client's address from the TCP
connection (``use_remote_address``), never from a client's X-Forwarded-For, so
a client cannot pick its rate-limit bucket (services.gateway.edge_limits).
Behind load balancers that each append the address they saw to X-Forwarded-For,
``trusted_proxy_hops`` (EDGE_TRUSTED_PROXY_HOPS) says how many of the last
entries are theirs: the client is the entry before those.

``python -m services.gateway.envoy --descriptor gen/voice_v1.pb`` prints it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from services.common.server import MAX_MESSAGE_BYTES
from services.common.settings import InternalTls
from services.gateway import (
    edge_errors,
    edge_fields,
    edge_limits,
    edge_paths,
    edge_security,
    edge_timeout,
)
from services.gateway.edge_limits import EdgeRateLimit
from services.gateway.edge_security import EdgeJwt, EdgeTls

_T = "type.googleapis.com/envoy.extensions."
# The public API, its health, and reflection so that clients such as grpcurl
# can discover it; the internal services are not reachable through the edge.
PUBLIC_GRPC_PREFIXES = (
    "/voice.v1.Gateway/",
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
)
TRANSCODED_SERVICES = ("voice.v1.Gateway",)
# The largest gRPC message, as JSON: base64 makes audio bytes a third longer.
MAX_BODY_BYTES = MAX_MESSAGE_BYTES * 3 // 2
# No credential ever reaches the access log: no authorization or cookie header,
# no query string, no token claims (tests/unit/gateway/test_envoy_security.py).
ACCESS_LOG_FIELDS = {
    "ts": "%START_TIME%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    # Without the query string: a client may put a credential there.
    "path": "%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "status": "%RESPONSE_CODE%",
    "grpc_status": "%GRPC_STATUS%",
    "duration_ms": "%DURATION%",
    "bytes_in": "%BYTES_RECEIVED%",
    "bytes_out": "%BYTES_SENT%",
}


@dataclass(frozen=True)
class EdgeConfig:
    descriptor: Path
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 50051
    listen_host: str = "0.0.0.0"
    listen_port: int = 8080
    admin_port: int = 9901
    # STRICT_DNS re-resolves gateway_host, so a headless Service name reaches every pod.
    discovery: str = "STATIC"
    # The largest REST body each way, as JSON.
    max_body_bytes: int = MAX_BODY_BYTES
    # Off when None or empty: TLS on the public listener, bearer tokens, browser origins.
    tls: EdgeTls | None = None
    jwt: EdgeJwt | None = None
    cors_origins: tuple[str, ...] = ()
    # Calls in flight to all gateways together, and calls waiting for a connection.
    max_concurrent_streams: int = 1000
    max_queue: int = 1000
    # Per client; off when None.
    rate_limit: EdgeRateLimit | None = None
    # Further gateway instances (host, port), balanced over with the first.
    more_gateways: tuple[tuple[str, int], ...] = ()
    # Internal mTLS to the gateways (services/common/internal_tls.py); plain when None.
    upstream_tls: InternalTls | None = None
    # Proxies in front that append to X-Forwarded-For (xff_num_trusted_hops); 0: the
    # client is the TCP peer.
    trusted_proxy_hops: int = 0


def _to_gateway() -> dict:
    # timeout 0: streams may run as long as their own deadline allows. Calls that
    # never reached a gateway (one draining or gone) are retried on another.
    return {"cluster": "gateway", "timeout": "0s", "retry_policy": edge_limits.retry_policy()}


def _route(prefix: str) -> dict:
    return {"match": edge_paths.grpc_match(prefix), "route": _to_gateway()}


def _endpoint(host: str, port: int) -> dict:
    return {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}


def render(config: EdgeConfig) -> dict:
    # Plain text: a REST client gets it in the error shape, a gRPC one as UNIMPLEMENTED.
    not_found = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 404, "body": {"inline_string": edge_paths.NO_ROUTE}},
    }
    transcoder = {
        "@type": _T + "filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
        "proto_descriptor": str(config.descriptor),
        "services": list(TRANSCODED_SERVICES),
        "convert_grpc_status": True,
        # A parameter that is no field (?t=1) is ignored, as the old server did; without
        # this the transcoder matched no method and passed the request on as REST.
        "ignore_unknown_query_parameters": True,
        # Whole clips travel as one JSON body each way; without these the transcoder
        # stops at Envoy's default buffer limit (about 1 MiB, some seconds of audio).
        "max_request_body_size": config.max_body_bytes,
        "max_response_body_size": config.max_body_bytes,
        "print_options": {
            "add_whitespace": False,
            "always_print_primitive_fields": True,
            "always_print_enums_as_ints": False,
            "preserve_proto_field_names": True,
        },
    }
    # Responses run through the filters in reverse: the Lua filter, first here, sees
    # what the transcoder made of a gRPC status. jwt_authn refuses a request before the
    # transcoder reads its body; CORS needs the route the transcoder's rewritten path
    # finds (services.gateway.edge_security).
    filters = [
        edge_errors.lua_filter(),
        # Every request, from its headers on: a body over the limit is never read whole.
        edge_limits.body_limit_filter(config.max_body_bytes),
        *([edge_security.jwt_filter(config.jwt, cors=bool(config.cors_origins))]
          if config.jwt else []),
        # After jwt_authn (a client is its token's subject), before the transcoder
        # reads a body: a client over its rate costs nothing more.
        *([edge_limits.rate_limit_filter(config.rate_limit, jwt=config.jwt is not None)]
          if config.rate_limit else []),
        # A malformed grpc-timeout never reaches a gateway (services.gateway.edge_timeout).
        edge_timeout.lua_filter(),
        # Reads the JSON the transcoder would read, to refuse fields it would drop.
        edge_fields.lua_filter(),
        {"name": "envoy.filters.http.grpc_json_transcoder", "typed_config": transcoder},
        *([edge_security.cors_filter()] if config.cors_origins else []),
        # Last: a request still REST here (not transcoded) never reaches a gateway.
        edge_paths.grpc_only_filter(),
        {
            "name": edge_limits.ROUTER_FILTER,
            "typed_config": {"@type": _T + "filters.http.router.v3.Router"},
        },
    ]
    manager = {
        "@type": _T + "filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "edge",
        "codec_type": "AUTO",
        "generate_request_id": True,
        # A request's headers (its URL among them) past this are refused with 431. The
        # gateway takes twice as much metadata (services.common.server): the transcoder
        # forwards the URL again in x-envoy-original-path.
        "max_request_headers_kb": edge_limits.MAX_HEADERS_KB,
        # The client is the TCP peer (or, behind trusted proxies, the address the first of
        # them saw), never what a client wrote in X-Forwarded-For: its rate-limit bucket.
        "use_remote_address": True,
        "xff_num_trusted_hops": config.trusted_proxy_hops,
        # A client's own x-request-id still names its call (Envoy would replace it on a
        # request from outside), as it did before: the services log under it.
        "preserve_external_request_id": True,
        # Every reply names its request id, so a client can quote it in a report.
        "always_set_request_id_in_response": True,
        "access_log": [
            {
                "name": "envoy.access_loggers.stdout",
                "typed_config": {
                    "@type": _T + "access_loggers.stream.v3.StdoutAccessLog",
                    "log_format": {
                        "json_format": ACCESS_LOG_FIELDS,
                        "formatters": [
                            {
                                "name": "envoy.formatter.req_without_query",
                                "typed_config": {
                                    "@type": _T
                                    + "formatter.req_without_query.v3.ReqWithoutQuery"
                                },
                            }
                        ],
                    },
                },
            }
        ],
        "route_config": {
            "name": "edge",
            "virtual_hosts": [
                {
                    "name": "gateway",
                    "domains": ["*"],
                    "routes": [
                        # Before the others: a request that expects 100-continue.
                        edge_limits.continue_route([f["name"] for f in filters]),
                        *(_route(p) for p in PUBLIC_GRPC_PREFIXES),
                        *edge_fields.body_routes(_to_gateway(), config.max_body_bytes),
                        not_found,
                    ],
                }
            ],
        },
        "local_reply_config": edge_errors.local_reply_config(edge_limits.MAX_HEADERS_KB),
        "http_filters": filters,
        # Filters run before Envoy would answer 100-continue (services.gateway.edge_limits).
        "proxy_100_continue": True,
        **edge_paths.PATH_OPTIONS,
    }
    # Each refusal at a limit names it; the first mapper that matches wins.
    manager["local_reply_config"]["mappers"][:0] = edge_limits.reply_mappers(
        config.max_body_bytes, config.max_concurrent_streams, config.max_queue, config.rate_limit
    )
    if config.jwt:
        manager["local_reply_config"]["mappers"][:0] = edge_security.reply_mappers()
    if config.cors_origins:
        host = manager["route_config"]["virtual_hosts"][0]
        host["typed_per_filter_config"] = edge_security.cors_policy(config.cors_origins)
        host["routes"].insert(-1, edge_security.preflight_route())
    chain: dict = {
        "filters": [
            {"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}
        ]
    }
    if config.tls:
        chain["transport_socket"] = edge_security.transport_socket(config.tls)
    cluster = {
        "name": "gateway",
        "type": config.discovery,
        "connect_timeout": "2s",
        "lb_policy": "ROUND_ROBIN",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _T + "upstreams.http.v3.HttpProtocolOptions",
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
        "circuit_breakers": edge_limits.circuit_breakers(
            config.max_concurrent_streams, config.max_queue
        ),
        "health_checks": edge_limits.health_checks(),
        "outlier_detection": edge_limits.outlier_detection(),
    }
    if config.upstream_tls is not None:
        hosts = [config.gateway_host, *(host for host, _ in config.more_gateways)]
        cluster["transport_socket"] = edge_security.upstream_transport_socket(
            config.upstream_tls, hosts)
    # Built last: the edge's connection manager as configured, answering 100-continue.
    continue_listener = edge_limits.continue_listener(manager)
    return {
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": config.admin_port}}
        },
        "bootstrap_extensions": [edge_limits.internal_listener_extension()],
        "static_resources": {
            "listeners": [
                {
                    "name": "edge",
                    "address": {
                        "socket_address": {
                            "address": config.listen_host,
                            "port_value": config.listen_port,
                        }
                    },
                    "filter_chains": [chain],
                },
                continue_listener,
            ],
            "clusters": [
                cluster,
                edge_limits.continue_cluster(config.max_concurrent_streams, config.max_queue),
            ],
        },
    }


def write(config: EdgeConfig, path: Path) -> Path:
    path.write_text(json.dumps(render(config), indent=2))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description="Print the Envoy edge configuration.")
    parser.add_argument("--descriptor", type=Path, required=True)
    parser.add_argument("--gateway-host", default="127.0.0.1")
    parser.add_argument("--gateway-port", type=int, default=50051)
    parser.add_argument("--listen-host", default="0.0.0.0")
    parser.add_argument("--listen-port", type=int, default=8080)
    parser.add_argument("--admin-port", type=int, default=9901)
    parser.add_argument("--discovery", choices=("STATIC", "STRICT_DNS"), default="STATIC")
    args = parser.parse_args()
    config = EdgeConfig(
        descriptor=args.descriptor,
        gateway_host=args.gateway_host,
        gateway_port=args.gateway_port,
        listen_host=args.listen_host,
        listen_port=args.listen_port,
        admin_port=args.admin_port,
        discovery=args.discovery,
    )
    print(json.dumps(render(config), indent=2))


if __name__ == "__main__":
    main()
