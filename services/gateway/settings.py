"""Settings of the gateway, read from GATEWAY_* variables and TTS_TARGET / RVC_TARGET."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from services.common.settings import ServerSettings, SettingsError, env_field, from_env
from services.gateway.voice_aliases import alias_table, check_targets


@dataclass(frozen=True)
class GatewaySettings:
    server: ServerSettings = field(
        default_factory=lambda: ServerSettings(grpc_port=50051, metrics_port=9101)
    )
    # gRPC targets; "dns:///name:port" spreads calls over every address a name has.
    tts_target: str = env_field("TTS_TARGET", "127.0.0.1:50052")
    rvc_target: str = env_field("RVC_TARGET", "127.0.0.1:50053")
    health_timeout_seconds: float = 2.0
    # Voice profiles: <voices_dir>/<name>.json beside their reference clips (GATEWAY_VOICES_DIR).
    voices_dir: Path | None = None
    # The profile used when a request names no voice and gives no speaker (GATEWAY_DEFAULT_VOICE).
    default_voice: str = ""
    # More names for profiles, "alias=profile,..." (GATEWAY_VOICE_ALIASES); OpenAI's
    # voice names stand for the default profile unless given here.
    voice_aliases: tuple[str, ...] = ()
    # Longest text one request may carry (its sentences are synthesised in turn).
    max_text_chars: int = 20_000
    # Longest uploaded clips the gateway decodes, under the TTS and RVC services' own names
    # and defaults: reference_audio (TTS_MAX_REFERENCE_SECONDS), audio of POST /rvc.
    max_reference_seconds: float = env_field("TTS_MAX_REFERENCE_SECONDS", 30.0)
    max_audio_seconds: float = env_field("RVC_MAX_AUDIO_SECONDS", 600.0)

    def validate(self) -> None:
        if not 1 <= self.max_text_chars <= 1_000_000:
            raise SettingsError(f"GATEWAY_MAX_TEXT_CHARS={self.max_text_chars}: expected 1..1000000")
        for name, seconds in (("TTS_MAX_REFERENCE_SECONDS", self.max_reference_seconds),
                              ("RVC_MAX_AUDIO_SECONDS", self.max_audio_seconds)):
            if not seconds > 0:
                raise SettingsError(f"{name}={seconds}: expected a positive number of seconds")
        try:
            check_targets(self.aliases(), self.voices_dir)
        except ValueError as exc:
            raise SettingsError(f"GATEWAY_VOICE_ALIASES: {exc}") from None

    def aliases(self) -> dict[str, str]:
        """alias -> profile name ("" for the default profile)."""
        return alias_table(self.voice_aliases)

    @classmethod
    def load(cls) -> "GatewaySettings":
        return from_env(cls, "GATEWAY")
