"""python -m services.rvc"""

from __future__ import annotations

from voice.v1 import rvc_pb2, rvc_pb2_grpc

from services.common.server import ServiceHost, Servicer, run_service
from services.rvc.conversion import Converter
from services.rvc.model_store import ModelStore
from services.rvc.servicer import VoiceConversionServicer
from services.rvc.settings import RvcSettings


async def build(settings: RvcSettings) -> ServiceHost:
    converter = Converter(settings, ModelStore(settings.models_dir, settings.model))
    servicer = Servicer(
        VoiceConversionServicer(converter),
        rvc_pb2_grpc.add_VoiceConversionServicer_to_server,
        rvc_pb2.DESCRIPTOR.services_by_name["VoiceConversion"].full_name,
    )
    return ServiceHost(settings.server, [servicer])


if __name__ == "__main__":
    run_service("rvc", RvcSettings.load, build)
