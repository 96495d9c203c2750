"""Settings of the gateway, read from GATEWAY_* variables (and API_PORT for its edge)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.settings import ServerSettings, check_port, env_field, from_env


@dataclass(frozen=True)
class GatewaySettings:
    server: ServerSettings = field(
        default_factory=lambda: ServerSettings(grpc_port=50051, metrics_port=9101)
    )
    # gRPC targets; "dns:///name:port" spreads calls over every address a name has.
    tts_target: str = env_field("TTS_TARGET", "127.0.0.1:50052")
    rvc_target: str = env_field("RVC_TARGET", "127.0.0.1:50053")
    # The public edge (Envoy) in front of this gateway.
    api_host: str = env_field("API_HOST", "0.0.0.0")
    api_port: int = env_field("API_PORT", 8080)
    envoy_admin_port: int = env_field("ENVOY_ADMIN_PORT", 9901)
    health_timeout_seconds: float = 2.0

    def validate(self) -> None:
        check_port("API_PORT", self.api_port)
        check_port("ENVOY_ADMIN_PORT", self.envoy_admin_port)

    @classmethod
    def load(cls) -> "GatewaySettings":
        return from_env(cls, "GATEWAY")
