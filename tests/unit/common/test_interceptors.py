"""The server interceptor: a request that does not parse is INVALID_ARGUMENT, not UNKNOWN."""

import grpc
import pytest
from voice.v1 import rvc_pb2, rvc_pb2_grpc

from services.common.server import Servicer
from tests.grpc_hosts import channel_to, hosted

SERVICE = rvc_pb2.DESCRIPTOR.services_by_name["VoiceConversion"].full_name


class Echo(rvc_pb2_grpc.VoiceConversionServicer):
    """LoadModel answers with the name it was sent; ConvertStream replies once per message."""

    async def LoadModel(self, request, context):
        return rvc_pb2.VoiceModel(name=request.name)

    async def ConvertStream(self, request_iterator, context):
        async for _ in request_iterator:
            yield rvc_pb2.ConvertStreamResponse()


def invalid_utf8(message) -> bytes:
    """``message`` serialized with its string "é" swapped for bytes that are not UTF-8."""
    raw = message.SerializeToString()
    assert "é".encode() in raw
    return raw.replace("é".encode(), b"\xff\xfe")


@pytest.fixture
async def channel():
    echo = Servicer(Echo(), rvc_pb2_grpc.add_VoiceConversionServicer_to_server, SERVICE)
    async with hosted([echo]) as host:
        async with channel_to(host) as channel:
            yield channel


async def test_an_undecodable_unary_request_is_invalid_argument(channel):
    call = channel.unary_unary(
        f"/{SERVICE}/LoadModel", response_deserializer=rvc_pb2.VoiceModel.FromString
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(invalid_utf8(rvc_pb2.LoadModelRequest(name="é")), timeout=10)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot be parsed" in caught.value.details()
    assert "voice.v1.LoadModelRequest" in caught.value.details()
    assert "UTF-8" in caught.value.details()
    # A well-formed request on the same channel is served as before.
    reply = await rvc_pb2_grpc.VoiceConversionStub(channel).LoadModel(
        rvc_pb2.LoadModelRequest(name="é"), timeout=10
    )
    assert reply.name == "é"


async def test_an_undecodable_message_in_a_request_stream_is_invalid_argument(channel):
    good = rvc_pb2.ConvertStreamRequest(params=rvc_pb2.ConversionParams(model="ok"))
    bad = invalid_utf8(rvc_pb2.ConvertStreamRequest(params=rvc_pb2.ConversionParams(model="é")))
    call = channel.stream_stream(
        f"/{SERVICE}/ConvertStream",
        response_deserializer=rvc_pb2.ConvertStreamResponse.FromString,
    )(iter([good.SerializeToString(), bad]), timeout=10)
    replies = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for reply in call:
            replies.append(reply)
    assert len(replies) == 1  # the good message was read and answered first
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "voice.v1.ConvertStreamRequest" in caught.value.details()
