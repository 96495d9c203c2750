"""python -m services.gateway"""

from __future__ import annotations

import asyncio

from voice.v1 import gateway_pb2, gateway_pb2_grpc

from services.common.logs import configure_logging
from services.common.server import Servicer, ServiceHost
from services.gateway.pipeline import Pipeline
from services.gateway.servicer import GatewayServicer
from services.gateway.settings import GatewaySettings
from services.gateway.stages import RvcStage, TtsStage


async def main() -> None:
    settings = GatewaySettings.load()
    configure_logging("gateway", settings.server.log_level, settings.server.log_format)
    tts, rvc = TtsStage(settings.tts_target), RvcStage(settings.rvc_target)
    host = ServiceHost(
        settings.server,
        [
            Servicer(
                GatewayServicer(Pipeline(tts, rvc), settings.health_timeout_seconds),
                gateway_pb2_grpc.add_GatewayServicer_to_server,
                gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name,
            )
        ],
        on_stop=[tts.close, rvc.close],
    )
    await host.run_until_signal()


if __name__ == "__main__":
    asyncio.run(main())
