"""The edge's limits, as Envoy config: body size, concurrency, per-client rate.

Each limit is a setting (localstack.config, EDGE_*); a request over one is
refused at the edge before it reaches a gateway, with a message naming the
setting and its value:

* Body size (EDGE_MAX_BODY_BYTES): every request, whatever its route or
  method, REST or gRPC, that declares a Content-Length over the limit is refused
  when its headers arrive, before a byte of its body is read; one that does not
  declare it (chunked, or HTTP/2 without content-length) is cut off as soon as
  the bytes received pass the limit. REST gets 413 with RESOURCE_EXHAUSTED in
  the error shape, gRPC RESOURCE_EXHAUSTED; both name the setting. gRPC
  messages are also bounded by the gateway (MAX_MESSAGE_BYTES). How, and how
  the limit holds for a request that expects 100-continue: edge.expect_continue.
* Concurrency (EDGE_MAX_CONCURRENT_STREAMS, EDGE_MAX_QUEUE): circuit breakers
  on the ``gateway`` cluster bound the calls in flight to all gateways
  together, and the calls waiting for a connection to one. A call over either
  is refused at once (Envoy flags it UO, upstream overflow): REST gets 429 with
  ``Retry-After``, gRPC RESOURCE_EXHAUSTED.
* Rate (EDGE_RATE_LIMIT_PER_SECOND, EDGE_RATE_LIMIT_BURST; off by default):
  Envoy's local_ratelimit filter keeps one token bucket per client, per Envoy
  process: per token subject (the JWT ``sub`` claim) when JWT authentication is
  on, else per client address: the TCP peer (the connection manager's
  ``use_remote_address``), whatever X-Forwarded-For the client sends, or behind
  EDGE_TRUSTED_PROXY_HOPS proxies that append to it, the address the first of
  them saw (behind a load balancer that replaces the address and adds none, every
  client shares one bucket). A bucket holds BURST tokens and
  gains PER_SECOND a second; a call takes one. A call finding its bucket empty
  gets 429 with ``Retry-After`` (REST) or RESOURCE_EXHAUSTED (gRPC). Buckets
  are kept for the MAX_CLIENTS most recent clients. Health is never limited.

How a gateway instance drains without failing calls: edge.draining.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from edge import errors
from edge.envoy_types import EXTENSIONS
from edge.security import JWT_FILTER, JWT_PAYLOAD_KEY, OPEN_PATHS, OPEN_PREFIXES

RATE_LIMIT_FILTER = "envoy.filters.http.local_ratelimit"
BODY_LIMIT_FILTER = "envoy.filters.http.body_size_limit"
# The bucket of tokens without a ``sub`` claim (all of them share it).
NO_SUBJECT = "-"
# Descriptor keys: every limited call carries LIMITED, then its client.
LIMITED_KEY = "edge_limited"
SUBJECT_KEY = "jwt_subject"
ADDRESS_KEY = "remote_address"
# Clients whose buckets are kept; the least recently seen is dropped beyond it.
MAX_CLIENTS = 100_000
# Envoy refills a bucket at most every 50 ms.
MIN_FILL_SECONDS = 0.05
# What a client over a concurrency limit is told to wait, in seconds.
OVERLOAD_RETRY_AFTER = 1
# Load balancers in front of the edge that append to X-Forwarded-For, at most.
MAX_TRUSTED_PROXY_HOPS = 10
# Upper bounds on the settings, to catch typos such as an extra zero.
MAX_STREAMS_LIMIT = 1_000_000
MAX_BODY_LIMIT = 1 << 31
# A request's headers, URL included, in KiB (Envoy's default is 60); a gateway takes
# more metadata than twice this (services.common.server.MAX_METADATA_BYTES).
MAX_HEADERS_KB = 32


@dataclass(frozen=True)
class EdgeRateLimit:
    """Per client: ``per_second`` calls a second, ``burst`` at once."""

    per_second: float
    burst: int


def check_limits(
    max_body_bytes: int,
    max_concurrent_streams: int,
    max_queue: int,
    rate_per_second: float,
    rate_burst: int,
) -> None:
    """Raises ValueError naming the setting when one is out of range."""
    if not 1024 <= max_body_bytes <= MAX_BODY_LIMIT:
        raise ValueError(f"EDGE_MAX_BODY_BYTES={max_body_bytes}: expected 1024..{MAX_BODY_LIMIT}")
    if not 1 <= max_concurrent_streams <= MAX_STREAMS_LIMIT:
        raise ValueError(
            f"EDGE_MAX_CONCURRENT_STREAMS={max_concurrent_streams}: expected 1..{MAX_STREAMS_LIMIT}"
        )
    # 0 would refuse every call that finds no connection open yet (the first ones).
    if not 1 <= max_queue <= MAX_STREAMS_LIMIT:
        raise ValueError(f"EDGE_MAX_QUEUE={max_queue}: expected 1..{MAX_STREAMS_LIMIT}")
    if not (math.isfinite(rate_per_second) and 0 <= rate_per_second <= MAX_STREAMS_LIMIT):
        raise ValueError(
            f"EDGE_RATE_LIMIT_PER_SECOND={rate_per_second}: expected 0 (off) .. {MAX_STREAMS_LIMIT}"
        )
    if rate_per_second == 0:
        return
    if rate_per_second != int(rate_per_second) and rate_per_second > 1 / MIN_FILL_SECONDS:
        raise ValueError(
            f"EDGE_RATE_LIMIT_PER_SECOND={rate_per_second}: above {1 / MIN_FILL_SECONDS:g} "
            "a second, give a whole number"
        )
    tokens, _ = _refill(rate_per_second)
    if not tokens <= rate_burst <= MAX_STREAMS_LIMIT:
        raise ValueError(
            f"EDGE_RATE_LIMIT_BURST={rate_burst}: expected {tokens}..{MAX_STREAMS_LIMIT} "
            f"(at least a second's worth of EDGE_RATE_LIMIT_PER_SECOND={rate_per_second:g})"
        )


def _refill(per_second: float) -> tuple[int, float]:
    """(tokens, every so many seconds) that add up to ``per_second``: a whole
    rate refills each second, a fractional one a token at a time."""
    if per_second == int(per_second):
        return int(per_second), 1.0
    return 1, round(1 / per_second, 3)


def retry_after_seconds(limit: EdgeRateLimit) -> int:
    """How long a client with an empty bucket waits for its next token, rounded up."""
    return max(1, math.ceil(_refill(limit.per_second)[1]))


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def _health_path_regex() -> str:
    exact = "|".join(re.escape(path) for path in OPEN_PATHS)
    prefixes = "|".join(re.escape(prefix) for prefix in OPEN_PREFIXES)
    # The rate limit filter sees the path before the transcoder rewrites it: REST
    # /health with or without a query string, and the gRPC health methods.
    return f"^(({exact})([?].*)?|({prefixes}).*)$"


def rate_limit_filter(limit: EdgeRateLimit, jwt: bool) -> dict:
    """local_ratelimit with one bucket per client (per JWT subject when ``jwt``)."""
    tokens, every = _refill(limit.per_second)
    not_health = {
        "header_value_match": {
            "descriptor_key": LIMITED_KEY,
            "descriptor_value": "yes",
            "expect_match": False,
            "headers": [
                {"name": ":path", "string_match": {"safe_regex": {"regex": _health_path_regex()}}}
            ],
        }
    }
    if jwt:
        client_key = SUBJECT_KEY
        client = {
            "metadata": {
                "descriptor_key": SUBJECT_KEY,
                "metadata_key": {
                    "key": JWT_FILTER,
                    "path": [{"key": JWT_PAYLOAD_KEY}, {"key": "sub"}],
                },
                "default_value": NO_SUBJECT,
                "source": "DYNAMIC",
            }
        }
    else:
        client_key = ADDRESS_KEY
        client = {"remote_address": {}}
    percent = {"numerator": 100, "denominator": "HUNDRED"}
    return {
        "name": RATE_LIMIT_FILTER,
        "typed_config": {
            "@type": EXTENSIONS + "filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "edge_rate_limit",
            "filter_enabled": {"runtime_key": "edge.rate_limit_enabled", "default_value": percent},
            "filter_enforced": {"runtime_key": "edge.rate_limit_enforced", "default_value": percent},
            # Calls with no descriptor (health) are never counted: this bucket is
            # theirs alone and is never consumed by the others.
            "token_bucket": {
                "max_tokens": 1_000_000_000,
                "tokens_per_fill": 1_000_000_000,
                "fill_interval": "1s",
            },
            "always_consume_default_token_bucket": False,
            "rate_limits": [{"actions": [not_health, client]}],
            # An empty value: a bucket of its own for each value seen (at most MAX_CLIENTS).
            "descriptors": [
                {
                    "entries": [
                        {"key": LIMITED_KEY, "value": "yes"},
                        {"key": client_key, "value": ""},
                    ],
                    "token_bucket": {
                        "max_tokens": limit.burst,
                        "tokens_per_fill": tokens,
                        "fill_interval": _duration(every),
                    },
                }
            ],
            "max_dynamic_descriptors": MAX_CLIENTS,
            "rate_limited_as_resource_exhausted": True,
        },
    }


def _flag_filter(flag: str) -> dict:
    return {"response_flag_filter": {"flags": [flag]}}


def _status_filter(status: int) -> dict:
    return {
        "status_code_filter": {
            "comparison": {
                "op": "EQ",
                "value": {"default_value": status, "runtime_key": f"edge.limit_status_{status}"},
            }
        }
    }


def grpc_filter() -> dict:
    """Matches calls that came in as gRPC (the error filter marks them on the way in).

    A transcoded REST call carries the gRPC content type by the time of a reply,
    but Envoy still answers it in plain HTTP: only this mark tells them apart."""
    return {
        "metadata_filter": {
            "matcher": {
                "filter": errors.ERRORS_FILTER,
                "path": [{"key": "grpc"}],
                "value": {"bool_match": True},
            },
            "match_if_key_not_found": False,
        }
    }


def _header(name: str, value: str) -> dict:
    return {"header": {"key": name, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def _refusal(filter_: dict, message: str, retry_after: int, grpc_status: int | None) -> list[dict]:
    """Two mappers for one kind of refusal: gRPC calls keep the plain message for
    grpc-message; REST calls (transcoded or not) get 429 in the error shape."""
    grpc_headers = [_header("retry-after", str(retry_after))]
    if grpc_status is not None:
        # Envoy keeps a grpc-status a mapper set; an overflow would be UNAVAILABLE.
        grpc_headers.append(_header("grpc-status", str(grpc_status)))
    return [
        {
            "filter": {"and_filter": {"filters": [filter_, grpc_filter()]}},
            "headers_to_add": grpc_headers,
            "body": {"inline_string": message},
        },
        {
            "filter": filter_,
            "status_code": 429,
            "headers_to_add": [_header("retry-after", str(retry_after))],
            "body": {"inline_string": message},
            "body_format_override": errors.error_format(errors.HTTP_STATUS_NAMES[429]),
        },
    ]


def reply_mappers(
    max_body_bytes: int,
    max_concurrent_streams: int,
    max_queue: int,
    rate_limit: EdgeRateLimit | None,
) -> list[dict]:
    """Local-reply mappers, ahead of the edge's others: each refusal names its limit."""
    exhausted = errors.GRPC_CODE_NAMES.index("RESOURCE_EXHAUSTED")
    mappers = []
    if rate_limit is not None:
        wait = retry_after_seconds(rate_limit)
        # local_ratelimit flags its reply only after sending it, so the mappers
        # cannot see the flag; its 429 is the only local reply with that status.
        mappers += _refusal(
            _status_filter(429),
            f"rate limit exceeded: EDGE_RATE_LIMIT_PER_SECOND={rate_limit.per_second:g} "
            f"calls a second per client (burst EDGE_RATE_LIMIT_BURST={rate_limit.burst}); "
            f"retry after {wait} s",
            wait,
            None,
        )
    mappers += _refusal(
        _flag_filter("UO"),
        f"the edge is at its limit of EDGE_MAX_CONCURRENT_STREAMS={max_concurrent_streams} "
        f"calls in flight (EDGE_MAX_QUEUE={max_queue} waiting); "
        f"retry after {OVERLOAD_RETRY_AFTER} s",
        OVERLOAD_RETRY_AFTER,
        exhausted,
    )
    message = (
        f"request body exceeds the configured limit EDGE_MAX_BODY_BYTES={max_body_bytes} bytes"
    )
    mappers += [
        {
            "filter": {"and_filter": {"filters": [_status_filter(413), grpc_filter()]}},
            # Envoy would make a 413 UNKNOWN; a message over the limit is RESOURCE_EXHAUSTED.
            "headers_to_add": [_header("grpc-status", str(exhausted))],
            "body": {"inline_string": message},
        },
        {
            "filter": _status_filter(413),
            "body": {"inline_string": message},
            "body_format_override": errors.error_format(errors.HTTP_STATUS_NAMES[413]),
        },
    ]
    return mappers


def body_limit_filter(max_body_bytes: int) -> dict:
    """Refuses a body over ``max_body_bytes`` (413) from its declared length, or
    once that many bytes have arrived; it buffers nothing."""
    return {
        "name": BODY_LIMIT_FILTER,
        "typed_config": {
            "@type": EXTENSIONS + "filters.http.body_size_limit.v3.BodySizeLimit",
            "max_request_bytes": max_body_bytes,
        },
    }


def circuit_breakers(max_concurrent_streams: int, max_queue: int) -> dict:
    """The gateway cluster's limits, all gateways together."""
    return {
        "thresholds": [
            {
                "priority": "DEFAULT",
                # HTTP/2 carries many calls on one connection; one a call at most.
                "max_connections": max_concurrent_streams,
                "max_pending_requests": max_queue,
                "max_requests": max_concurrent_streams,
                # Retries only resend calls no gateway began; let each call have one.
                "max_retries": max_concurrent_streams,
            }
        ]
    }
