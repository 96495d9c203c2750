"""python -m services.rvc"""

from __future__ import annotations

import asyncio

from voice.v1 import rvc_pb2, rvc_pb2_grpc

from services.common.logs import configure_logging
from services.common.server import Servicer, ServiceHost
from services.rvc.conversion import Converter
from services.rvc.model_store import ModelStore
from services.rvc.servicer import VoiceConversionServicer
from services.rvc.settings import RvcSettings


async def main() -> None:
    settings = RvcSettings.load()
    configure_logging("rvc", settings.server.log_level, settings.server.log_format)
    converter = Converter(settings, ModelStore(settings.models_dir, settings.model))
    host = ServiceHost(
        settings.server,
        [
            Servicer(
                VoiceConversionServicer(converter),
                rvc_pb2_grpc.add_VoiceConversionServicer_to_server,
                rvc_pb2.DESCRIPTOR.services_by_name["VoiceConversion"].full_name,
            )
        ],
    )
    await host.run_until_signal()


if __name__ == "__main__":
    asyncio.run(main())
