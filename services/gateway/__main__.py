"""python -m services.gateway"""

from __future__ import annotations

from voice.v1 import gateway_pb2, gateway_pb2_grpc

from services.common.server import ServiceHost, Servicer, run_service
from services.gateway.pipeline import Pipeline
from services.gateway.servicer import GatewayServicer
from services.gateway.settings import GatewaySettings
from services.gateway.stages import RvcStage, TtsStage


async def build(settings: GatewaySettings) -> ServiceHost:
    tts, rvc = TtsStage(settings.tts_target), RvcStage(settings.rvc_target)
    servicer = Servicer(
        GatewayServicer(Pipeline(tts, rvc), settings.health_timeout_seconds),
        gateway_pb2_grpc.add_GatewayServicer_to_server,
        gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name,
    )
    return ServiceHost(settings.server, [servicer], on_stop=[tts.close, rvc.close])


if __name__ == "__main__":
    run_service("gateway", GatewaySettings.load, build)
