"""The edge's optional security: TLS, JWT authentication and CORS, as Envoy config.

Each piece is off unless its settings are given (edge.config.EdgeConfig):

* TLS: the public listener terminates TLS with a certificate and key read
  from files, and offers h2 (gRPC) and http/1.1 (REST) by ALPN.
* JWT: Envoy's jwt_authn filter checks a bearer token on every request but
  the health checks, against public keys (a JWKS) read from a file, so no
  signing secret is ever in Envoy's config. A token is taken from the
  ``authorization`` header only (gRPC metadata is that header): tokens in a
  query string would land in access logs. Every failure is a 401: a REST
  client gets ``{"error": {"code": 401, ..., "status": "UNAUTHENTICATED"}}``,
  a gRPC client UNAUTHENTICATED. (jwt_authn itself answers a token for
  another audience with 403; the filter records each failure in dynamic
  metadata, and reply_mappers() turn those replies into 401s, as RFC 6750
  has it for an invalid token.) The token is removed before the request goes
  on, so the gateway never sees or logs it.
* CORS: browsers from the listed origins may call the API. The CORS filter
  needs a route to act on, and a REST path has one only once the transcoder
  has rewritten it, so the filter comes after the transcoder, and preflight
  requests (OPTIONS, whose REST paths the transcoder leaves alone) get a route
  of their own that never reaches the gateway: the CORS filter answers every
  preflight itself. jwt_authn lets preflights by (they carry no token).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edge import errors
from edge.envoy_types import EXTENSIONS
from services.common.settings import InternalTls

JWT_FILTER = "envoy.filters.http.jwt_authn"
CORS_FILTER = "envoy.filters.http.cors"
JWT_PROVIDER = "edge"
# Where jwt_authn records why a token failed (its dynamic metadata, under JWT_FILTER).
JWT_FAILURE_KEY = "failure"
# Where it puts a verified token's claims (likewise).
JWT_PAYLOAD_KEY = "jwt_payload"
# Open without a token, so that probes and load balancers can ask: REST /v1/health
# and the old server's /health (with a trailing slash too, as the transcoder maps them;
# a query string never counts: Envoy matches a path without it), their gRPC twins, and
# the standard gRPC health service.
OPEN_PATHS = ("/health", "/health/", "/v1/health", "/v1/health/",
              "/voice.v1.Gateway/GetHealth", "/voice.v1.Gateway/GetLegacyHealth")
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
# JWK members that only a private or symmetric key has.
_PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


@dataclass(frozen=True)
class EdgeTls:
    cert: Path
    key: Path


@dataclass(frozen=True)
class EdgeJwt:
    jwks: Path
    # Empty: the claim is not checked.
    issuer: str = ""
    audiences: tuple[str, ...] = ()
    # The scope a token needs to write to the voice library (edge.write_scope);
    # empty: any valid token may.
    write_scope: str = ""


def check_jwks(text: str) -> None:
    """Raises ValueError unless ``text`` is a JWKS of public RSA/EC keys only."""
    try:
        keys = json.loads(text)["keys"]
    except (ValueError, KeyError, TypeError):
        raise ValueError('not a JWKS: expected JSON {"keys": [...]}') from None
    if not isinstance(keys, list) or not keys:
        raise ValueError("the JWKS has no keys")
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC"):
            raise ValueError("the JWKS may hold only RSA or EC keys (RS256/ES256)")
        if any(member in key for member in _PRIVATE_JWK_MEMBERS):
            raise ValueError("the JWKS holds private key material: publish public keys only")


def transport_socket(tls: EdgeTls) -> dict:
    """The listener's TLS: certificate and key from files, h2 and http/1.1 by ALPN."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": EXTENSIONS + "transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": str(tls.cert)},
                        "private_key": {"filename": str(tls.key)},
                    }
                ],
            },
        },
    }


def upstream_transport_socket(tls: InternalTls, hosts: Sequence[str]) -> dict:
    """The edge's connections to the gateways under internal mTLS: Envoy shows the
    certificate it is given and accepts a gateway only with a certificate the
    internal CA signed that names one of ``hosts`` (a DNS name or an IP address)."""
    if tls.cert is None or tls.key is None or tls.ca is None:
        raise ValueError("internal mTLS is off")
    names = []
    for host in dict.fromkeys(hosts):
        try:
            ipaddress.ip_address(host)
            names.append({"san_type": "IP_ADDRESS", "matcher": {"exact": host}})
        except ValueError:
            names.append({"san_type": "DNS", "matcher": {"exact": host}})
    context: dict = {
        "common_tls_context": {
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
            "alpn_protocols": ["h2"],
            "tls_certificates": [
                {
                    "certificate_chain": {"filename": str(tls.cert.resolve())},
                    "private_key": {"filename": str(tls.key.resolve())},
                }
            ],
            "validation_context": {
                "trusted_ca": {"filename": str(tls.ca.resolve())},
                "match_typed_subject_alt_names": names,
            },
        },
    }
    dns = [name["matcher"]["exact"] for name in names if name["san_type"] == "DNS"]
    if dns:
        context["sni"] = dns[0]
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {"@type": EXTENSIONS + "transport_sockets.tls.v3.UpstreamTlsContext", **context},
    }


def jwt_filter(jwt: EdgeJwt, cors: bool = False) -> dict:
    """jwt_authn: health open, everything else needs a valid bearer token
    (CORS preflights too, unless ``cors``: the CORS filter answers those)."""
    provider = {
        "local_jwks": {"filename": str(jwt.jwks)},
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "forward": False,
        "clock_skew_seconds": 30,
        "failed_status_in_metadata": JWT_FAILURE_KEY,
        # The verified claims, in dynamic metadata only: the per-client rate limit
        # keys on ``sub`` (edge.limits). Never logged or forwarded.
        "payload_in_metadata": JWT_PAYLOAD_KEY,
    }
    if jwt.issuer:
        provider["issuer"] = jwt.issuer
    if jwt.audiences:
        provider["audiences"] = list(jwt.audiences)
    # The first rule that matches decides; a rule without "requires" lets the request by.
    open_rules = [{"match": {"path": path}} for path in OPEN_PATHS]
    open_rules += [{"match": {"prefix": prefix}} for prefix in OPEN_PREFIXES]
    return {
        "name": JWT_FILTER,
        "typed_config": {
            "@type": EXTENSIONS + "filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {JWT_PROVIDER: provider},
            "bypass_cors_preflight": cors,
            "rules": [
                *open_rules,
                {"match": {"prefix": "/"}, "requires": {"provider_name": JWT_PROVIDER}},
            ],
        },
    }


def reply_mappers() -> list[dict]:
    """Local-reply mappers, ahead of the edge's others: a failed token is a 401,
    in the error shape for REST (a gRPC reply keeps its text for grpc-message)."""
    failed = {
        "metadata_filter": {
            "matcher": {
                "filter": JWT_FILTER,
                "path": [{"key": JWT_FAILURE_KEY}],
                "value": {"present_match": True},
            },
            "match_if_key_not_found": False,
        }
    }
    rest = {"and_filter": {"filters": [failed, errors.not_grpc_filter()]}}
    return [
        {"filter": rest, "status_code": 401,
         "body_format_override": errors.error_format("UNAUTHENTICATED")},
        {"filter": failed, "status_code": 401},
    ]


def cors_filter() -> dict:
    return {"name": CORS_FILTER, "typed_config": {"@type": EXTENSIONS + "filters.http.cors.v3.Cors"}}


def cors_policy(origins: tuple[str, ...]) -> dict:
    """The virtual host's per-filter CORS policy: exactly these origins."""
    return {
        CORS_FILTER: {
            "@type": EXTENSIONS + "filters.http.cors.v3.CorsPolicy",
            "allow_origin_string_match": [{"exact": origin} for origin in origins],
            "allow_methods": "GET, POST, OPTIONS",
            "allow_headers": "authorization, content-type, grpc-timeout, x-request-id",
            "expose_headers": "x-request-id, grpc-status, grpc-message",
            "max_age": "600",
            # Every preflight is answered here, allowed or not: none reaches the gateway.
            "forward_not_matching_preflights": False,
        }
    }


def preflight_route() -> dict:
    """A route for CORS preflights to any path, so the CORS filter acts on them;
    it answers them all, so the cluster is never called."""
    return {
        "match": {
            "prefix": "/",
            "headers": [
                {"name": ":method", "string_match": {"exact": "OPTIONS"}},
                {"name": "access-control-request-method", "present_match": True},
            ],
        },
        "route": {"cluster": "gateway", "timeout": "5s"},
    }
