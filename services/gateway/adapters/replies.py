"""The core's results as voice.v1 messages, for the adapters that answer with them."""

from __future__ import annotations

from voice.v1 import audio_pb2, gateway_pb2

from services.gateway.results import Health
from services.gateway.stages import StageResult
from services.gateway.voices import VoiceListing


def stage_timing(result: StageResult | None) -> audio_pb2.StageTiming:
    if result is None:
        return audio_pb2.StageTiming()
    return audio_pb2.StageTiming(
        compute_seconds=result.seconds,
        first_audio_seconds=result.first_audio_seconds,
        audio_seconds=result.audio.duration,
    )


def health_message(health: Health) -> gateway_pb2.GetHealthResponse:
    return gateway_pb2.GetHealthResponse(
        status="SERVING" if health.serving else "DEGRADED",
        dependencies=[
            gateway_pb2.DependencyHealth(
                name=d.name, address=d.address, status=d.status, detail=d.detail
            )
            for d in health.dependencies
        ],
    )


def timing_trailers(context, timing: gateway_pb2.PipelineTiming) -> None:
    """Per-stage seconds as trailing metadata, beside what the interceptor put there."""
    pairs = (
        ("x-tts-seconds", timing.tts.compute_seconds),
        ("x-rvc-seconds", timing.rvc.compute_seconds),
        ("x-first-audio-seconds", timing.first_audio_seconds),
        ("x-total-seconds", timing.total_seconds),
    )
    existing = tuple(context.trailing_metadata() or ())
    context.set_trailing_metadata(existing + tuple((k, f"{v:.3f}") for k, v in pairs))


def voice_message(listing: VoiceListing) -> gateway_pb2.Voice:
    return gateway_pb2.Voice(
        name=listing.name, is_default=listing.is_default, aliases=listing.aliases,
        problem=listing.problem, rvc_model=listing.rvc_model,
        description=listing.description, speaker=listing.speaker,
        skip_rvc=listing.skip_rvc, engine=listing.engine,
    )
