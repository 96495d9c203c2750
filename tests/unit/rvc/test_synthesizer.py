"""RVC synthesizers loaded from tiny real-format voice files: shapes, determinism, strictness."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from services.rvc.models.checkpoint import (
    VoiceFormatError,
    load_synthesizer,
    read_voice,
)
from services.rvc.models.synthesizer import (
    Synthesizer,
    SynthesizerV1NoPitch,
    SynthesizerV1Pitch,
    SynthesizerV2NoPitch,
    SynthesizerV2Pitch,
)
from services.rvc.models.tiny_voice import write_tiny_voice

VARIANTS = [
    (version, pitch, rate)
    for version in ("v1", "v2")
    for pitch in (True, False)
    for rate in (32000, 40000, 48000)
]
CLASSES = {
    ("v1", True): SynthesizerV1Pitch,
    ("v1", False): SynthesizerV1NoPitch,
    ("v2", True): SynthesizerV2Pitch,
    ("v2", False): SynthesizerV2NoPitch,
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny convolutions gain nothing from threads, and OpenMP spinning on a busy CI box
    # makes them many times slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool, int], Path]:
    root = tmp_path_factory.mktemp("voices")
    out = {}
    for version, pitch, rate in VARIANTS:
        path = root / f"{version}-{'f0' if pitch else 'nof0'}-{rate}.pth"
        write_tiny_voice(path, version, pitch, rate, seed=1)
        out[(version, pitch, rate)] = path
    return out


def _inputs(
    model: Synthesizer, frames: int, seed: int = 0, batch: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    phone = torch.randn(batch, frames, model.feature_dim, generator=gen)
    pitch = torch.randint(1, 256, (batch, frames), generator=gen)
    f0 = torch.rand(batch, frames, generator=gen) * 300 + 80
    f0[:, : frames // 3] = 0.0  # an unvoiced stretch
    return phone, pitch, f0


def _run(model: Synthesizer, frames: int, seed: int, **kwargs: Any) -> torch.Tensor:
    phone, pitch, f0 = _inputs(model, frames)
    return model.infer(phone, pitch, f0, generator=torch.Generator().manual_seed(seed), **kwargs)


def _rewrite(src: Path, dst: Path, edit: Callable[[dict], None]) -> Path:
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    edit(ckpt)
    torch.save(ckpt, dst)
    return dst


@pytest.mark.parametrize(("version", "pitch", "rate"), VARIANTS)
def test_every_variant_loads_strictly_and_renders_t_times_hop(
    voices: dict, version: str, pitch: bool, rate: int
) -> None:
    info, model = load_synthesizer(voices[(version, pitch, rate)])
    assert type(model) is CLASSES[(version, pitch)]
    assert (info.version, info.pitch_guided, info.sample_rate) == (version, pitch, rate)
    assert info.feature_dim == (256 if version == "v1" else 768)
    assert info.hop_length == rate // 100 == model.hop_length
    assert info.speakers == 4
    assert "untrained" in info.info
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for frames in (1, 7, 23):
        audio = _run(model, frames, seed=3)
        assert audio.shape == (frames * info.hop_length,)
        assert audio.dtype == torch.float32
        assert bool(torch.isfinite(audio).all())
        assert float(audio.abs().max()) < 1.0


@pytest.mark.parametrize("pitch", [True, False])
def test_same_seed_is_bit_identical_and_other_seeds_differ(voices: dict, pitch: bool) -> None:
    _, model = load_synthesizer(voices[("v2", pitch, 40000)])
    first = _run(model, 12, seed=123)
    assert torch.equal(first, _run(model, 12, seed=123))
    assert not torch.equal(first, _run(model, 12, seed=124))


def test_file_weights_are_fp16_but_cpu_model_is_fp32(voices: dict) -> None:
    path = voices[("v1", True, 40000)]
    info, weights, config = read_voice(path)
    assert {w.dtype for w in weights.values()} == {torch.float16}
    assert any(k.endswith(".weight_g") for k in weights)
    assert len(config) == 18 and config[-1] == 40000 and config[-3] == info.speakers
    _, model = load_synthesizer(path)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    # Weight norm is folded away for inference.
    assert not any("parametrizations" in k or k.endswith("weight_g") for k in model.state_dict())


def test_half_model_on_cpu(voices: dict) -> None:
    _, model = load_synthesizer(voices[("v2", True, 48000)], half=True)
    assert {p.dtype for p in model.parameters()} == {torch.float16}
    audio = _run(model, 12, seed=0)
    assert audio.dtype == torch.float16 and audio.shape == (12 * 480,)
    assert bool(torch.isfinite(audio).all())


def test_pitch_guided_needs_pitch_and_plain_ignores_it(voices: dict) -> None:
    _, guided = load_synthesizer(voices[("v1", True, 32000)])
    phone, pitch, f0 = _inputs(guided, 10)
    with pytest.raises(ValueError, match="pitch"):
        guided.infer(phone)
    with pytest.raises(ValueError, match="pitch"):
        guided.infer(phone, pitch=pitch)
    _, plain = load_synthesizer(voices[("v1", False, 32000)])
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert torch.equal(
        plain.infer(phone, generator=gen()), plain.infer(phone, pitch, f0, generator=gen())
    )


def test_speaker_selects_embedding_and_is_range_checked(voices: dict) -> None:
    _, model = load_synthesizer(voices[("v2", False, 32000)])
    assert not torch.equal(_run(model, 6, 1, speaker=0), _run(model, 6, 1, speaker=3))
    with pytest.raises(ValueError, match="speaker"):
        _run(model, 6, 1, speaker=4)


def test_batch_with_lengths(voices: dict) -> None:
    _, model = load_synthesizer(voices[("v1", True, 48000)])
    phone, pitch, f0 = _inputs(model, 16, batch=2)
    audio = model.infer(phone, pitch, f0, lengths=torch.tensor([16, 9]))
    assert audio.shape == (2, 16 * 480)


def test_parametrize_form_keys_give_identical_output(voices: dict, tmp_path: Path) -> None:
    src = voices[("v2", True, 40000)]

    def to_parametrize_form(ckpt: dict) -> None:
        ckpt["weight"] = {
            k.replace(".weight_g", ".parametrizations.weight.original0").replace(
                ".weight_v", ".parametrizations.weight.original1"
            ): v
            for k, v in ckpt["weight"].items()
        }

    other = _rewrite(src, tmp_path / "new.pth", to_parametrize_form)
    assert not any(k.endswith(".weight_g") for k in read_voice(other)[1])
    _, old_model = load_synthesizer(src)
    _, new_model = load_synthesizer(other)
    assert torch.equal(_run(old_model, 10, 9), _run(new_model, 10, 9))


def test_renamed_key_names_missing_and_unexpected(voices: dict, tmp_path: Path) -> None:
    def rename(ckpt: dict) -> None:
        ckpt["weight"]["dec.ups.0.weight_gain"] = ckpt["weight"].pop("dec.ups.0.weight_g")

    path = _rewrite(voices[("v1", True, 40000)], tmp_path / "renamed.pth", rename)
    with pytest.raises(VoiceFormatError) as err:
        load_synthesizer(path)
    assert "missing keys (1: dec.ups.0.weight_g)" in str(err.value)
    assert "unexpected keys (1: dec.ups.0.weight_gain)" in str(err.value)


def test_shape_mismatch_names_key_and_shapes(voices: dict, tmp_path: Path) -> None:
    def shrink(ckpt: dict) -> None:
        ckpt["weight"]["enc_p.proj.weight"] = ckpt["weight"]["enc_p.proj.weight"][:-2]

    path = _rewrite(voices[("v2", False, 48000)], tmp_path / "shape.pth", shrink)
    with pytest.raises(
        VoiceFormatError, match=r"enc_p\.proj\.weight file \[30, 16, 1\] vs model \[32"
    ):
        load_synthesizer(path)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"weight": {"x": torch.zeros(1)}, "config": _Exploit(marker)}, path)
    with pytest.raises(VoiceFormatError, match="refused"):
        read_voice(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content", [b"", b"not a checkpoint at all \x00\x01\x02" * 50, b"PK\x03\x04garbage"]
)
def test_garbage_bytes_are_rejected(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.pth"
    path.write_bytes(content)
    with pytest.raises(VoiceFormatError, match="not a readable PyTorch checkpoint"):
        load_synthesizer(path)


def test_missing_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(VoiceFormatError, match="cannot read"):
        read_voice(tmp_path / "absent.pth")


def _set(key: str, value: Any) -> Callable[[dict], None]:
    return lambda ckpt: ckpt.__setitem__(key, value)


def _set_config(index: int, value: Any) -> Callable[[dict], None]:
    return lambda ckpt: ckpt["config"].__setitem__(index, value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("version", "v3"), "version 'v3'"),
        (_set("sr", "48k"), "disagrees"),
        (_set("f0", 2), "f0 must be"),
        (_set("config", [1, 2, 3]), "18 entries"),
        (_set_config(12, [10, 10, 2, 4]), "samples per frame"),
        (_set_config(12, [10, 10, 2, 3]), "does not fit rate 3"),
        (_set_config(13, 60), "divisible"),
        (_set_config(9, "3"), "resblock"),
        (_set_config(5, 0), "n_heads"),
        (lambda ckpt: ckpt.pop("weight"), "no 'weight'"),
        (
            lambda ckpt: ckpt["weight"]["dec.ups.1.weight_v"].view(-1)[0].fill_(float("nan")),
            r"NaN/inf in \(1: dec\.ups\.1\.weight_v\)",
        ),
        (lambda ckpt: ckpt["weight"].pop("emb_g.weight"), "emb_g.weight"),
        (lambda ckpt: ckpt["weight"].__setitem__("dec.conv_pre.bias", "x"), "not float tensors"),
    ],
)
def test_bad_fields_and_configs_are_rejected(
    voices: dict, tmp_path: Path, edit: Callable[[dict], None], message: str
) -> None:
    path = _rewrite(voices[("v2", True, 40000)], tmp_path / "bad.pth", edit)
    with pytest.raises(VoiceFormatError, match=message):
        load_synthesizer(path)


def test_non_dict_and_training_checkpoints_are_rejected(tmp_path: Path) -> None:
    listed = tmp_path / "list.pth"
    torch.save([1, 2, 3], listed)
    with pytest.raises(VoiceFormatError, match="not a dict"):
        read_voice(listed)
    training = tmp_path / "G_100.pth"
    torch.save({"model": {"a": torch.zeros(1)}, "iteration": 3}, training)
    with pytest.raises(VoiceFormatError, match="training checkpoint"):
        read_voice(training)


def test_legacy_fields_speaker_count_and_pitch_from_weights(voices: dict, tmp_path: Path) -> None:
    def legacy(ckpt: dict) -> None:
        # Old v1 files: no version or f0 field; the WebUI trusts emb_g over config[-3].
        del ckpt["version"], ckpt["f0"]
        ckpt["config"][-3] = 109

    path = _rewrite(voices[("v1", True, 40000)], tmp_path / "legacy.pth", legacy)
    info, model = load_synthesizer(path)
    assert (info.version, info.pitch_guided, info.speakers) == ("v1", True, 4)
    assert isinstance(model, SynthesizerV1Pitch)
