"""voice.v1.Gateway, the one servicer gRPC serves: the three protocol adapters
(services.gateway.adapters) over one core (services.gateway.speech)."""

from __future__ import annotations

from voice.v1 import gateway_pb2_grpc

from services.common.metrics import ServerMetrics
from services.gateway.adapters.grpc_api import SERVICE_NAME, VERSION, GatewayRpcs
from services.gateway.adapters.legacy_api import LegacyRpcs
from services.gateway.adapters.openai_api import OpenAiRpcs
from services.gateway.pipeline import Pipeline
from services.gateway.speech import SpeechService
from services.gateway.voices import VoiceBook

__all__ = ["SERVICE_NAME", "VERSION", "GatewayServicer"]


class GatewayServicer(GatewayRpcs, LegacyRpcs, OpenAiRpcs, gateway_pb2_grpc.GatewayServicer):
    def __init__(
        self,
        pipeline: Pipeline,
        voices: VoiceBook,
        health_timeout: float,
        metrics: ServerMetrics | None = None,
        max_reference_seconds: float | None = None,
        max_audio_seconds: float | None = None,
    ) -> None:
        self._speech = SpeechService(
            pipeline, voices, health_timeout, metrics,
            max_reference_seconds=max_reference_seconds, max_audio_seconds=max_audio_seconds,
            service_name=SERVICE_NAME,
        )
