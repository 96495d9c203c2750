"""Feature retrieval: pull content features toward a voice's training set, as the RVC WebUI does."""

from __future__ import annotations

import math
import os
import struct
import tempfile
from pathlib import Path

import faiss
import numpy as np

# fourcc, d, ntotal, two reserved int64, is_trained, metric_type (faiss's index header).
_HEADER = struct.Struct("<4siqqqBi")
_U64 = struct.Struct("<Q")
_METRIC_L2 = 1
_MAX_DIM = 1 << 16
# Squared distances below this count as an exact match; keeps 1/d**2 finite.
_MIN_DISTANCE = 1e-12


class IndexFormatError(ValueError):
    """A retrieval index file is unreadable, unsupported, empty, or of the wrong width."""


class _Layout:
    """Walks faiss's serialised IVF Flat / Flat L2 layout, checking every size against the bytes.

    faiss allocates whatever sizes a file declares before reading the data, so a forged
    count could exhaust memory; here each count must be backed by bytes actually present.
    """

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def fail(self, why: str) -> IndexFormatError:
        return IndexFormatError(f"{self.path}: not a usable faiss IVF Flat index ({why})")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail("truncated")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def u64(self) -> int:
        return _U64.unpack(self.take(8))[0]

    def header(self, tag: bytes) -> tuple[int, int]:
        got, dim, ntotal, _, _, trained, metric = _HEADER.unpack(self.take(_HEADER.size))
        if got != tag:
            raise self.fail(f"expected {tag!r}, found {got!r}")
        if not 1 <= dim <= _MAX_DIM or ntotal < 0 or trained not in (0, 1):
            raise self.fail(f"implausible header (dim {dim}, count {ntotal})")
        if metric != _METRIC_L2:
            raise self.fail(f"metric {metric} is not L2")
        return dim, ntotal

    def flat(self) -> tuple[int, int]:
        dim, ntotal = self.header(b"IxF2")
        if self.u64() != dim * ntotal:
            raise self.fail("flat code size disagrees with the header")
        self.take(4 * dim * ntotal)
        return dim, ntotal

    def ivf_flat(self) -> tuple[int, int]:
        dim, ntotal = self.header(b"IwFl")
        nlist, nprobe = self.u64(), self.u64()
        if nlist < 1 or not 1 <= nprobe < 1 << 31:
            raise self.fail(f"bad list count {nlist} or nprobe {nprobe}")
        if self.flat() != (dim, nlist):
            raise self.fail("coarse quantizer does not match the index")
        map_type = self.take(1)[0]
        if map_type not in (0, 1, 2):
            raise self.fail(f"unknown direct map type {map_type}")
        self.take(8 * self.u64())
        if map_type == 2:
            self.take(16 * self.u64())
        if self.take(4) != b"ilar" or self.u64() != nlist or self.u64() != 4 * dim:
            raise self.fail("unsupported inverted lists")
        kind = self.take(4)
        count = self.u64()
        raw = np.frombuffer(self.take(8 * count), dtype="<u8")
        if kind == b"full" and count == nlist:
            sizes = [int(n) for n in raw]
        elif kind == b"sprs" and count % 2 == 0:
            sizes = [0] * nlist
            for list_no, n in raw.reshape(-1, 2).tolist():
                if list_no >= nlist:
                    raise self.fail("list number out of range")
                sizes[list_no] = n
        else:
            raise self.fail("bad inverted list sizes")
        if sum(sizes) != ntotal:
            raise self.fail("list sizes do not add up to the vector count")
        self.take(ntotal * (4 * dim + 8))
        return dim, ntotal

    def check(self) -> None:
        dim, ntotal = self.ivf_flat() if self.data[:4] == b"IwFl" else self.flat()
        if self.pos != len(self.data):
            raise self.fail("trailing bytes")
        if ntotal < 1:
            raise IndexFormatError(f"{self.path}: the index holds no vectors")


def _check_structure(index: faiss.Index, path: Path) -> None:
    """Catch inconsistencies faiss reads without complaint but would trip over when searching."""
    if not isinstance(index, faiss.IndexIVF):
        return
    quantizer = index.quantizer
    if (
        index.nprobe < 1
        or index.code_size != 4 * index.d
        or quantizer.d != index.d
        or quantizer.ntotal != index.nlist
        or not np.isfinite(quantizer.reconstruct_n(0, quantizer.ntotal)).all()
    ):
        raise IndexFormatError(f"{path}: inconsistent IVF structure")
    # Each id 0..ntotal-1 must sit in exactly one list, or search returns wild labels.
    lists = index.invlists
    ids = [
        faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
        for i in range(index.nlist)
        if lists.list_size(i) > 0
    ]
    found = np.sort(np.concatenate(ids)) if ids else np.empty(0, dtype=np.int64)
    if found.shape[0] != index.ntotal or not np.array_equal(found, np.arange(index.ntotal)):
        raise IndexFormatError(f"{path}: the index's vector ids are inconsistent")


class FeatureIndex:
    """A voice's faiss index plus its stored vectors, for WebUI-style feature blending."""

    def __init__(self, index: faiss.Index, vectors: np.ndarray) -> None:
        self._index = index
        self._vectors = vectors
        self.dim: int = int(index.d)
        self.size: int = int(index.ntotal)

    @classmethod
    def load(cls, path: Path) -> FeatureIndex:
        """Read a faiss index (as faiss.write_index wrote it) and its stored vectors."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise IndexFormatError(f"{path}: cannot read the index ({exc})") from exc
        _Layout(data, path).check()
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
            _check_structure(index, path)
            vectors = index.reconstruct_n(0, index.ntotal)
        except IndexFormatError:
            raise
        except Exception as exc:  # faiss raises RuntimeError, or MemoryError on bad sizes
            raise IndexFormatError(f"{path}: corrupt faiss index ({exc})") from exc
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (index.ntotal, index.d) or index.ntotal < 1:
            raise IndexFormatError(f"{path}: the index holds no readable vectors")
        if not np.isfinite(vectors).all():
            raise IndexFormatError(f"{path}: the index holds non-finite vectors")
        return cls(index, vectors)

    def blend(self, features: np.ndarray, rate: float, k: int = 8) -> np.ndarray:
        """[T, dim] -> [T, dim] float32: rate * weighted mean of k neighbours + (1 - rate) * input."""
        if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
            raise ValueError(f"index rate must be within [0, 1], got {rate}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        feats = np.asarray(features)
        if feats.ndim != 2:
            raise ValueError(f"expected [frames, dim] features, got shape {feats.shape}")
        if feats.shape[1] != self.dim:
            raise IndexFormatError(
                f"features are {feats.shape[1]}-dim but the index holds {self.dim}-dim vectors"
            )
        original = np.array(feats, dtype=np.float32, copy=True, order="C")
        if rate == 0.0 or original.shape[0] == 0:
            return original
        retrieved = self._retrieve(original, min(k, self.size))
        return (rate * retrieved + (1.0 - rate) * original).astype(np.float32, copy=False)

    def _retrieve(self, feats: np.ndarray, k: int) -> np.ndarray:
        """Inverse-square-distance weighted mean of each frame's nearest stored vectors."""
        try:
            distances, labels = self._index.search(feats, k)
        except RuntimeError as exc:
            raise IndexFormatError(f"faiss search failed ({exc})") from exc
        # faiss gives squared L2; the WebUI weights by (1 / that) ** 2, normalised per frame.
        weights = 1.0 / np.square(np.maximum(distances.astype(np.float64), _MIN_DISTANCE))
        missing = (labels < 0) | (labels >= self.size)
        weights[missing] = 0.0
        totals = weights.sum(axis=1, keepdims=True)
        found = totals[:, 0] > 0
        weights = np.divide(weights, totals, out=np.zeros_like(weights), where=totals > 0)
        weights = weights.astype(np.float32)
        safe_labels = np.where(missing, 0, labels)
        out = np.zeros_like(feats)
        for j in range(k):
            out += weights[:, j : j + 1] * self._vectors[safe_labels[:, j]]
        # A frame whose probed list was empty keeps its own features.
        out[~found] = feats[~found]
        return out


def build_index(features: np.ndarray, path: Path) -> None:
    """Write an IVF Flat index of ``features`` with the WebUI's list count and nprobe 1."""
    vectors = np.ascontiguousarray(features, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] < 1 or vectors.shape[1] < 1:
        raise ValueError(f"expected non-empty [count, dim] features, got shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("features contain non-finite values")
    count, dim = vectors.shape
    n_ivf = max(1, min(int(16 * math.sqrt(count)), count // 39))
    index = faiss.index_factory(dim, f"IVF{n_ivf},Flat")
    ivf = faiss.extract_index_ivf(index)
    ivf.nprobe = 1
    # Tiny training sets are expected here; skip faiss's too-few-points warning.
    ivf.cp.min_points_per_centroid = 1
    index.train(vectors)
    for start in range(0, count, 8192):
        index.add(vectors[start : start + 8192])
    data = faiss.serialize_index(index).tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".index-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
