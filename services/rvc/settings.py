"""Settings of the RVC service, read from RVC_* variables (old server names kept)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from services.common.settings import ServerSettings, SettingsError, env_field, from_env


@dataclass(frozen=True)
class RvcSettings:
    server: ServerSettings = field(
        default_factory=lambda: ServerSettings(grpc_port=50053, metrics_port=9103)
    )
    models_dir: Path = Path("models/rvc")
    # The voice used when a request names none; empty means "the only one installed".
    model: str = env_field("RVC_MODEL", "")
    workers: int = env_field("RVC_WORKERS", 1)
    device: str = "auto"

    def validate(self) -> None:
        if not 1 <= self.workers <= 64:
            raise SettingsError(f"RVC_WORKERS={self.workers}: expected 1..64")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise SettingsError(f"RVC_DEVICE={self.device!r}: expected auto, cpu or cuda[:N]")

    @classmethod
    def load(cls) -> "RvcSettings":
        return from_env(cls, "RVC")
