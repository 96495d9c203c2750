"""Client channels spread calls over every address a target resolves to."""

from collections import Counter

from voice.v1 import rvc_pb2, rvc_pb2_grpc

from services.common.channels import open_channel
from services.common.server import Servicer
from tests.grpc_hosts import hosted


class Numbered(rvc_pb2_grpc.VoiceConversionServicer):
    """Answers GetStatus with its own number, so the caller sees who served it."""

    def __init__(self, number: int) -> None:
        self.number = number

    async def GetStatus(self, request, context):
        return rvc_pb2.RvcStatus(workers_configured=self.number)


def numbered(number: int) -> Servicer:
    return Servicer(
        Numbered(number),
        rvc_pb2_grpc.add_VoiceConversionServicer_to_server,
        rvc_pb2.DESCRIPTOR.services_by_name["VoiceConversion"].full_name,
    )


async def test_calls_round_robin_over_every_resolved_address():
    async with hosted([numbered(1)]) as one, hosted([numbered(2)]) as two, hosted(
        [numbered(3)]
    ) as three:
        # A resolver answering with three addresses, as DNS does for a headless Service.
        target = "ipv4:" + ",".join(f"127.0.0.1:{h.grpc_port}" for h in (one, two, three))
        channel = open_channel(target)
        stub = rvc_pb2_grpc.VoiceConversionStub(channel)
        try:
            # wait_for_ready: round_robin starts calls once a subchannel is up.
            served = Counter([
                (await stub.GetStatus(rvc_pb2.GetRvcStatusRequest(), wait_for_ready=True))
                .workers_configured
                for _ in range(30)
            ])
        finally:
            await channel.close()
    assert set(served) == {1, 2, 3}
    # Round robin, not random: no address gets more than its share plus the warm-up.
    assert max(served.values()) - min(served.values()) <= 3, served
