"""Finds the voice models installed under the models directory.

A voice is ``<dir>/<name>/`` holding one RVC WebUI ``.pth`` and optionally
its ``.index``, or a bare ``<dir>/<name>.pth`` with ``<name>.index`` beside
it. Names come from clients, so they are checked against a strict pattern
and never joined onto a path before that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class VoiceFiles:
    name: str
    checkpoint: Path
    index: Path | None

    def without_paths(self, message: str) -> str:
        """``message`` (a loader's error) naming this voice's files by name, not by path:
        it reaches clients, who have no business knowing the server's directories."""
        for path in (self.checkpoint, self.index):
            if path is not None:
                message = message.replace(str(path), path.name)
        return message

    def stamp(self) -> tuple:
        """Which version of the files this is: a replaced file differs in inode (or time, size).
        Raises OSError when a file is gone."""
        paths = [self.checkpoint, *([self.index] if self.index is not None else [])]
        return tuple(
            (str(p), s.st_ino, s.st_mtime_ns, s.st_size) for p, s in ((p, p.stat()) for p in paths)
        )


def check_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise InvalidArgument(
            f"model name {name[:80]!r} is invalid: use letters, digits, '.', '_' or '-' "
            "(at most 64, no path separators)"
        )
    return name


class ModelStore:
    def __init__(self, root: Path, default: str = "") -> None:
        self.root = root
        self._default = default

    def list(self) -> list[VoiceFiles]:
        if not self.root.is_dir():
            return []
        found: dict[str, VoiceFiles] = {}
        for entry in sorted(self.root.iterdir()):
            # A folder is its name whatever it ends in (a voice may be called "x.pth").
            name = entry.stem if entry.suffix == ".pth" and not entry.is_dir() else entry.name
            if not _NAME.match(name) or ".." in name or name in found:
                continue
            voice = self._voice_at(name)
            if voice is not None:
                found[name] = voice
        return list(found.values())

    def _voice_at(self, name: str) -> VoiceFiles | None:
        folder = self.root / name
        if folder.is_dir():
            checkpoints = sorted(folder.glob("*.pth"))
            if len(checkpoints) != 1:
                return None
            indexes = sorted(folder.glob("*.index"))
            return VoiceFiles(name, checkpoints[0], indexes[0] if indexes else None)
        checkpoint = self.root / f"{name}.pth"
        if checkpoint.is_file():
            index = self.root / f"{name}.index"
            return VoiceFiles(name, checkpoint, index if index.is_file() else None)
        return None

    def default_name(self) -> str:
        if self._default:
            return self._default
        voices = self.list()
        return voices[0].name if len(voices) == 1 else ""

    def resolve(self, name: str) -> VoiceFiles:
        """The files of voice ``name``, or of the default voice when ``name`` is empty."""
        if not name:
            name = self.default_name()
            if not name:
                raise FailedPrecondition(
                    "no model named and no default: set RVC_MODEL or install exactly one "
                    "voice (under RVC_MODELS_DIR)"
                )
        voice = self._voice_at(check_name(name))
        if voice is None:
            raise NotFound(f"no RVC model named {name!r} is installed")
        # Symlinks must not lead out of the models directory.
        root = self.root.resolve()
        if not voice.checkpoint.resolve().is_relative_to(root):
            raise NotFound(f"no RVC model named {name!r} is installed")
        return voice
