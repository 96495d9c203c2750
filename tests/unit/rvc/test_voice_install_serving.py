"""InstallModel and DeleteModel over real gRPC (the core on a stand-in pool), and what a
worker that loaded a voice does once it is replaced or deleted."""

import grpc
import pytest
from voice.v1 import rvc_pb2, rvc_pb2_grpc

from services.common.errors import NotFound
from services.common.server import Servicer
from services.rvc.conversion import Converter
from services.rvc.model_store import ModelStore
from services.rvc.servicer import VoiceConversionServicer
from services.rvc.settings import RvcSettings
from services.rvc.voice_install import InstallLimits, VoiceInstaller
from services.rvc.worker import ConversionWorker
from tests.grpc_hosts import channel_to, hosted
from tests.unit.rvc.fake_pool import FakePool
from tests.unit.rvc.upload_files import bomb_by_reduce, index_bytes, voice_bytes

CHUNK = 64 * 1024


@pytest.fixture
async def rvc(tmp_path):
    settings = RvcSettings(max_checkpoint_bytes=len(voice_bytes()) + 10)
    converter = Converter(settings, ModelStore(tmp_path / "voices"), FakePool())
    servicer = Servicer(
        VoiceConversionServicer(converter),
        rvc_pb2_grpc.add_VoiceConversionServicer_to_server,
        rvc_pb2.DESCRIPTOR.services_by_name["VoiceConversion"].full_name,
    )
    async with hosted([servicer]) as host, channel_to(host) as channel:
        yield rvc_pb2_grpc.VoiceConversionStub(channel)


def upload(name, checkpoint=None, index=None, replace=False, header=True):
    """The requests of an InstallModel call, files cut in CHUNK pieces."""
    messages = []
    if header:
        messages.append(rvc_pb2.InstallModelRequest(
            header=rvc_pb2.InstallModelHeader(name=name, replace=replace)))
    for field, data in (("checkpoint", checkpoint), ("index", index)):
        if data is not None:
            messages += [rvc_pb2.InstallModelRequest(**{field: data[i : i + CHUNK]})
                         for i in range(0, len(data), CHUNK)]
    return messages


async def stream(messages):
    for message in messages:
        yield message


async def refused(call):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code(), caught.value.details()


def tree(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


async def test_an_installed_voice_is_described_and_listed(rvc):
    reply = await rvc.InstallModel(stream(upload("alice", voice_bytes(), index_bytes(768))))
    assert (reply.name, reply.version, reply.sample_rate) == ("alice", "v2", 48_000)
    assert reply.pitch_guided and reply.has_index and not reply.problem
    listed = await rvc.ListModels(rvc_pb2.ListModelsRequest())
    assert [(m.name, m.has_index) for m in listed.models] == [("alice", True)]


@pytest.mark.parametrize(
    "messages, fragment",
    [
        ([], "the first InstallModel message must carry the header"),
        (upload("alice", voice_bytes(), header=False), "must carry the header"),
        (upload("alice") + upload("alice"), "only the first InstallModel message may carry"),
        (upload("alice") + [rvc_pb2.InstallModelRequest()], "carries no part"),
        (upload("alice"), "no checkpoint"),
        (upload("alice", b""), "no checkpoint"),
        (upload("alice") + [rvc_pb2.InstallModelRequest(checkpoint=b"")], "the .pth is empty"),
        (upload("a/b", voice_bytes()), "model name 'a/b' is invalid"),
        (upload("alice", voice_bytes() + b"x" * 11), "larger than the limit of"),
        (upload("alice", voice_bytes(), index_bytes(256)), "holds 256-dim features"),
    ],
    ids=["nothing", "no-header", "two-headers", "empty-message", "header-only", "no-bytes",
         "empty-pth", "bad-name", "too-large", "wrong-index"],
)
async def test_bad_uploads_are_invalid_and_leave_nothing(rvc, tmp_path, messages, fragment):
    code, details = await refused(rvc.InstallModel(stream(messages)))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in details
    assert tree(tmp_path / "voices") == []


async def test_a_pickle_bomb_over_grpc_is_refused_and_never_runs(rvc, tmp_path):
    marker = tmp_path / "ran"
    code, details = await refused(rvc.InstallModel(stream(upload("eve", bomb_by_reduce(marker)))))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "would run code when unpickled (a pickle bomb" in details
    assert not marker.exists()
    assert tree(tmp_path / "voices") == []


async def test_a_taken_name_is_already_exists_until_replace_is_set(rvc):
    await rvc.InstallModel(stream(upload("alice", voice_bytes())))
    code, details = await refused(
        rvc.InstallModel(stream(upload("alice", voice_bytes("v1", True, 40_000)))))
    assert code is grpc.StatusCode.ALREADY_EXISTS
    assert "set replace" in details
    reply = await rvc.InstallModel(
        stream(upload("alice", voice_bytes("v1", True, 40_000), replace=True)))
    assert (reply.version, reply.sample_rate) == ("v1", 40_000)


async def test_delete_removes_the_voice_then_answers_not_found(rvc, tmp_path):
    await rvc.InstallModel(stream(upload("alice", voice_bytes(), index_bytes(768))))
    await rvc.DeleteModel(rvc_pb2.DeleteModelRequest(name="alice"))
    assert (await rvc.ListModels(rvc_pb2.ListModelsRequest())).models == []
    assert tree(tmp_path / "voices") == []
    code, details = await refused(rvc.DeleteModel(rvc_pb2.DeleteModelRequest(name="alice")))
    assert code is grpc.StatusCode.NOT_FOUND and "'alice'" in details
    code, _ = await refused(rvc.DeleteModel(rvc_pb2.DeleteModelRequest(name="../alice")))
    assert code is grpc.StatusCode.INVALID_ARGUMENT


def test_a_worker_drops_a_voice_replaced_or_deleted_under_it(tiny_rvc, tmp_path):
    voices = tmp_path / "voices"
    installer = VoiceInstaller(ModelStore(voices), InstallLimits(1 << 26, 1 << 26))
    installer.install("alice", voice_bytes(), index_bytes(768))
    installer.install("bob", voice_bytes("v1", False, 32_000))
    worker = ConversionWorker("cpu", str(voices), str(tiny_rvc / "assets"), threads=1)
    first = worker.voice("alice")
    assert first.info.version == "v2" and worker.voice("alice") is first

    installer.install("alice", voice_bytes("v1", True, 40_000), replace=True)
    replaced = worker.voice("alice")
    assert replaced is not first and replaced.info.version == "v1" and replaced.index is None

    installer.delete("alice")
    with pytest.raises(NotFound, match="alice"):
        worker.voice("alice")
    worker.voice("bob")
    assert worker.info()["loaded"] == ["bob"]


async def test_a_refused_upload_is_read_to_its_end_before_the_status_is_sent(rvc):
    """The refusal waits until the client has sent everything: an asyncio client whose
    writes are still under way when the status comes may report INTERNAL instead
    (grpc/grpc#36066). Several MiB exceed HTTP/2's flow-control windows, so the client
    can only finish sending if the server reads on after deciding to refuse."""
    await rvc.InstallModel(stream(upload("alice", voice_bytes())))
    sent = []

    async def counted(messages):
        for message in messages:
            yield message
            sent.append(message)

    messages = upload("alice", voice_bytes() * 8)  # the name is taken: refused at once
    code, details = await refused(rvc.InstallModel(counted(messages)))
    assert code is grpc.StatusCode.ALREADY_EXISTS and "set replace" in details
    assert len(sent) == len(messages)
