"""The edge's whole Envoy configuration from EdgeConfig: the admin interface, the
internal-listener extension, the listeners (the public one, then the internal one
that answers 100-continue) and the clusters (the gateways, then the internal one).

``python -m edge.render --descriptor gen/voice_v1.pb`` prints it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge import clusters, expect_continue, listeners
from edge.config import EdgeConfig
from edge.web import WEB_DIR


def render(config: EdgeConfig) -> dict:
    manager = listeners.connection_manager(config)
    cluster = clusters.gateway_cluster(config)
    # Built last: the edge's connection manager as configured, answering 100-continue.
    continue_listener = expect_continue.continue_listener(manager)
    return {
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": config.admin_port}}
        },
        "bootstrap_extensions": [expect_continue.internal_listener_extension()],
        "static_resources": {
            "listeners": [
                listeners.public_listener(config, manager),
                continue_listener,
            ],
            "clusters": [
                cluster,
                expect_continue.continue_cluster(config.max_concurrent_streams, config.max_queue),
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
    parser.add_argument("--web-dir", type=Path, default=WEB_DIR,
                        help="the web playground's files, served at / (default: %(default)s)")
    parser.add_argument("--no-web", action="store_true", help="serve no web playground")
    args = parser.parse_args()
    config = EdgeConfig(
        descriptor=args.descriptor,
        gateway_host=args.gateway_host,
        gateway_port=args.gateway_port,
        listen_host=args.listen_host,
        listen_port=args.listen_port,
        admin_port=args.admin_port,
        discovery=args.discovery,
        web_dir=None if args.no_web else args.web_dir.resolve(),
    )
    print(json.dumps(render(config), indent=2))


if __name__ == "__main__":
    main()
