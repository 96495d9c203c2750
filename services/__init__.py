"""The voice pipeline's gRPC services; each runs as ``python -m services.<name>``."""
