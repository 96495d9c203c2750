"""The public listener: its HTTP connection manager (access log, routes, local
replies, filters, path handling) and, where configured, TLS.

Client addresses: the connection manager takes the client's address from the TCP
connection (``use_remote_address``), never from a client's X-Forwarded-For, so a
client cannot pick its rate-limit bucket (edge.limits). Behind load balancers that
each append the address they saw to X-Forwarded-For, ``trusted_proxy_hops``
(EDGE_TRUSTED_PROXY_HOPS) says how many of the last entries are theirs: the client
is the entry before those.
"""

from __future__ import annotations

from edge import errors, filters, limits, paths, routes, security
from edge.config import EdgeConfig
from edge.envoy_types import EXTENSIONS

# No credential ever reaches the access log: no authorization or cookie header,
# no query string, no token claims (tests/unit/edge/test_security.py).
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


def access_log() -> list[dict]:
    """One JSON line per request on stdout, of ACCESS_LOG_FIELDS."""
    return [
        {
            "name": "envoy.access_loggers.stdout",
            "typed_config": {
                "@type": EXTENSIONS + "access_loggers.stream.v3.StdoutAccessLog",
                "log_format": {
                    "json_format": ACCESS_LOG_FIELDS,
                    "formatters": [
                        {
                            "name": "envoy.formatter.req_without_query",
                            "typed_config": {
                                "@type": EXTENSIONS
                                + "formatter.req_without_query.v3.ReqWithoutQuery"
                            },
                        }
                    ],
                },
            },
        }
    ]


def connection_manager(config: EdgeConfig) -> dict:
    """The public listener's HTTP connection manager."""
    chain = filters.http_filters(config)
    manager = {
        "@type": EXTENSIONS + "filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "edge",
        "codec_type": "AUTO",
        "generate_request_id": True,
        # A request's headers (its URL among them) past this are refused with 431. The
        # gateway takes twice as much metadata (services.common.server): the transcoder
        # forwards the URL again in x-envoy-original-path.
        "max_request_headers_kb": limits.MAX_HEADERS_KB,
        # The client is the TCP peer (or, behind trusted proxies, the address the first of
        # them saw), never what a client wrote in X-Forwarded-For: its rate-limit bucket.
        "use_remote_address": True,
        "xff_num_trusted_hops": config.trusted_proxy_hops,
        # A client's own x-request-id still names its call (Envoy would replace it on a
        # request from outside), as it did before: the services log under it.
        "preserve_external_request_id": True,
        # Every reply names its request id, so a client can quote it in a report.
        "always_set_request_id_in_response": True,
        "access_log": access_log(),
        "route_config": routes.route_config(config, [f["name"] for f in chain]),
        "local_reply_config": errors.local_reply_config(limits.MAX_HEADERS_KB),
        "http_filters": chain,
        # Filters run before Envoy would answer 100-continue (edge.expect_continue).
        "proxy_100_continue": True,
        **paths.PATH_OPTIONS,
    }
    # Each refusal at a limit names it; the first mapper that matches wins.
    manager["local_reply_config"]["mappers"][:0] = limits.reply_mappers(
        config.max_body_bytes, config.max_concurrent_streams, config.max_queue, config.rate_limit
    )
    if config.jwt:
        manager["local_reply_config"]["mappers"][:0] = security.reply_mappers()
    return manager


def public_listener(config: EdgeConfig, manager: dict) -> dict:
    """The listener on listen_host:listen_port, running ``manager``; TLS where configured."""
    chain: dict = {
        "filters": [
            {"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}
        ]
    }
    if config.tls:
        chain["transport_socket"] = security.transport_socket(config.tls)
    return {
        "name": "edge",
        "address": {
            "socket_address": {
                "address": config.listen_host,
                "port_value": config.listen_port,
            }
        },
        "filter_chains": [chain],
    }
