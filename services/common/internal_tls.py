"""Mutual TLS between the internal services (optional, off by default).

With ``INTERNAL_TLS_CERT``, ``INTERNAL_TLS_KEY`` and ``INTERNAL_TLS_CA`` set
(``settings.InternalTls``), every gRPC service listens with TLS and admits only
clients whose certificate the CA signed, and every internal client (the gateway's
channels to the TTS and RVC services, the TTS service's channel to Triton, the
edge's cluster of gateways, the local stack's probes) presents its own certificate
and checks the server's against the same CA. One certificate per service serves
both roles, so it needs the serverAuth and clientAuth key usages and a subject
alternative name for every address its clients dial (a Kubernetes Service name,
127.0.0.1 locally). Files are read when a process starts.
"""

from __future__ import annotations

import grpc

from services.common.settings import InternalTls


def _pem(tls: InternalTls) -> tuple[bytes, bytes, bytes]:
    if tls.cert is None or tls.key is None or tls.ca is None:
        raise ValueError("internal mTLS is off")
    return tls.cert.read_bytes(), tls.key.read_bytes(), tls.ca.read_bytes()


def server_credentials(tls: InternalTls) -> grpc.ServerCredentials:
    """A server that requires a client certificate signed by the CA."""
    cert, key, ca = _pem(tls)
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                       require_client_auth=True)


def channel_credentials(tls: InternalTls) -> grpc.ChannelCredentials:
    """A client that shows its certificate and checks the server's against the CA."""
    cert, key, ca = _pem(tls)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                        certificate_chain=cert)
