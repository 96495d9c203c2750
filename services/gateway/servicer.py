"""voice.v1.Gateway, the one servicer gRPC serves: the protocol adapters
(services.gateway.adapters) over one core (services.gateway.speech)."""

from __future__ import annotations

from voice.v1 import gateway_pb2_grpc

from services.gateway.adapters.grpc_api import SERVICE_NAME, VERSION, GatewayRpcs
from services.gateway.adapters.legacy_api import LegacyRpcs
from services.gateway.adapters.library_api import LibraryRpcs
from services.gateway.adapters.openai_api import OpenAiRpcs
from services.gateway.speech import SpeechService

__all__ = ["SERVICE_NAME", "VERSION", "GatewayServicer"]


class GatewayServicer(GatewayRpcs, LegacyRpcs, OpenAiRpcs, LibraryRpcs,
                      gateway_pb2_grpc.GatewayServicer):
    def __init__(self, speech: SpeechService) -> None:
        self._speech = speech
