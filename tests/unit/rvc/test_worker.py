"""The worker's handler in-process: voices by name, an LRU of loaded voices, clear refusals."""

import os
import shutil

import numpy as np
import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.rvc.params import ConversionParams, F0Method
from services.rvc.tiny_models import VARIANTS, voice_name
from services.rvc.worker import ConversionWorker, find_assets

NAMES = [voice_name(*variant) for variant in VARIANTS]


@pytest.fixture
def models(tiny_rvc, tmp_path):
    voices = tmp_path / "voices"
    shutil.copytree(tiny_rvc / "voices", voices)
    return voices, tiny_rvc / "assets"


def convert(worker, name, audio, **params):
    wire = ConversionParams(model=name, f0_method=F0Method.PM, **params).to_wire()
    return worker.handle("convert", {"params": wire, "sample_rate": 22_050}, audio)


def test_voices_are_kept_least_recently_used_first(models):
    voices, assets = models
    worker = ConversionWorker("cpu", str(voices), str(assets), voice_cache=2, threads=1)
    for name in NAMES[:3]:
        meta, _ = worker.handle("load", {"model": name}, None)
        assert meta["name"] == name
    assert worker.info()["loaded"] == NAMES[1:3]
    worker.voice(NAMES[1])  # touched: now the most recent
    worker.voice(NAMES[3])
    assert worker.info()["loaded"] == [NAMES[1], NAMES[3]]


def test_a_replaced_voice_file_is_reloaded(models):
    voices, assets = models
    worker = ConversionWorker("cpu", str(voices), str(assets), threads=1)
    first = worker.voice(NAMES[0])
    assert worker.voice(NAMES[0]) is first
    checkpoint = next((voices / NAMES[0]).glob("*.pth"))
    stat = checkpoint.stat()
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert worker.voice(NAMES[0]) is not first


def test_conversion_answers_at_the_voice_rate(models):
    voices, assets = models
    worker = ConversionWorker("cpu", str(voices), str(assets), threads=1)
    audio = (0.3 * np.sin(np.arange(22_050) * 2 * np.pi * 150 / 22_050)).astype(np.float32)
    meta, out = convert(worker, NAMES[2], audio)
    assert meta["sample_rate"] == 48_000 and meta["version"] == "v2"
    assert abs(out.shape[0] - 48_000) <= 480
    meta, out = convert(worker, NAMES[2], audio, resample_sr=16_000)
    assert meta["sample_rate"] == 16_000 and abs(out.shape[0] - 16_000) <= 160


def test_broken_files_are_refused_by_name(models):
    voices, assets = models
    worker = ConversionWorker("cpu", str(voices), str(assets), threads=1)
    next((voices / NAMES[0]).glob("*.pth")).write_bytes(b"garbage")
    with pytest.raises(FailedPrecondition, match=NAMES[0]):
        worker.voice(NAMES[0])
    next((voices / NAMES[1]).glob("*.index")).write_bytes(b"garbage" * 100)
    with pytest.raises(FailedPrecondition, match="index"):
        worker.voice(NAMES[1])
    # A v1 voice beside a v2 index: the dimensions disagree and the message says so.
    shutil.copy(next((voices / NAMES[1]).glob("*.pth")), voices / NAMES[3] / f"{NAMES[3]}.pth")
    with pytest.raises(FailedPrecondition, match="768-dim"):
        worker.voice(NAMES[3])
    with pytest.raises(NotFound):
        worker.voice("nobody")
    with pytest.raises(InvalidArgument):
        worker.handle("explode", {}, None)


def test_rmvpe_without_its_file_is_a_failed_precondition(models, tmp_path):
    voices, assets = models
    bare = tmp_path / "assets"
    shutil.copytree(assets / "hubert_base", bare / "hubert_base")
    assert find_assets(bare).rmvpe is None
    worker = ConversionWorker("cpu", str(voices), str(bare), threads=1)
    wire = ConversionParams(model=NAMES[0], f0_method=F0Method.RMVPE).to_wire()
    with pytest.raises(FailedPrecondition, match="rmvpe.pt"):
        worker.handle("convert", {"params": wire, "sample_rate": 16_000}, np.zeros(8000, np.float32))


def test_no_content_encoder_is_a_failed_precondition(tmp_path):
    with pytest.raises(FailedPrecondition, match="hubert_base"):
        find_assets(tmp_path)
