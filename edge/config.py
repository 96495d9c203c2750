"""The edge's settings: what edge.render makes an Envoy configuration of."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge.limits import EdgeRateLimit
from edge.security import EdgeJwt, EdgeTls
from edge.web import WEB_DIR
from services.common.server import MAX_MESSAGE_BYTES
from services.common.settings import InternalTls

# The largest gRPC message, as JSON: base64 makes audio bytes a third longer.
MAX_BODY_BYTES = MAX_MESSAGE_BYTES * 3 // 2


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
    # The web playground's files (edge.web), served at /; None: no playground.
    web_dir: Path | None = WEB_DIR
