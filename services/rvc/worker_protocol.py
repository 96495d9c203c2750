"""The wire format between the worker pool and its processes.

A message is a small pickled header of plain data, followed, when it carries
audio, by the array's raw bytes as a second message. Only plain values may be
in a header; the reader refuses anything that would import a class.
"""

from __future__ import annotations

import io
import pickle
from multiprocessing import BufferTooShort
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

Header = dict[str, Any]

_PLAIN_SCALARS = (type(None), bool, int, float, str, bytes)
_AUDIO_KINDS = "biufc"


class ProtocolError(Exception):
    """A peer sent something that is not a message of this protocol."""


def check_plain(value: Any, where: str = "meta") -> None:
    """Raise TypeError unless ``value`` is built only of plain Python data."""
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) not in (str, int):
                raise TypeError(f"{where}: key {key!r} is {type(key).__name__}, not str or int")
            check_plain(item, f"{where}[{key!r}]")
        return
    if kind in (list, tuple):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
        return
    # numpy scalars subclass float/int; they would pickle as classes, so say so early.
    raise TypeError(f"{where} is {kind.__module__}.{kind.__qualname__}; only plain data may cross")


def _audio_spec(audio: np.ndarray | None) -> tuple[str, tuple[int, ...]] | None:
    if audio is None:
        return None
    if not isinstance(audio, np.ndarray) or audio.dtype.kind not in _AUDIO_KINDS:
        raise TypeError(f"audio must be a numeric numpy array, not {type(audio).__name__}")
    return audio.dtype.str, tuple(audio.shape)


def encode(header: Header, audio: np.ndarray | None = None) -> tuple[bytes, np.ndarray | None]:
    """Check and serialise a message; the result is what ``write`` sends."""
    header = dict(header, audio=_audio_spec(audio))
    check_plain(header, "header")
    if audio is not None:
        # A view when the array already is C-contiguous (the usual case): no copy.
        audio = np.ascontiguousarray(audio)
    return pickle.dumps(header, protocol=pickle.HIGHEST_PROTOCOL), audio


def write(conn: Connection, message: tuple[bytes, np.ndarray | None]) -> None:
    """Send an encoded message; blocks until the peer has taken it all."""
    payload, audio = message
    conn.send_bytes(payload)
    if audio is not None:
        conn.send_bytes(audio.reshape(-1).view(np.uint8))


def send(conn: Connection, header: Header, audio: np.ndarray | None = None) -> None:
    write(conn, encode(header, audio))


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")


def receive(conn: Connection) -> tuple[Header, np.ndarray | None]:
    """Read one message. EOFError when the peer has gone; ProtocolError when it is garbled."""
    payload = conn.recv_bytes()
    try:
        header = _PlainUnpickler(io.BytesIO(payload)).load()
        spec = header.pop("audio")
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, AttributeError) as exc:
        raise ProtocolError(f"unreadable header: {exc}") from exc
    if spec is None:
        return header, None
    try:
        dtype, shape = np.dtype(spec[0]), tuple(int(n) for n in spec[1])
    except (TypeError, ValueError, IndexError) as exc:
        raise ProtocolError(f"bad audio description {spec!r}") from exc
    if dtype.kind not in _AUDIO_KINDS:
        raise ProtocolError(f"audio dtype {dtype} is not numeric")
    audio = np.empty(shape, dtype)
    try:
        size = conn.recv_bytes_into(audio.reshape(-1).view(np.uint8))
    except BufferTooShort as exc:
        raise ProtocolError(f"audio longer than its description {spec!r}") from exc
    if size != audio.nbytes:
        raise ProtocolError(f"audio of {size} bytes, expected {audio.nbytes}")
    return header, audio
