"""Installing and deleting voices on disk: what is accepted, what is refused, and that a
refusal leaves nothing behind and runs nothing."""

import io
import os
import pickle
import zipfile

import pytest
import torch

from services.common.errors import AlreadyExists, InvalidArgument, NotFound
from services.rvc import voice_install
from services.rvc.model_store import ModelStore
from services.rvc.models import checkpoint
from services.rvc.models.checkpoint import read_voice
from services.rvc.voice_install import InstallLimits, VoiceInstaller
from tests.unit.rvc.upload_files import (
    bomb_by_reduce,
    index_bytes,
    raw_bomb,
    recompressed,
    saved,
    voice_bytes,
    with_config,
    with_member,
)

LIMITS = InstallLimits(max_checkpoint_bytes=64 << 20, max_index_bytes=64 << 20)


@pytest.fixture
def root(tmp_path):
    return tmp_path / "voices"


@pytest.fixture
def installer(root):
    return VoiceInstaller(ModelStore(root), LIMITS)


def tree(root) -> list[str]:
    """Every path under ``root``, hidden ones included, relative to it."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_voice_with_its_index_lands_where_the_store_finds_it(installer, root):
    files = installer.install("alice", voice_bytes(), index_bytes(768))
    assert tree(root) == ["alice", "alice/alice.index", "alice/alice.pth"]
    assert files == ModelStore(root).resolve("alice")
    assert [v.name for v in ModelStore(root).list()] == ["alice"]
    assert files.checkpoint.read_bytes() == voice_bytes()
    assert files.index.read_bytes() == index_bytes(768)


def test_a_v1_voice_without_index_installs_from_small_chunks(installer, root):
    data = voice_bytes("v1", False, 32_000)
    files = installer.install("bob-v1", (data[i : i + 4096] for i in range(0, len(data), 4096)))
    assert files.index is None
    assert files.checkpoint.read_bytes() == data
    assert read_voice(files.checkpoint)[0].version == "v1"
    assert tree(root) == ["bob-v1", "bob-v1/bob-v1.pth"]


def test_a_v1_voice_takes_a_256_dim_index(installer):
    files = installer.install("carol", voice_bytes("v1", True, 40_000), index_bytes(256))
    assert files.index is not None


def test_a_name_ending_in_pth_is_listed_under_that_name(installer, root):
    installer.install("dave.pth", voice_bytes())
    assert [v.name for v in ModelStore(root).list()] == ["dave.pth"]


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "", "a" * 65, "..", "x/../../y"])
def test_bad_names_are_refused_before_anything_is_written(installer, root, name):
    with pytest.raises(InvalidArgument, match="is invalid"):
        installer.install(name, voice_bytes())
    assert tree(root) == []


def test_a_pickle_bomb_never_runs_and_leaves_nothing(installer, root, tmp_path):
    marker = tmp_path / "ran"
    bomb = bomb_by_reduce(marker)
    with pytest.raises(InvalidArgument, match=r"would run code when unpickled \(a pickle bomb"):
        installer.install("eve", bomb)
    assert not marker.exists()
    assert tree(root) == []
    # The control: unpickled without weights_only, the same bytes do run their code.
    torch.load(io.BytesIO(bomb), weights_only=False)
    assert marker.exists()


def test_a_torch_zip_whose_data_pkl_reduces_a_global_never_runs(installer, root, tmp_path):
    marker = tmp_path / "ran"
    payload = raw_bomb(marker)
    bomb = with_member(voice_bytes(), "data.pkl", payload)
    with pytest.raises(InvalidArgument, match="would run code when unpickled") as refused:
        installer.install("eve", bomb)
    assert "GLOBAL exec was not an allowed global" in str(refused.value)
    assert "allowlist" not in str(refused.value)  # no advice to trust it
    assert not marker.exists()
    assert tree(root) == []
    pickle.loads(payload)  # the control: a plain unpickler runs it
    assert marker.exists()


def test_a_bare_pickle_is_refused_unread(installer, root, tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(InvalidArgument, match="not the zip archive torch.save writes"):
        installer.install("eve", raw_bomb(marker))
    assert not marker.exists()
    assert tree(root) == []


def plain_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("readme.txt", "not a voice")
    return out.getvalue()


@pytest.mark.parametrize(
    "checkpoint, reason",
    [
        (os.urandom(50_000), "not the zip archive torch.save writes"),
        (plain_zip(), "not a readable PyTorch checkpoint"),
        (saved({"model": {"w": torch.zeros(3)}}), "no 'weight' entry"),
        (saved(torch.zeros(3)), "holds a Tensor, not a dict"),
        (saved({"weight": {"emb_g.weight": torch.zeros(2, 4)}, "config": [1, 2]}), "config"),
        (recompressed(voice_bytes()), "are compressed"),
    ],
    ids=["random-bytes", "plain-zip", "training-checkpoint", "tensor", "bad-config", "deflated"],
)
def test_files_that_are_no_webui_voice_are_refused(installer, root, checkpoint, reason):
    with pytest.raises(InvalidArgument, match="the .pth is not an RVC WebUI checkpoint") as refused:
        installer.install("frank", checkpoint)
    assert reason in str(refused.value)
    assert tree(root) == []


def test_the_checked_synthesizer_is_laid_out_on_the_meta_device(installer, monkeypatch):
    built_on = []
    real = checkpoint.synthesizer_class

    def spying(version, pitch_guided):
        cls = real(version, pitch_guided)

        def build(config):
            built_on.append(torch.empty(()).device.type)  # where new tensors go now
            return cls(config)

        return build

    monkeypatch.setattr(checkpoint, "synthesizer_class", spying)
    installer.install("grace", voice_bytes())
    assert built_on == ["meta"]


def test_a_forged_config_is_refused_without_building_its_model(installer, root):
    # 10**7 channels would ask for terabytes of weights: on the meta device only shapes
    # are compared (the test above keeps it there; allocated for real it takes a minute).
    huge = with_config(voice_bytes(), 2, 10**7)
    with pytest.raises(InvalidArgument, match="shape mismatches|does not match"):
        installer.install("grace", huge)
    deep = with_config(voice_bytes(), 6, 10**9)
    with pytest.raises(InvalidArgument, match="asks for .* layers"):
        installer.install("grace", deep)
    assert tree(root) == []


def test_the_temporary_path_never_reaches_the_message(installer):
    with pytest.raises(InvalidArgument) as refused:
        installer.install("henry", saved({"model": {}}))
    assert str(installer.root) not in str(refused.value)
    assert "henry.pth" in str(refused.value)


def test_an_index_of_the_wrong_width_is_refused(installer, root):
    with pytest.raises(InvalidArgument, match="holds 256-dim features but the .pth is a v2 voice"):
        installer.install("ivy", voice_bytes(), index_bytes(256))
    with pytest.raises(InvalidArgument, match="v1 voice, whose features are 256-dim"):
        installer.install("ivy", voice_bytes("v1", True, 40_000), index_bytes(768))
    assert tree(root) == []


def test_an_unreadable_index_is_refused(installer, root):
    with pytest.raises(InvalidArgument, match="the .index is not a usable faiss index"):
        installer.install("jack", voice_bytes(), b"IwFl" + os.urandom(4000))
    assert tree(root) == []


class Counted:
    """Chunks of ``data``, counting how many were taken."""

    def __init__(self, data: bytes, size: int) -> None:
        self.chunks = [data[i : i + size] for i in range(0, len(data), size)]
        self.taken = 0

    def __iter__(self):
        for chunk in self.chunks:
            self.taken += 1
            yield chunk


def test_reading_stops_at_the_chunk_past_the_checkpoint_limit(root):
    data = voice_bytes()
    installer = VoiceInstaller(ModelStore(root), InstallLimits(100_000, 1 << 20))
    chunks = Counted(data, 65_536)
    with pytest.raises(InvalidArgument, match=r"the .pth is larger than the limit of 100000 bytes "
                                              r"\(RVC_MAX_CHECKPOINT_BYTES\)"):
        installer.install("kate", chunks)
    assert chunks.taken == 2 < len(chunks.chunks)
    assert tree(root) == []


def test_the_index_limit_is_enforced_and_the_limits_are_inclusive(root):
    index = index_bytes(768)
    tight = VoiceInstaller(ModelStore(root), InstallLimits(len(voice_bytes()), len(index) - 1))
    chunks = Counted(index, 4096)
    with pytest.raises(InvalidArgument, match=r"the .index is larger than the limit of "
                                              rf"{len(index) - 1} bytes \(RVC_MAX_INDEX_BYTES\)"):
        tight.install("liam", voice_bytes(), chunks)
    assert chunks.taken == len(chunks.chunks)  # the last chunk is the one past the limit
    assert tree(root) == []
    exact = VoiceInstaller(ModelStore(root), InstallLimits(len(voice_bytes()), len(index)))
    assert exact.install("liam", voice_bytes(), index).index is not None


def test_parts_out_of_order_or_empty_are_refused(installer, root):
    upload = installer.begin("mia")
    with pytest.raises(InvalidArgument, match="index chunks must follow the checkpoint"):
        upload.write(voice_install.Part.INDEX, b"x")
    upload.write(voice_install.Part.CHECKPOINT, voice_bytes())
    upload.write(voice_install.Part.INDEX, index_bytes(768))
    with pytest.raises(InvalidArgument, match="checkpoint chunks must all come before the index"):
        upload.write(voice_install.Part.CHECKPOINT, b"x")
    upload.discard()
    assert tree(root) == []
    with pytest.raises(InvalidArgument, match="no checkpoint"):
        installer.install("mia", [])
    with pytest.raises(InvalidArgument, match="the .pth is empty"):
        installer.install("mia", b"")
    with pytest.raises(InvalidArgument, match="the .index is empty"):
        installer.install("mia", voice_bytes(), b"")
    assert tree(root) == []


def test_a_taken_name_is_already_exists_unless_replacing(installer, root):
    installer.install("nora", voice_bytes(), index_bytes(768))
    with pytest.raises(AlreadyExists, match="'nora' is already installed; set replace"):
        installer.install("nora", voice_bytes("v1", True, 40_000))
    assert ModelStore(root).resolve("nora").checkpoint.read_bytes() == voice_bytes()
    files = installer.install("nora", voice_bytes("v1", True, 40_000), replace=True)
    assert files.index is None  # the old index went with the old voice
    assert read_voice(files.checkpoint)[0].version == "v1"
    assert tree(root) == ["nora", "nora/nora.pth"]


def test_a_refused_replacement_keeps_the_old_voice(installer, root):
    installer.install("olga", voice_bytes(), index_bytes(768))
    before = {p: (root / p).read_bytes() for p in tree(root) if (root / p).is_file()}
    with pytest.raises(InvalidArgument):
        installer.install("olga", b"junk" * 100, replace=True)
    assert {p: (root / p).read_bytes() for p in tree(root) if (root / p).is_file()} == before


def test_replacing_without_an_atomic_swap_still_leaves_one_voice(installer, root, monkeypatch):
    monkeypatch.setattr(voice_install, "_exchange", lambda a, b: False)
    installer.install("pia", voice_bytes(), index_bytes(768))
    installer.install("pia", voice_bytes("v1", False, 32_000), replace=True)
    assert tree(root) == ["pia", "pia/pia.pth"]
    assert read_voice(root / "pia" / "pia.pth")[0].version == "v1"


def test_a_bare_voice_is_taken_and_replaced_by_a_folder(installer, root):
    root.mkdir()
    (root / "quinn.pth").write_bytes(voice_bytes())
    (root / "quinn.index").write_bytes(index_bytes(768))
    with pytest.raises(AlreadyExists):
        installer.install("quinn", voice_bytes())
    installer.install("quinn", voice_bytes("v1", True, 40_000), replace=True)
    assert tree(root) == ["quinn", "quinn/quinn.pth"]


def test_delete_removes_every_layout_and_unknown_names_are_not_found(installer, root, tmp_path):
    installer.install("rita", voice_bytes(), index_bytes(768))
    (root / "sam.pth").write_bytes(b"x")
    (root / "sam.index").write_bytes(b"x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "tom.pth").write_bytes(b"x")
    (root / "tom").symlink_to(elsewhere)
    for name in ("rita", "sam", "tom"):
        installer.delete(name)
    assert tree(root) == []
    assert (elsewhere / "tom.pth").exists()  # a linked folder: the link goes, not its target
    with pytest.raises(NotFound, match="no RVC model named 'rita' is installed"):
        installer.delete("rita")
    with pytest.raises(InvalidArgument, match="is invalid"):
        installer.delete("../voices")


async def test_receive_installs_parts_as_they_arrive_and_cleans_up_a_failed_stream(installer, root):
    async def parts(fail: bool):
        yield voice_install.Part.CHECKPOINT, voice_bytes()[:1000]
        if fail:
            raise InvalidArgument("the client's stream broke")
        yield voice_install.Part.CHECKPOINT, voice_bytes()[1000:]

    with pytest.raises(InvalidArgument, match="stream broke"):
        await installer.receive("uma", False, parts(fail=True))
    assert tree(root) == []
    files = await installer.receive("uma", False, parts(fail=False))
    assert files.checkpoint.read_bytes() == voice_bytes()
