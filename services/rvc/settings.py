"""Settings of the RVC service, read from RVC_* variables (old server names kept)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from services.common.settings import ServerSettings, SettingsError, env_field, from_env


@dataclass(frozen=True)
class StreamSettings:
    """How ConvertStream cuts a stream: blocks converted with left context, cross-faded."""

    block_ms: int = env_field("RVC_STREAM_BLOCK_MS", 1000)
    context_ms: int = env_field("RVC_STREAM_CONTEXT_MS", 1000)
    crossfade_ms: int = env_field("RVC_STREAM_CROSSFADE_MS", 40)
    search_ms: int = env_field("RVC_STREAM_SEARCH_MS", 10)

    def validate(self) -> None:
        if not 100 <= self.block_ms <= 10_000:
            raise SettingsError(f"RVC_STREAM_BLOCK_MS={self.block_ms}: expected 100..10000")
        if not 0 <= self.context_ms <= 10_000:
            raise SettingsError(f"RVC_STREAM_CONTEXT_MS={self.context_ms}: expected 0..10000")
        if not 0 <= self.crossfade_ms <= min(200, self.block_ms // 2):
            raise SettingsError(
                f"RVC_STREAM_CROSSFADE_MS={self.crossfade_ms}: expected 0..min(200, block/2)"
            )
        if not 0 <= self.search_ms <= 50:
            raise SettingsError(f"RVC_STREAM_SEARCH_MS={self.search_ms}: expected 0..50")


@dataclass(frozen=True)
class RvcSettings:
    server: ServerSettings = field(
        default_factory=lambda: ServerSettings(grpc_port=50053, metrics_port=9103)
    )
    # Voices: <models_dir>/<name>/<file>.pth (+ .index) or <models_dir>/<name>.pth.
    models_dir: Path = Path("models/rvc")
    # Shared assets: hubert_base.pt or a transformers hubert_base/ folder, and rmvpe.pt.
    assets_dir: Path = Path("models/rvc-assets")
    # The voice used when a request names none; empty means "the only one installed".
    model: str = env_field("RVC_MODEL", "")
    # Worker processes per service instance; each loads its own models on its device.
    workers: int = env_field("RVC_WORKERS", 1)
    # auto: cuda:N round-robin over visible GPUs when CUDA is present, else cpu.
    device: str = "auto"
    # Torch threads all CPU workers share (each gets its part); 0: every core. Set it
    # when other compute shares the machine: threads beyond the cores spin and slow all.
    cpu_threads: int = 0
    # Voices each worker keeps loaded (least recently used is dropped first).
    voice_cache: int = 4
    # Requests waiting for a worker beyond those running; more are refused.
    max_queue: int = 32
    # Longest clip one request may carry, in seconds of input audio.
    max_audio_seconds: float = 600.0
    worker_start_seconds: float = 300.0
    # Largest upload InstallModel takes: the .pth (a real voice is about 55 MB) and the
    # .index (a few hundred MB after a long training set). Reading stops past either.
    max_checkpoint_bytes: int = 256 * 1024 * 1024
    max_index_bytes: int = 1024 * 1024 * 1024
    stream: StreamSettings = field(default_factory=StreamSettings)

    def validate(self) -> None:
        if not 1 <= self.workers <= 64:
            raise SettingsError(f"RVC_WORKERS={self.workers}: expected 1..64")
        if self.device not in ("auto", "cpu") and not (
            self.device == "cuda" or self.device.startswith("cuda:")
        ):
            raise SettingsError(f"RVC_DEVICE={self.device!r}: expected auto, cpu or cuda[:N]")
        if not 0 <= self.cpu_threads <= 1024:
            raise SettingsError(f"RVC_CPU_THREADS={self.cpu_threads}: expected 0..1024")
        if not 1 <= self.voice_cache <= 64:
            raise SettingsError(f"RVC_VOICE_CACHE={self.voice_cache}: expected 1..64")
        if not 0 <= self.max_queue <= 10_000:
            raise SettingsError(f"RVC_MAX_QUEUE={self.max_queue}: expected 0..10000")
        if not 1 <= self.max_audio_seconds <= 3600:
            raise SettingsError(f"RVC_MAX_AUDIO_SECONDS={self.max_audio_seconds}: expected 1..3600")
        for var, value in (("RVC_MAX_CHECKPOINT_BYTES", self.max_checkpoint_bytes),
                           ("RVC_MAX_INDEX_BYTES", self.max_index_bytes)):
            if not 1 <= value <= 1 << 40:
                raise SettingsError(f"{var}={value}: expected 1..2^40")

    @classmethod
    def load(cls) -> "RvcSettings":
        return from_env(cls, "RVC")
