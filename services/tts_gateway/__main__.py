"""python -m services.tts_gateway"""

from __future__ import annotations

import asyncio

from voice.v1 import tts_pb2, tts_pb2_grpc

from services.common.logs import configure_logging
from services.common.server import Servicer, ServiceHost
from services.tts_gateway.servicer import TextToSpeechServicer
from services.tts_gateway.settings import TtsSettings
from services.tts_gateway.synthesis import TtsEngine
from services.tts_gateway.triton import Triton


async def main() -> None:
    settings = TtsSettings.load()
    configure_logging("tts_gateway", settings.server.log_level, settings.server.log_format)
    triton = Triton(settings.triton_url)
    engine = TtsEngine(settings, triton)
    host = ServiceHost(
        settings.server,
        [
            Servicer(
                TextToSpeechServicer(engine),
                tts_pb2_grpc.add_TextToSpeechServicer_to_server,
                tts_pb2.DESCRIPTOR.services_by_name["TextToSpeech"].full_name,
            )
        ],
        readiness=triton.ready,
        on_stop=[triton.close],
    )
    await host.run_until_signal()


if __name__ == "__main__":
    asyncio.run(main())
