"""Is a gRPC service SERVING? For probes that must speak internal mTLS.

    python -m services.common.health_probe 50051

Exit 0 when the standard health service at localhost:PORT answers SERVING, 1
otherwise (one line on stderr says why). Kubernetes' own gRPC probes cannot show
a client certificate, so under internal mTLS the pods probe with this instead; it
reads INTERNAL_TLS_CERT/_KEY/_CA as the services do, and dials ``localhost``, which
each pod's certificate must therefore name.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.internal_tls import channel_credentials
from services.common.settings import InternalTls, SettingsError, from_env


def credentials_for(tls: InternalTls) -> grpc.ChannelCredentials | None:
    """The client credentials of internal mTLS; None (plaintext) when it is off."""
    return channel_credentials(tls) if tls.enabled else None


def health_status(
    address: str, credentials: grpc.ChannelCredentials | None = None, timeout: float = 1.0
) -> str:
    """SERVING, NOT_SERVING, ... or the gRPC error code of the health check."""
    with (grpc.secure_channel(address, credentials) if credentials
          else grpc.insecure_channel(address)) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            return exc.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    try:
        tls = from_env(InternalTls, "")
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 1
    status = health_status(f"{args.host}:{args.port}", credentials_for(tls), args.timeout)
    if status != "SERVING":
        print(f"{args.host}:{args.port}: {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
