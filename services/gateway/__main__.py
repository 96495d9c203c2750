"""python -m services.gateway"""

from __future__ import annotations

from voice.v1 import gateway_pb2_grpc

from services.common.metrics import ServerMetrics
from services.common.server import ServiceHost, Servicer, run_service
from services.gateway.metrics import GatewayMetrics
from services.gateway.pipeline import Pipeline
from services.gateway.servicer import SERVICE_NAME, GatewayServicer
from services.gateway.settings import GatewaySettings
from services.gateway.speech import SpeechService
from services.gateway.stages import RvcStage, TtsStage
from services.gateway.voices import VoiceBook


async def build(settings: GatewaySettings) -> ServiceHost:
    tls = settings.server.internal_tls
    tts, rvc = TtsStage(settings.tts_target, tls), RvcStage(settings.rvc_target, tls)
    voices = VoiceBook(settings.voices_dir, settings.default_voice, aliases=settings.aliases())
    metrics = ServerMetrics()
    pipeline = Pipeline(
        tts, rvc, metrics=GatewayMetrics(metrics.registry), max_text_chars=settings.max_text_chars
    )
    speech = SpeechService(
        pipeline, voices, settings.health_timeout_seconds, metrics,
        max_reference_seconds=settings.max_reference_seconds,
        max_audio_seconds=settings.max_audio_seconds,
        service_name=SERVICE_NAME,
    )
    servicer = Servicer(
        GatewayServicer(speech),
        gateway_pb2_grpc.add_GatewayServicer_to_server,
        SERVICE_NAME,
    )
    return ServiceHost(
        settings.server, [servicer], metrics=metrics, on_stop=[tts.close, rvc.close],
        env_prefix="GATEWAY",
    )


if __name__ == "__main__":
    run_service("gateway", GatewaySettings.load, build)
