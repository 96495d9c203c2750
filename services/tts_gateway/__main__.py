"""python -m services.tts_gateway"""

from __future__ import annotations

from voice.v1 import tts_pb2, tts_pb2_grpc

from services.common.metrics import ServerMetrics
from services.common.server import ServiceHost, Servicer, run_service
from services.tts_gateway.metrics import TtsMetrics
from services.tts_gateway.servicer import TextToSpeechServicer
from services.tts_gateway.settings import TtsSettings
from services.tts_gateway.synthesis import SPARK_MODEL, TtsEngine
from services.tts_gateway.triton import Triton


async def build(settings: TtsSettings) -> ServiceHost:
    triton = Triton(settings.triton_url, tls=settings.server.internal_tls)
    metrics = ServerMetrics()
    engine = TtsEngine(settings, triton, TtsMetrics(metrics.registry))
    servicer = Servicer(
        TextToSpeechServicer(engine, settings.llm_url),
        tts_pb2_grpc.add_TextToSpeechServicer_to_server,
        tts_pb2.DESCRIPTOR.services_by_name["TextToSpeech"].full_name,
    )
    async def ready() -> bool:
        return await triton.ready(SPARK_MODEL)

    # Without Triton's Spark TTS this service can do nothing: health follows it.
    return ServiceHost(
        settings.server, [servicer], readiness=ready, on_stop=[triton.close], metrics=metrics,
        env_prefix="TTS",
    )


if __name__ == "__main__":
    run_service("tts_gateway", TtsSettings.load, build)
