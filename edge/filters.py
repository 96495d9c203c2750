"""The public connection manager's HTTP filters, in the order they see a request.

Responses run through the filters in reverse: the errors filter, first here, sees
what the transcoder made of a gRPC status. jwt_authn refuses a request before the
transcoder reads its body; CORS needs the route the transcoder's rewritten path
finds (edge.security).
"""

from __future__ import annotations

from edge import errors, fields, limits, paths, security, timeout, write_scope
from edge.config import EdgeConfig
from edge.envoy_types import EXTENSIONS

ROUTER_FILTER = "envoy.filters.http.router"
TRANSCODED_SERVICES = ("voice.v1.Gateway",)


def transcoder(config: EdgeConfig) -> dict:
    """The gRPC-JSON transcoder's settings: REST to gRPC by the routes annotated in the
    voice.v1 protos, over the generated descriptor set."""
    return {
        "@type": EXTENSIONS + "filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
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


def http_filters(config: EdgeConfig) -> list[dict]:
    """The filter chain, the router last; the optional ones only where configured."""
    return [
        errors.lua_filter(),
        # Every request, from its headers on: a body over the limit is never read whole.
        limits.body_limit_filter(config.max_body_bytes),
        *([security.jwt_filter(config.jwt, cors=bool(config.cors_origins))]
          if config.jwt else []),
        # Voice library writes need their own scope, refused before a body is read.
        *([write_scope.lua_filter(config.jwt.write_scope)]
          if config.jwt and config.jwt.write_scope else []),
        # After jwt_authn (a client is its token's subject), before the transcoder
        # reads a body: a client over its rate costs nothing more.
        *([limits.rate_limit_filter(config.rate_limit, jwt=config.jwt is not None)]
          if config.rate_limit else []),
        # A malformed grpc-timeout never reaches a gateway (edge.timeout).
        timeout.lua_filter(),
        # Reads the JSON the transcoder would read, to refuse fields it would drop.
        fields.lua_filter(),
        {"name": "envoy.filters.http.grpc_json_transcoder", "typed_config": transcoder(config)},
        *([security.cors_filter()] if config.cors_origins else []),
        # Last: a request still REST here (not transcoded) never reaches a gateway.
        paths.grpc_only_filter(),
        {
            "name": ROUTER_FILTER,
            "typed_config": {"@type": EXTENSIONS + "filters.http.router.v3.Router"},
        },
    ]
