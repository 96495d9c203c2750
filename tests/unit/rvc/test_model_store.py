import os

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.rvc.model_store import ModelStore


def install(root, name, index=True, flat=False):
    if flat:
        root.mkdir(parents=True, exist_ok=True)
        (root / f"{name}.pth").write_bytes(b"x")
        if index:
            (root / f"{name}.index").write_bytes(b"x")
        return
    folder = root / name
    folder.mkdir(parents=True)
    (folder / f"{name}_e100.pth").write_bytes(b"x")
    if index:
        (folder / f"added_IVF256_Flat_nprobe_1_{name}_v2.index").write_bytes(b"x")


def test_lists_folder_and_flat_layouts(tmp_path):
    install(tmp_path, "alice")
    install(tmp_path, "bob", index=False, flat=True)
    voices = {v.name: v for v in ModelStore(tmp_path).list()}
    assert set(voices) == {"alice", "bob"}
    assert voices["alice"].index is not None
    assert voices["bob"].index is None


def test_a_folder_with_several_checkpoints_is_ambiguous_and_skipped(tmp_path):
    install(tmp_path, "carol")
    (tmp_path / "carol" / "other.pth").write_bytes(b"x")
    assert ModelStore(tmp_path).list() == []


def test_missing_directory_lists_nothing(tmp_path):
    assert ModelStore(tmp_path / "absent").list() == []


@pytest.mark.parametrize(
    "name", ["../etc", "a/b", "/abs", "..", ".hidden", "x" * 65, "name with space", "é"]
)
def test_path_like_or_odd_names_are_invalid(tmp_path, name):
    with pytest.raises(InvalidArgument):
        ModelStore(tmp_path).resolve(name)


def test_unknown_name_is_not_found(tmp_path):
    install(tmp_path, "alice")
    with pytest.raises(NotFound, match="ghost"):
        ModelStore(tmp_path).resolve("ghost")


def test_symlink_out_of_the_models_directory_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    install(outside, "evil")
    models = tmp_path / "models"
    models.mkdir()
    os.symlink(outside / "evil", models / "evil")
    with pytest.raises(NotFound):
        ModelStore(models).resolve("evil")


def test_default_is_the_setting_or_the_only_voice(tmp_path):
    install(tmp_path, "alice")
    assert ModelStore(tmp_path).resolve("").name == "alice"
    install(tmp_path, "bob")
    with pytest.raises(FailedPrecondition, match="RVC_MODEL"):
        ModelStore(tmp_path).resolve("")
    assert ModelStore(tmp_path, default="bob").resolve("").name == "bob"
