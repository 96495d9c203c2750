"""The RVC service over real gRPC, its core on a stand-in pool: checks and translations."""

import grpc
import numpy as np
import pytest
from voice.v1 import audio_pb2, rvc_pb2, rvc_pb2_grpc

from services.common.audio import PcmAudio
from services.common.audio_proto import audio_from_proto, audio_to_proto
from services.common.server import Servicer
from services.rvc.conversion import Converter
from services.rvc.model_store import ModelStore
from services.rvc.servicer import VoiceConversionServicer
from services.rvc.settings import RvcSettings, StreamSettings
from tests.grpc_hosts import channel_to, hosted
from tests.unit.rvc.fake_pool import VOICE_RATE, FakePool

AUDIO = audio_to_proto(PcmAudio(np.zeros(1600, np.float32), 16_000))
@pytest.fixture
async def served(tmp_path):
    voice = tmp_path / "alice"
    voice.mkdir()
    (voice / "alice.pth").write_bytes(b"not a checkpoint")
    pool = FakePool()
    settings = RvcSettings(
        workers=3, max_audio_seconds=5,
        stream=StreamSettings(block_ms=200, context_ms=100, crossfade_ms=10, search_ms=2),
    )
    converter = Converter(settings, ModelStore(tmp_path), pool)
    servicer = Servicer(
        VoiceConversionServicer(converter),
        rvc_pb2_grpc.add_VoiceConversionServicer_to_server,
        rvc_pb2.DESCRIPTOR.services_by_name["VoiceConversion"].full_name,
    )
    async with hosted([servicer]) as host, channel_to(host) as channel:
        yield rvc_pb2_grpc.VoiceConversionStub(channel), pool


@pytest.fixture
async def rvc(served):
    return served[0]


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
        (dict(resample_sr=100), "resample_sr 100 is outside 8000..192000"),
        (dict(f0_method=42), "f0_method 42 is unknown"),
        (dict(model="../etc/passwd"), "model name '../etc/passwd' is invalid"),
        (dict(model="a/b"), "no path separators"),
    ],
)
async def test_bad_parameters_are_invalid(rvc, params, fragment):
    request = rvc_pb2.ConvertRequest(
        params=rvc_pb2.ConversionParams(**{"model": "alice", **params}), audio=AUDIO
    )
    code, details = await code_of(rvc.Convert(request))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in details


@pytest.mark.parametrize(
    "audio, fragment",
    [
        (audio_pb2.Audio(pcm=b"\0\0"), "sample_rate is required"),
        (audio_pb2.Audio(sample_rate=16_000), "empty"),
        (audio_to_proto(PcmAudio(np.full(160, np.nan, np.float32), 16_000)), "NaN"),
        (audio_to_proto(PcmAudio(np.zeros(16_000 * 6, np.float32), 16_000)), "at most 5 s"),
        (audio_pb2.Audio(pcm=b"\0\0\0", sample_rate=16_000), ""),
        # Under one 10 ms frame: nothing to convert, and too short for the high-pass filter.
        (audio_pb2.Audio(pcm=b"\0\0", sample_rate=16_000), "audio lasts 0.0001 s; at least 0.01 s"),
        (audio_to_proto(PcmAudio(np.zeros(1_919, np.float32), 192_000)), "at least 0.01 s"),
    ],
)
async def test_bad_audio_is_invalid(rvc, audio, fragment):
    request = rvc_pb2.ConvertRequest(params=rvc_pb2.ConversionParams(model="alice"), audio=audio)
    code, details = await code_of(rvc.Convert(request))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in details


async def test_unknown_model_is_not_found(rvc):
    request = rvc_pb2.ConvertRequest(params=rvc_pb2.ConversionParams(model="ghost"), audio=AUDIO)
    code, details = await code_of(rvc.Convert(request))
    assert code is grpc.StatusCode.NOT_FOUND
    assert "ghost" in details


async def test_convert_resolves_the_default_voice_and_reports_timing(served):
    rvc, pool = served
    audio = audio_to_proto(PcmAudio(np.zeros(8000, np.float32), 16_000))
    reply = await rvc.Convert(rvc_pb2.ConvertRequest(audio=audio))
    converted = audio_from_proto(reply.audio)
    assert converted.sample_rate == VOICE_RATE
    assert converted.frames == 20_000
    assert reply.timing.audio_seconds == pytest.approx(0.5)
    assert pool.calls[-1][1]["params"]["model"] == "alice"


async def test_a_full_queue_is_resource_exhausted(served):
    rvc, pool = served
    pool.full = True
    request = rvc_pb2.ConvertRequest(params=rvc_pb2.ConversionParams(model="alice"), audio=AUDIO)
    code, details = await code_of(rvc.Convert(request))
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "queue is full" in details


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


async def test_stream_without_audio_is_invalid(rvc):
    async def messages():
        yield rvc_pb2.ConvertStreamRequest(params=rvc_pb2.ConversionParams(model="alice"))

    code, details = await code_of(rvc.ConvertStream(messages()).read())
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "no audio" in details


async def test_a_stream_shorter_than_one_frame_is_invalid(rvc):
    async def messages():
        yield rvc_pb2.ConvertStreamRequest(params=rvc_pb2.ConversionParams(model="alice"))
        for _ in range(3):
            yield rvc_pb2.ConvertStreamRequest(chunk=audio_pb2.AudioChunk(
                audio=audio_to_proto(PcmAudio(np.zeros(16, np.float32), 16_000))))

    code, details = await code_of(rvc.ConvertStream(messages()).read())
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "the stream's audio lasts 0.0030 s; at least 0.01 s is needed" in details


async def test_stream_rate_may_not_change(rvc):
    async def messages():
        yield rvc_pb2.ConvertStreamRequest(params=rvc_pb2.ConversionParams(model="alice"))
        yield rvc_pb2.ConvertStreamRequest(chunk=audio_pb2.AudioChunk(audio=AUDIO))
        other = audio_to_proto(PcmAudio(np.zeros(100, np.float32), 22_050))
        yield rvc_pb2.ConvertStreamRequest(chunk=audio_pb2.AudioChunk(audio=other))

    code, details = await code_of(_collect(rvc.ConvertStream(messages())))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "differs from the stream's 16000 Hz" in details


async def _collect(call):
    return [reply async for reply in call]


async def test_stream_chunks_are_ordered_final_and_as_long_as_the_input(served):
    rvc, pool = served
    rate = 22_050
    audio = (0.3 * np.sin(np.arange(rate) * 2 * np.pi * 200 / rate)).astype(np.float32)

    async def messages():
        yield rvc_pb2.ConvertStreamRequest(
            params=rvc_pb2.ConversionParams(model="alice", resample_sr=24_000)
        )
        for start in range(0, audio.shape[0], 1000):
            chunk = audio_to_proto(PcmAudio(audio[start : start + 1000], rate))
            yield rvc_pb2.ConvertStreamRequest(chunk=audio_pb2.AudioChunk(audio=chunk))

    replies = await _collect(rvc.ConvertStream(messages()))
    assert [r.chunk.sequence for r in replies] == list(range(len(replies)))
    assert [r.chunk.final for r in replies] == [False] * (len(replies) - 1) + [True]
    assert replies[-1].timing.audio_seconds == pytest.approx(1.0, abs=0.01)
    total = sum(audio_from_proto(r.chunk.audio).frames for r in replies)
    assert {audio_from_proto(r.chunk.audio).sample_rate for r in replies} == {24_000}
    assert abs(total - 24_000) <= 24_000 * 0.002
    # Every block went to one worker (affinity), at the voice's rate, and was released.
    affinities = {affinity for op, _, affinity in pool.calls if op == "convert"}
    assert len(affinities) == 1 and pool.released == list(affinities)
    assert all(meta["params"]["resample_sr"] == 0 for _, meta, _ in pool.calls)


async def test_list_models_status_and_load(served):
    rvc, pool = served
    models = await rvc.ListModels(rvc_pb2.ListModelsRequest())
    (alice,) = models.models
    assert alice.name == "alice" and alice.loaded
    assert alice.problem  # the file is not a checkpoint, and the listing says so
    assert models.default_model == "alice"
    status = await rvc.GetStatus(rvc_pb2.GetRvcStatusRequest())
    assert (status.workers_configured, status.workers_alive) == (3, 1)
    assert status.loaded_models == ["alice"]
    (worker,) = status.workers
    assert (worker.jobs_done, worker.mean_seconds, worker.restarts) == (5, 0.25, 1)
    code, _ = await code_of(rvc.LoadModel(rvc_pb2.LoadModelRequest(name="../x")))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    code, _ = await code_of(rvc.LoadModel(rvc_pb2.LoadModelRequest(name="bob")))
    assert code is grpc.StatusCode.NOT_FOUND
    loaded = await rvc.LoadModel(rvc_pb2.LoadModelRequest(name="alice"))
    assert loaded.name == "alice"
    assert pool.calls[-1] == ("load", {"model": "alice"}, None)
