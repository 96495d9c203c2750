"""Tokens of reference clips already seen, by content hash, least recently used out;
and the digest of the audio tokenizer's weights, which names the tokens' codec."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Speaker:
    global_ids: tuple[int, ...]
    semantic_ids: tuple[int, ...]


def speaker_id(wav: np.ndarray) -> str:
    """Same samples, same id, whoever sends them."""
    digest = hashlib.sha256(np.ascontiguousarray(wav, dtype="<f4").tobytes()).hexdigest()
    return f"spk-{digest[:32]}"


# What makes a clip's tokens (spark_tts.audio_tokenizer): Spark's config (volume
# normalisation, reference length), BiCodec and wav2vec2, each folder read whole.
_CODEC_PARTS = ("config.yaml", "BiCodec", "wav2vec2-large-xlsr-53")


def codec_digest(model_dir: str | Path) -> str:
    """``bicodec-`` and 16 hex digits of the tokenizer's files (names and contents),
    or "" without a model folder. Tokens made with other weights mean another voice."""
    if not str(model_dir):
        return ""
    root = Path(model_dir)
    digest = hashlib.sha256()
    for part in _CODEC_PARTS:
        path = root / part
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if not file.is_file():
                continue
            name = file.relative_to(root).as_posix()
            digest.update(f"{name}\0{file.stat().st_size}\0".encode())
            with file.open("rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
    return f"bicodec-{digest.hexdigest()[:16]}"


class SpeakerCache:
    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Speaker] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Speaker | None:
        with self._lock:
            speaker = self._items.get(key)
            if speaker is not None:
                self._items.move_to_end(key)
            return speaker

    def put(self, key: str, speaker: Speaker) -> None:
        with self._lock:
            self._items[key] = speaker
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
