"""The Envoy edge in front of the gateways, as Envoy configuration rendered from settings.

Envoy listens on API_PORT, passes gRPC for the public services through to
the gateway, and transcodes REST to gRPC with the routes annotated in the
voice.v1 protos (grpc_json_transcoder over the generated descriptor set).
At ``/`` Envoy serves the web playground's static files itself (edge.web).
Anything else gets a 404; the admin interface listens on loopback only. Paths
are normalized before they are routed, so ``..`` or an encoded slash cannot reach
another service (edge.paths).

Every error a REST client gets has one JSON shape; edge.errors says how (its Lua
filter is edge/errors.lua). TLS, JWT authentication and CORS are off unless
configured; edge.security says how each works. The limits (body size, calls in
flight, per-client rate) are in edge.limits, the internal listener that answers
``Expect: 100-continue`` once the body limit has let a request by in
edge.expect_continue, and the retries and health checks that let a gateway drain
in edge.draining.

Deadlines: a REST client's ``grpc-timeout`` request header (``grpc-timeout: 500m``)
passes through the transcoder to the gateway, where it is the call's deadline
(``context.time_remaining()``); when it runs out the reply is 504
DEADLINE_EXCEEDED. That is how REST clients bound a call. Envoy itself does not
time routes (timeout 0s). A malformed one is refused, 400 / INVALID_ARGUMENT
naming the header (edge.timeout).

The transcoder would drop a JSON field its request message does not have; a
Lua filter ahead of it (edge.fields) refuses the request instead (400, naming
the field). The transcoder rejects a value of the wrong type (400). A query
parameter that names no field is ignored on every REST route
(``ignore_unknown_query_parameters``; ``?t=1`` worked on the old server); one that
names a field binds it, and must be well-formed (edge.fields again). Only gRPC
reaches a gateway: a request still REST at the router is a 404 (edge.paths).

The configuration, by section: edge.config (the settings, EdgeConfig),
edge.listeners (the public listener and its connection manager), edge.filters
(its HTTP filters), edge.routes (its routes), edge.clusters (the gateways);
edge.render puts them together (``python -m edge.render --descriptor
gen/voice_v1.pb`` prints it), and edge.k8s renders the Kubernetes edge's files.
The gateway process imports none of this: the local stack (localstack) and
the Kubernetes manifests do.
"""
