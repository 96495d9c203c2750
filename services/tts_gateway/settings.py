"""Settings of the TTS service, read from TTS_* variables (and TRITON_GRPC_URL)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.settings import ServerSettings, SettingsError, env_field, from_env


@dataclass(frozen=True)
class TtsSettings:
    server: ServerSettings = field(
        default_factory=lambda: ServerSettings(grpc_port=50052, metrics_port=9102)
    )
    triton_url: str = env_field("TRITON_GRPC_URL", "127.0.0.1:8001")
    # The vLLM server behind Triton's llm model (http://host:port), for the status
    # only; empty: the status leaves it out.
    llm_url: str = ""
    max_text_chars: int = 5_000
    max_reference_seconds: float = 30.0
    # Cap on generated semantic tokens when a request sets none: about twice
    # the length of natural speech (50 tokens a second, ~15 characters a
    # second), so a model that never stops cannot babble for a minute.
    tokens_per_char: float = 7.0
    min_tokens: int = 100
    max_tokens: int = 3000
    # Longest a synthesis may run when the caller set no deadline.
    request_timeout_seconds: float = 300.0
    # How long a request waits for a restarting Triton before UNAVAILABLE (at most
    # half its deadline); 0 refuses at once.
    triton_wait_seconds: float = 30.0
    # The engine of requests that name none and give no speaker (one that gives a
    # speaker goes to Spark): spark or piper (the local stack picks piper when it
    # has no Spark TTS weights).
    default_engine: str = "spark"

    def validate(self) -> None:
        if self.llm_url and not (self.llm_url.startswith("http://") and len(self.llm_url) > 7):
            raise SettingsError(f"TTS_LLM_URL={self.llm_url!r}: expected http://host:port")
        if self.default_engine not in ("spark", "piper"):
            raise SettingsError(
                f"TTS_DEFAULT_ENGINE={self.default_engine!r}: expected spark or piper")
        if not 0 <= self.triton_wait_seconds <= 3600:
            raise SettingsError(
                f"TTS_TRITON_WAIT_SECONDS={self.triton_wait_seconds}: expected 0..3600")

    @classmethod
    def load(cls) -> "TtsSettings":
        return from_env(cls, "TTS")
