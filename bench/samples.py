"""One timed request, however it was made (through the stack or in-process)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    ok: bool
    code: str  # "OK" or the gRPC status name (HTTP errors: the edge's JSON "status")
    first_audio_seconds: float  # request sent -> first audio bytes received
    total_seconds: float  # request sent -> last byte received
    audio_seconds: float  # duration of the audio returned (0 on error)
    started: float = 0.0  # time.perf_counter() when the request was sent
