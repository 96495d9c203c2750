"""Body size and 100-continue: how the body limit refuses a request before a
``100 Continue`` goes out, through an internal listener that answers it.

The limit used to be a side effect of buffering: the unknown-field filter
(edge.fields) buffers the four JSON routes' bodies, and the
transcoder's ``max_request_body_size`` bounds what it holds. Neither bounds a
body: the transcoder parses JSON as it streams, so it only ever holds the tail
it has not parsed yet, and a route it maps that the buffering routes did not
match (``/v1/synthesize/``, or ``content-type: application/grpc-web``, which
the transcoder takes for REST) streamed 97 MiB of JSON to the gateway. GET
routes, the 404 and gRPC read any body to its end, and no filter ever saw the
declared Content-Length: with ``Expect: 100-continue`` Envoy answered
``100 Continue`` to ``Content-Length: 2147483648``.

Now Envoy's body_size_limit filter (BODY_LIMIT_FILTER), second in the chain,
right after the error filter, counts every request's bytes as they arrive,
without buffering them: a declared Content-Length over the limit is refused
from the headers, an undeclared length once the bytes received pass it. It
logs one line per refusal at error level (client address and path, query
string included: the access log leaves that out, this line does not).

``Expect: 100-continue`` needs more. Envoy's connection manager answers it
itself, before any filter has seen the request (proxy_100_continue false), so
no filter can refuse a declared length without a ``100 Continue`` going out
first; with proxy_100_continue true the filters run first, but then only an
upstream can answer ``100``, and the gateway (gRPC) never does, so curl, which
sends Expect for bodies over 1 MiB, would wait a second before every upload.
No filter can send a 1xx (Lua, ext_proc and the others only send final
replies). So the edge proxies 100-continue, and a request that expects it
(and is not gRPC) takes the route ``continue_route`` makes, which
runs only the error filter, the body limit, authentication and the rate limit
(all of them read headers only) and then hands the request to an internal
listener (CONTINUE_LISTENER, in the same process) whose connection manager is
the edge's own, with proxy_100_continue false. So:

* over the limit, without a valid token or over its rate: refused from its
  headers (413, 401, 429) and no 100;
* otherwise: the internal listener's connection manager answers ``100`` at
  once (the edge passes it on) and the request goes through the rest of the
  edge's filter chain there, unchanged.

Authentication and the rate limit run on the public listener only, for every
request, detoured or not: a local_ratelimit filter keeps its own buckets, so a
second one in the internal listener gave each client a second bucket (twice
its burst, by sending ``Expect``), and jwt_authn removes the token it checked.

Requests without Expect (gRPC, most clients) never take that detour. The
internal connection manager logs nothing (the public one logs each request
once) and keeps the request id. Its peer is this process, so it takes the
client's address from X-Forwarded-For instead (``use_remote_address`` false,
no trusted hops: the last entry), and the detour route appends, last, the
address the public connection manager settled on (the TCP peer, or the one
the trusted proxies name), never one a client sent: a client's own
X-Forwarded-For entries come before it and are not read. (No filter there
keys on the address now; the rate limit ran on the public listener.)
"""

from __future__ import annotations

import copy

from edge import errors
from edge.envoy_types import EXTENSIONS
from edge.filters import ROUTER_FILTER
from edge.limits import BODY_LIMIT_FILTER, RATE_LIMIT_FILTER, circuit_breakers
from edge.security import JWT_FILTER

# The internal listener (and the cluster to it) that answers 100-continue.
CONTINUE_LISTENER = "edge_continue"
# Filters that run on the public listener only, the 100-continue detour included: one
# token bucket set per client, and the token checked (and removed) once.
PUBLIC_ONLY_FILTERS = (JWT_FILTER, RATE_LIMIT_FILTER)


def continue_route(filters: list[str]) -> dict:
    """The route of a request that expects 100-continue (any path, not gRPC): only the
    error filter, the body limit, authentication, the rate limit and the router of
    ``filters`` run on it here, then it goes to the internal listener, whose connection
    manager answers 100 and runs the rest of the chain."""
    keep = {errors.ERRORS_FILTER, BODY_LIMIT_FILTER, *PUBLIC_ONLY_FILTERS, ROUTER_FILTER}
    off = {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}
    return {
        "name": CONTINUE_LISTENER,
        "match": {
            "prefix": "/",
            "headers": [
                {"name": "expect", "string_match": {"exact": "100-continue", "ignore_case": True}},
                errors.not_grpc_header(),
            ],
        },
        "route": {"cluster": CONTINUE_LISTENER, "timeout": "0s"},
        "typed_per_filter_config": {name: dict(off) for name in filters if name not in keep},
        # The internal listener's client is this process: it takes the client's address
        # from the last entry, the one the public connection manager settled on (the
        # connection's peer, or the trusted proxies' client), whatever the client sent.
        "request_headers_to_add": [
            {
                "header": {
                    "key": "x-forwarded-for",
                    "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                },
                "append_action": "APPEND_IF_EXISTS_OR_ADD",
            }
        ],
    }


def continue_listener(manager: dict) -> dict:
    """The internal listener behind continue_route: ``manager`` (the edge's connection
    manager) answering 100-continue itself, without the detour, an access log, or the
    filters the detour ran already (PUBLIC_ONLY_FILTERS)."""
    inner = copy.deepcopy(manager)
    inner["stat_prefix"] = CONTINUE_LISTENER
    inner["proxy_100_continue"] = False
    inner.pop("access_log", None)
    inner["http_filters"] = [f for f in inner["http_filters"]
                             if f["name"] not in PUBLIC_ONLY_FILTERS]
    # Its peer is this process: the client is the last X-Forwarded-For entry, the one
    # continue_route appends.
    inner["use_remote_address"] = False
    inner.pop("xff_num_trusted_hops", None)
    for host in inner["route_config"]["virtual_hosts"]:
        host["routes"] = [r for r in host["routes"] if r.get("name") != CONTINUE_LISTENER]
    return {
        "name": CONTINUE_LISTENER,
        "internal_listener": {},
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": inner}
                ]
            }
        ],
    }


def continue_cluster(max_concurrent_streams: int, max_queue: int) -> dict:
    """The cluster of the internal listener: HTTP/1.1, as most clients that send Expect."""
    return {
        "name": CONTINUE_LISTENER,
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": CONTINUE_LISTENER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "envoy_internal_address": {
                                        "server_listener_name": CONTINUE_LISTENER
                                    }
                                }
                            }
                        }
                    ]
                }
            ],
        },
        "circuit_breakers": circuit_breakers(max_concurrent_streams, max_queue),
    }


def internal_listener_extension() -> dict:
    """The bootstrap extension that internal listeners need."""
    return {
        "name": "envoy.bootstrap.internal_listener",
        "typed_config": {
            "@type": EXTENSIONS + "bootstrap.internal_listener.v3.InternalListener"
        },
    }
