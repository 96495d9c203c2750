"""Voices installed, replaced and deleted over gRPC on the real RVC service (one real
worker), then served, or not, by it."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from voice.v1 import rvc_pb2, rvc_pb2_grpc

from services.common.audio import PcmAudio
from services.common.audio_proto import audio_from_proto, audio_to_proto
from services.rvc.dsp.retrieval import build_index
from services.rvc.models.tiny_voice import write_tiny_voice
from services.rvc.tiny_models import voice_name, write_tiny_models
from tests.integration.test_rvc import rvc_service, speech_like, watch_until_serving

CHUNK = 256 * 1024
DIMS = {"v1": 256, "v2": 768}


def voice_files(version: str, pitch_guided: bool, rate: int, seed: int = 7) -> tuple[bytes, bytes]:
    """A random-weight voice (.pth) and an index of its version's width, as bytes."""
    with tempfile.TemporaryDirectory() as folder:
        pth, index = Path(folder) / "v.pth", Path(folder) / "v.index"
        write_tiny_voice(pth, version, pitch_guided, rate, seed=seed)
        vectors = np.random.default_rng(seed).standard_normal((300, DIMS[version]))
        build_index(vectors.astype(np.float32), index)
        return pth.read_bytes(), index.read_bytes()


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return write_tiny_models(tmp_path_factory.mktemp("rvc-install-models"))


@pytest.fixture(scope="module")
async def service(models):
    with rvc_service(models, workers=1) as rvc:
        await watch_until_serving(rvc.address)
        yield rvc


@pytest.fixture
async def stub(service):
    async with grpc.aio.insecure_channel(service.address) as channel:
        yield rvc_pb2_grpc.VoiceConversionStub(channel)


async def install(stub, name: str, checkpoint: bytes, index: bytes | None = None,
                  replace: bool = False) -> rvc_pb2.VoiceModel:
    async def requests():
        yield rvc_pb2.InstallModelRequest(
            header=rvc_pb2.InstallModelHeader(name=name, replace=replace))
        for field, data in (("checkpoint", checkpoint), ("index", index or b"")):
            for start in range(0, len(data), CHUNK):
                yield rvc_pb2.InstallModelRequest(**{field: data[start : start + CHUNK]})

    return await stub.InstallModel(requests(), timeout=120)


async def convert(stub, name: str) -> PcmAudio:
    request = rvc_pb2.ConvertRequest(
        params=rvc_pb2.ConversionParams(model=name, f0_method=rvc_pb2.F0_METHOD_PM),
        audio=audio_to_proto(PcmAudio(speech_like(1.0), 16_000)),
    )
    return audio_from_proto((await stub.Convert(request, timeout=120)).audio)


async def listed(stub) -> dict[str, rvc_pb2.VoiceModel]:
    reply = await stub.ListModels(rvc_pb2.ListModelsRequest(), timeout=30)
    return {m.name: m for m in reply.models}


def tree(root: Path) -> list[str]:
    """Every path under ``root``, hidden ones included."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


async def test_an_installed_voice_is_listed_and_converts(stub, models):
    checkpoint, index = voice_files("v2", True, 48_000)
    reply = await install(stub, "uploaded-v2", checkpoint, index)
    assert (reply.name, reply.version, reply.sample_rate, reply.has_index) == (
        "uploaded-v2", "v2", 48_000, True)
    voice = (await listed(stub))["uploaded-v2"]
    assert voice.has_index and voice.pitch_guided and not voice.problem
    assert (models / "voices" / "uploaded-v2" / "uploaded-v2.pth").read_bytes() == checkpoint
    out = await convert(stub, "uploaded-v2")
    assert out.sample_rate == 48_000
    assert abs(out.frames - 48_000) <= 480
    assert np.isfinite(out.samples).all() and np.abs(out.samples).max() > 0


async def test_refused_uploads_change_nothing_and_run_nothing(stub, models, tmp_path):
    before, names = tree(models / "voices"), set(await listed(stub))
    marker = tmp_path / "payload-ran"
    bomb = io.BytesIO()
    torch.save({"weight": {"emb_g.weight": Payload(marker)}, "config": []}, bomb)
    checkpoint, _ = voice_files("v2", True, 48_000)
    _, narrow_index = voice_files("v1", True, 40_000)
    attempts = {
        "pickle bomb": (bomb.getvalue(), None, "would run code when unpickled (a pickle bomb"),
        "random bytes": (bytes(range(256)) * 64, None, "is not an RVC WebUI checkpoint"),
        "wrong index": (checkpoint, narrow_index, "holds 256-dim features but the .pth is a v2"),
        "bad name": (checkpoint, None, "is invalid"),
    }
    for what, (pth, index, fragment) in attempts.items():
        name = "../escape" if what == "bad name" else "refused"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await install(stub, name, pth, index)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, what
        assert fragment in caught.value.details(), what
    assert not marker.exists()
    assert tree(models / "voices") == before
    assert set(await listed(stub)) == names


async def test_a_replaced_voice_is_served_as_the_new_one(stub):
    await install(stub, "swapped", voice_files("v2", True, 48_000)[0])
    assert (await convert(stub, "swapped")).sample_rate == 48_000
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await install(stub, "swapped", voice_files("v1", True, 40_000)[0])
    assert caught.value.code() is grpc.StatusCode.ALREADY_EXISTS
    reply = await install(stub, "swapped", voice_files("v1", True, 40_000)[0], replace=True)
    assert (reply.version, reply.sample_rate) == ("v1", 40_000)
    # The worker loaded the old voice a moment ago; it must not serve it again.
    assert (await convert(stub, "swapped")).sample_rate == 40_000


async def test_a_deleted_voice_is_gone_from_disk_list_and_workers(stub, models):
    before = tree(models / "voices")
    checkpoint, index = voice_files("v1", False, 32_000)
    await install(stub, "doomed", checkpoint, index)
    assert (await convert(stub, "doomed")).sample_rate == 32_000
    status = await stub.GetStatus(rvc_pb2.GetRvcStatusRequest(), timeout=30)
    assert "doomed" in status.loaded_models
    await stub.DeleteModel(rvc_pb2.DeleteModelRequest(name="doomed"), timeout=30)
    assert "doomed" not in await listed(stub)
    assert tree(models / "voices") == before
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await convert(stub, "doomed")
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.DeleteModel(rvc_pb2.DeleteModelRequest(name="doomed"), timeout=30)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    # The worker's next job lets the deleted voice's copy go.
    await convert(stub, voice_name("v2", True, 48_000))
    status = await stub.GetStatus(rvc_pb2.GetRvcStatusRequest(), timeout=30)
    assert "doomed" not in status.loaded_models
