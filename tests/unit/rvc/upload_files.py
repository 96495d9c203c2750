"""Files a client might upload as a voice: real-format tiny ones, and hostile ones."""

from __future__ import annotations

import functools
import io
import pickle
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from services.rvc.dsp.retrieval import build_index
from services.rvc.models.tiny_voice import write_tiny_voice

FEATURE_DIMS = {"v1": 256, "v2": 768}


@functools.cache
def voice_bytes(version: str = "v2", pitch_guided: bool = True, rate: int = 48_000,
                seed: int = 0) -> bytes:
    """A random-weight voice in the WebUI's .pth format (torch.save's zip)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "voice.pth"
        write_tiny_voice(path, version, pitch_guided, rate, seed=seed)
        return path.read_bytes()


@functools.cache
def index_bytes(dim: int = 768, count: int = 200, seed: int = 0) -> bytes:
    """A faiss IVF Flat index, as the WebUI writes one, of ``count`` random vectors."""
    vectors = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "voice.index"
        build_index(vectors, path)
        return path.read_bytes()


def saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


class _Payload:
    """Unpickled with full pickle, it creates ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def bomb_by_reduce(marker: Path) -> bytes:
    """torch.save of a voice-shaped dict whose weights hold an object that runs code."""
    return saved({"weight": {"emb_g.weight": _Payload(marker)}, "config": [], "version": "v2"})


def raw_bomb(marker: Path) -> bytes:
    """A hand-written pickle: GLOBAL builtins.exec, then REDUCE on a code string."""
    code = f"open({str(marker)!r}, 'w').close()"
    return b"cbuiltins\nexec\n(" + pickle.dumps(code, protocol=0)[:-1] + b"tR."


def with_member(checkpoint: bytes, suffix: str, data: bytes) -> bytes:
    """``checkpoint`` (a torch zip) with the member ending in ``suffix`` replaced by ``data``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(checkpoint)) as source, zipfile.ZipFile(out, "w") as target:
        for member in source.infolist():
            body = data if member.filename.endswith(suffix) else source.read(member)
            target.writestr(member.filename, body, compress_type=zipfile.ZIP_STORED)
    return out.getvalue()


def recompressed(checkpoint: bytes) -> bytes:
    """The same members, deflated: what torch's reader would inflate however large."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(checkpoint)) as source, zipfile.ZipFile(out, "w") as target:
        for member in source.infolist():
            target.writestr(member.filename, source.read(member),
                            compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def with_config(checkpoint: bytes, position: int, value: object) -> bytes:
    """``checkpoint`` with entry ``position`` of its config list set to ``value``."""
    ckpt = torch.load(io.BytesIO(checkpoint), weights_only=True)
    ckpt["config"][position] = value
    return saved(ckpt)
