"""Installs and deletes RVC WebUI voices under the models directory, for clients.

An upload is written into a hidden folder of the models directory (ModelStore skips
names starting with '.'), checked the way the workers load it — the checkpoint with
weights-only unpickling and its synthesizer laid out on the meta device, the index with
the bounded faiss reader — and only then moved in whole as ``<dir>/<name>/<name>.pth``
(and ``<name>.index``). Whatever fails, nothing of it is left behind.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import shutil
import tempfile
import threading
import uuid
import zipfile
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import BinaryIO

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.rvc.dsp.retrieval import FeatureIndex, IndexFormatError
from services.rvc.model_store import ModelStore, VoiceFiles, check_name
from services.rvc.models.checkpoint import UnsafeVoiceError, VoiceFormatError, check_voice

log = logging.getLogger(__name__)


class Part(Enum):
    CHECKPOINT = ".pth"
    INDEX = ".index"


_LIMIT_NAMES = {Part.CHECKPOINT: "RVC_MAX_CHECKPOINT_BYTES", Part.INDEX: "RVC_MAX_INDEX_BYTES"}


@dataclass(frozen=True)
class InstallLimits:
    max_checkpoint_bytes: int
    max_index_bytes: int

    def of(self, part: Part) -> int:
        return self.max_checkpoint_bytes if part is Part.CHECKPOINT else self.max_index_bytes


def _remove(path: Path) -> None:
    """Remove a file, link or folder (a link itself, never what it points to)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_LIBC = ctypes.CDLL(None, use_errno=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2); False where the system cannot."""
    renameat2 = getattr(_LIBC, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False  # e.g. NFS: fall back to two renames
    raise OSError(err, os.strerror(err))


def _check_archive(path: Path) -> None:
    """torch.save writes a zip of stored (uncompressed) members. A compressed member could
    inflate far past the size limit inside torch's reader (a zip bomb), and a .pth that is
    no zip is the legacy format, which no RVC WebUI voice was ever saved in."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except Exception as exc:  # zipfile raises many types for a damaged directory
        raise InvalidArgument(
            f"the .pth is not an RVC WebUI checkpoint: it is not the zip archive torch.save "
            f"writes ({exc})"
        ) from None
    packed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED
              or m.compress_size != m.file_size]
    if packed:
        raise InvalidArgument(
            f"the .pth is not an RVC WebUI checkpoint: torch.save stores its members "
            f"uncompressed, but {len(packed)} are compressed (e.g. {packed[0][:80]!r})"
        )
    if sum(m.file_size for m in members) > path.stat().st_size:
        raise InvalidArgument("the .pth is not an RVC WebUI checkpoint: its zip directory "
                              "declares more bytes than the file holds")


def _without(path: Path, message: str) -> str:
    """A loader's message naming the file, not the server's folders."""
    return message.replace(str(path), path.name)


def check_upload(checkpoint: Path, index: Path | None) -> None:
    """Refuse (InvalidArgument) a checkpoint or index the workers could not serve."""
    _check_archive(checkpoint)
    try:
        info = check_voice(checkpoint)
    except UnsafeVoiceError as exc:
        raise InvalidArgument(
            "the .pth would run code when unpickled (a pickle bomb, or a file that is no "
            f"voice): {_without(checkpoint, str(exc))}"
        ) from None
    except VoiceFormatError as exc:
        raise InvalidArgument(
            f"the .pth is not an RVC WebUI checkpoint: {_without(checkpoint, str(exc))}"
        ) from None
    if index is None:
        return
    try:
        features = FeatureIndex.load(index)
    except IndexFormatError as exc:
        raise InvalidArgument(
            f"the .index is not a usable faiss index: {_without(index, str(exc))}"
        ) from None
    if features.dim != info.feature_dim:
        raise InvalidArgument(
            f"the .index holds {features.dim}-dim features but the .pth is a {info.version} "
            f"voice, whose features are {info.feature_dim}-dim"
        )


class Upload:
    """One voice arriving in a hidden folder of the models directory: invisible to the
    store until committed. Thread-safe, so a discard waits for a write in progress."""

    def __init__(self, folder: Path, name: str, replace: bool, limits: InstallLimits) -> None:
        self.folder, self.name, self.replace = folder, name, replace
        self._limits = limits
        self._sizes = dict.fromkeys(Part, 0)
        self._started: list[Part] = []
        self._file: BinaryIO | None = None
        self._discarded = False
        self._lock = threading.Lock()

    def path(self, part: Part) -> Path:
        return self.folder / f"{self.name}{part.value}"

    def write(self, part: Part, data: bytes) -> None:
        with self._lock:
            if self._discarded:
                raise InvalidArgument("the upload has ended")
            if part not in self._started[-1:]:
                if part is Part.INDEX and Part.CHECKPOINT not in self._started:
                    raise InvalidArgument("the index chunks must follow the checkpoint chunks")
                if part in self._started:
                    raise InvalidArgument("the checkpoint chunks must all come before the index")
                self._close()
                self._file = open(self.path(part), "xb")  # noqa: SIM115 - closed by _close
                self._started.append(part)
            size = self._sizes[part] + len(data)
            limit = self._limits.of(part)
            if size > limit:
                raise InvalidArgument(
                    f"the {part.value} is larger than the limit of {limit} bytes "
                    f"({_LIMIT_NAMES[part]})"
                )
            self._file.write(data)
            self._sizes[part] = size

    def finish(self) -> tuple[Path, Path | None]:
        """The received checkpoint and index (None when none came), closed and non-empty."""
        with self._lock:
            self._close()
            if Part.CHECKPOINT not in self._started:
                raise InvalidArgument(
                    "no checkpoint: send the voice's .pth in checkpoint chunks after the header"
                )
            for part in self._started:
                if self._sizes[part] == 0:
                    raise InvalidArgument(f"the {part.value} is empty")
            index = self.path(Part.INDEX) if Part.INDEX in self._started else None
            return self.path(Part.CHECKPOINT), index

    def discard(self) -> None:
        """Remove whatever the hidden folder holds (after a commit: the voice it replaced)."""
        with self._lock:
            self._discarded = True
            self._close()
            _remove(self.folder)

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class VoiceInstaller:
    def __init__(self, store: ModelStore, limits: InstallLimits) -> None:
        self._store = store
        self._limits = limits
        # Commits and deletes check names and move folders one at a time.
        self._lock = threading.Lock()

    @property
    def limits(self) -> InstallLimits:
        return self._limits

    @property
    def root(self) -> Path:
        return self._store.root

    def _taken(self, name: str) -> bool:
        return os.path.lexists(self.root / name) or os.path.lexists(self.root / f"{name}.pth")

    @staticmethod
    def _exists(name: str) -> AlreadyExists:
        return AlreadyExists(
            f"a voice named {name!r} is already installed; set replace to overwrite it"
        )

    def begin(self, name: str, replace: bool = False) -> Upload:
        """A hidden folder to receive voice ``name`` into; refused early when the name is taken."""
        check_name(name)
        if not replace and self._taken(name):
            raise self._exists(name)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix=f".install-{name}-", dir=self.root))
        except OSError as exc:
            raise FailedPrecondition(
                f"voices cannot be installed: the models directory (RVC_MODELS_DIR) is not "
                f"writable ({exc.strerror})"
            ) from None
        return Upload(folder, name, replace, self._limits)

    def commit(self, upload: Upload) -> VoiceFiles:
        """Check what ``upload`` received and move it in; its folder is removed in any case."""
        try:
            checkpoint, index = upload.finish()
            check_upload(checkpoint, index)
            with self._lock:
                self._move_in(upload)
        finally:
            upload.discard()
        log.info("voice installed", extra={"voice": upload.name, "replaced": upload.replace})
        return self._store.resolve(upload.name)

    def _move_in(self, upload: Upload) -> None:
        name, target = upload.name, self.root / upload.name
        if self._taken(name) and not upload.replace:
            raise self._exists(name)
        try:
            if not os.path.lexists(target):
                os.rename(upload.folder, target)
            elif not _exchange(upload.folder, target):
                # No atomic swap here: the voice is absent between the two renames.
                aside = self.root / f".replaced-{name}-{uuid.uuid4().hex}"
                os.rename(target, aside)
                try:
                    os.rename(upload.folder, target)
                except OSError:
                    os.rename(aside, target)
                    raise
                os.rename(aside, upload.folder)
            # The folder shadows a bare <name>.pth; a replaced one goes.
            for suffix in (".pth", ".index"):
                (self.root / f"{name}{suffix}").unlink(missing_ok=True)
        except OSError as exc:
            raise FailedPrecondition(
                f"voice {name!r} could not be moved into the models directory ({exc.strerror})"
            ) from None

    def delete(self, name: str) -> None:
        """Remove voice ``name``: its folder, or its bare .pth and .index."""
        check_name(name)
        with self._lock:
            if not self._taken(name):
                raise NotFound(f"no RVC model named {name!r} is installed")
            try:
                for path in (self.root / name, self.root / f"{name}.pth", self.root / f"{name}.index"):
                    if os.path.lexists(path):
                        # Out of sight in one step, however long the removal takes.
                        aside = self.root / f".deleted-{name}-{uuid.uuid4().hex}"
                        os.rename(path, aside)
                        _remove(aside)
            except OSError as exc:
                raise FailedPrecondition(
                    f"voice {name!r} could not be deleted ({exc.strerror})"
                ) from None
        log.info("voice deleted", extra={"voice": name})

    def install(
        self,
        name: str,
        checkpoint: bytes | Iterable[bytes],
        index: bytes | Iterable[bytes] | None = None,
        replace: bool = False,
    ) -> VoiceFiles:
        """Install a voice from whole files or chunk iterables (``bytes`` is one chunk)."""
        upload = self.begin(name, replace)
        try:
            for part, data in _parts(checkpoint, index):
                upload.write(part, data)
        except BaseException:
            upload.discard()
            raise
        return self.commit(upload)

    async def receive(
        self, name: str, replace: bool, parts: AsyncIterable[tuple[Part, bytes]]
    ) -> VoiceFiles:
        """Install a voice from ``parts`` as they arrive: the checkpoint's, then the index's."""
        upload = await asyncio.to_thread(self.begin, name, replace)
        try:
            async for part, data in parts:
                await asyncio.to_thread(upload.write, part, data)
        except BaseException:
            upload.discard()
            raise
        # Once checking begins it runs to the end, even if the caller leaves meanwhile.
        return await asyncio.to_thread(self.commit, upload)


def _parts(
    checkpoint: bytes | Iterable[bytes], index: bytes | Iterable[bytes] | None
) -> Iterable[tuple[Part, bytes]]:
    for part, chunks in ((Part.CHECKPOINT, checkpoint), (Part.INDEX, index)):
        if chunks is None:
            continue
        for data in [chunks] if isinstance(chunks, (bytes, bytearray, memoryview)) else chunks:
            yield part, bytes(data)
