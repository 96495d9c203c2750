"""The gateway's protocol adapters: voice.v1's own RPCs (grpc_api), the old server's
HTTP API (legacy_api) and OpenAI's speech endpoint (openai_api). Each translates its
requests into calls on the core (services.gateway.speech) and the results into its
replies; none imports another. services.gateway.servicer joins them into the one
voice.v1.Gateway servicer that gRPC serves (REST arrives through Envoy's transcoder)."""
