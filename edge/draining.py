"""How a gateway drains without failing calls, as Envoy config: the route's
retries, the gateway cluster's health checks and outlier detection.

A gateway that stops (SIGTERM) turns its health NOT_SERVING, sends GOAWAY
and refuses new streams, then closes its port. The route retries a call
that never reached a gateway (connection refused, stream refused, reset before
the request went out) on another one, at most RETRIES times; a call a gateway
has begun is never sent again. Active gRPC health checks take a NOT_SERVING or
unreachable gateway out of the rotation within a few seconds, and a gateway
whose connections keep failing is ejected for a while. When fewer than half
the gateways are in (Envoy's panic threshold), calls go to all of them again,
the retries covering those that refuse: a lone gateway that reports
NOT_SERVING (its own dependencies not ready) still gets its calls and answers
them itself.
"""

from __future__ import annotations

from edge.envoy_types import EXTENSIONS

# Calls that never reached a gateway are tried on this many others.
RETRIES = 2


def retry_policy() -> dict:
    """Retries only of calls no gateway has begun, each on a gateway not tried yet."""
    return {
        "retry_on": "connect-failure,refused-stream,reset-before-request",
        "num_retries": RETRIES,
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {
                    "@type": EXTENSIONS + "retry.host.previous_hosts.v3.PreviousHostsPredicate"
                },
            }
        ],
        "host_selection_retry_max_attempts": 5,
    }


def health_checks() -> list[dict]:
    """grpc.health.v1 Check of each gateway: NOT_SERVING (draining, or its
    dependencies down) or no answer takes it out of the rotation."""
    return [
        {
            "timeout": "1s",
            "interval": "2s",
            "interval_jitter": "0.2s",
            "unhealthy_threshold": 1,
            "healthy_threshold": 1,
            # Unreachable gateways are checked as often (the default is a minute).
            "no_traffic_interval": "2s",
            "unhealthy_interval": "2s",
            "grpc_health_check": {},
        }
    ]


def outlier_detection() -> dict:
    """Ejects a gateway whose connections keep failing (a gateway's own errors,
    such as UNAVAILABLE from a dependency, do not count)."""
    return {
        "split_external_local_origin_errors": True,
        "consecutive_local_origin_failure": 3,
        "enforcing_consecutive_local_origin_failure": 100,
        "enforcing_local_origin_success_rate": 0,
        "enforcing_consecutive_5xx": 0,
        "enforcing_consecutive_gateway_failure": 0,
        "enforcing_success_rate": 0,
        "interval": "2s",
        "base_ejection_time": "10s",
        "max_ejection_percent": 100,
    }
