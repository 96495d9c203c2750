"""python -m services.tts_gateway"""

from __future__ import annotations

from voice.v1 import tts_pb2, tts_pb2_grpc

from services.common.server import ServiceHost, Servicer, run_service
from services.tts_gateway.servicer import TextToSpeechServicer
from services.tts_gateway.settings import TtsSettings
from services.tts_gateway.synthesis import TtsEngine
from services.tts_gateway.triton import Triton


async def build(settings: TtsSettings) -> ServiceHost:
    triton = Triton(settings.triton_url)
    servicer = Servicer(
        TextToSpeechServicer(TtsEngine(settings, triton)),
        tts_pb2_grpc.add_TextToSpeechServicer_to_server,
        tts_pb2.DESCRIPTOR.services_by_name["TextToSpeech"].full_name,
    )
    # Without Triton this service can do nothing: its health follows Triton's.
    return ServiceHost(settings.server, [servicer], readiness=triton.ready, on_stop=[triton.close])


if __name__ == "__main__":
    run_service("tts_gateway", TtsSettings.load, build)
