"""The RVC service over real gRPC: parameter checks and honest answers."""

import grpc
import numpy as np
import pytest
from voice.v1 import audio_pb2, rvc_pb2, rvc_pb2_grpc

from services.common.audio import PcmAudio
from services.common.audio_proto import audio_to_proto
from services.common.server import Servicer
from services.rvc.conversion import Converter
from services.rvc.model_store import ModelStore
from services.rvc.servicer import VoiceConversionServicer
from services.rvc.settings import RvcSettings
from tests.grpc_hosts import channel_to, hosted

AUDIO = audio_to_proto(PcmAudio(np.zeros(1600, np.float32), 16_000))


@pytest.fixture
async def rvc(tmp_path):
    voice = tmp_path / "alice"
    voice.mkdir()
    (voice / "alice.pth").write_bytes(b"x")
    converter = Converter(RvcSettings(workers=3), ModelStore(tmp_path))
    servicer = Servicer(
        VoiceConversionServicer(converter),
        rvc_pb2_grpc.add_VoiceConversionServicer_to_server,
        rvc_pb2.DESCRIPTOR.services_by_name["VoiceConversion"].full_name,
    )
    async with hosted([servicer]) as host, channel_to(host) as channel:
        yield rvc_pb2_grpc.VoiceConversionStub(channel)


async def code_of(awaitable):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await awaitable
    return caught.value.code(), caught.value.details()


@pytest.mark.parametrize(
    "params, fragment",
    [
        (dict(pitch_shift=30), "pitch_shift 30 is outside -24..24"),
        (dict(index_rate=1.5), "index_rate 1.5 is outside 0..1"),
        (dict(filter_radius=9), "filter_radius 9 is outside 0..7"),
        (dict(rms_mix_rate=-0.1), "rms_mix_rate"),
        (dict(protect=0.9), "protect 0.9 is outside 0..0.5"),
        (dict(resample_sr=100), "sample_rate 100 Hz"),
        (dict(f0_method=42), "f0_method 42 is unknown"),
    ],
)
async def test_out_of_range_parameters_are_invalid(rvc, params, fragment):
    request = rvc_pb2.ConvertRequest(
        params=rvc_pb2.ConversionParams(model="alice", **params), audio=AUDIO
    )
    code, details = await code_of(rvc.Convert(request))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in details


async def test_audio_without_a_sample_rate_is_invalid(rvc):
    request = rvc_pb2.ConvertRequest(
        params=rvc_pb2.ConversionParams(model="alice"), audio=audio_pb2.Audio(pcm=b"\0\0")
    )
    code, details = await code_of(rvc.Convert(request))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "sample_rate is required" in details


async def test_valid_conversion_is_honestly_unimplemented_until_issue_4(rvc):
    request = rvc_pb2.ConvertRequest(params=rvc_pb2.ConversionParams(model="alice"), audio=AUDIO)
    code, details = await code_of(rvc.Convert(request))
    assert code is grpc.StatusCode.UNIMPLEMENTED
    assert "issue #4" in details


async def test_stream_must_open_with_params(rvc):
    async def messages():
        yield rvc_pb2.ConvertStreamRequest(chunk=audio_pb2.AudioChunk(audio=AUDIO))

    code, details = await code_of(rvc.ConvertStream(messages()).read())
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "first ConvertStream message must carry params" in details


async def test_stream_with_unknown_model_is_not_found(rvc):
    async def messages():
        yield rvc_pb2.ConvertStreamRequest(params=rvc_pb2.ConversionParams(model="ghost"))

    code, _ = await code_of(rvc.ConvertStream(messages()).read())
    assert code is grpc.StatusCode.NOT_FOUND


async def test_list_models_and_status(rvc):
    models = await rvc.ListModels(rvc_pb2.ListModelsRequest())
    assert [m.name for m in models.models] == ["alice"]
    assert models.default_model == "alice"
    status = await rvc.GetStatus(rvc_pb2.GetRvcStatusRequest())
    assert status.workers_configured == 3
    assert status.workers_alive == 0


async def test_load_model_checks_the_name_first(rvc):
    code, _ = await code_of(rvc.LoadModel(rvc_pb2.LoadModelRequest(name="../x")))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    code, _ = await code_of(rvc.LoadModel(rvc_pb2.LoadModelRequest(name="alice")))
    assert code is grpc.StatusCode.UNIMPLEMENTED
