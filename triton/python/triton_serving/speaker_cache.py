"""Tokens of reference clips already seen, by content hash, least recently used out."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Speaker:
    global_ids: tuple[int, ...]
    semantic_ids: tuple[int, ...]


def speaker_id(wav: np.ndarray) -> str:
    """Same samples, same id, whoever sends them."""
    digest = hashlib.sha256(np.ascontiguousarray(wav, dtype="<f4").tobytes()).hexdigest()
    return f"spk-{digest[:32]}"


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
