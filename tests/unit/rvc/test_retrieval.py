"""Feature retrieval: the WebUI's inverse-distance blend, index building, and bad files."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from services.rvc.dsp.retrieval import FeatureIndex, IndexFormatError, build_index

DIM = 32


@pytest.fixture(scope="module")
def stored() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((600, DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def index_path(tmp_path_factory: pytest.TempPathFactory, stored: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("index") / "added_IVF15_Flat_nprobe_1_tiny_v2.index"
    build_index(stored, path)
    return path


@pytest.fixture(scope="module")
def index(index_path: Path) -> FeatureIndex:
    return FeatureIndex.load(index_path)


def _webui_blend(path: Path, feats: np.ndarray, rate: float, k: int = 8) -> np.ndarray:
    """The WebUI's computation in plain numpy, on faiss's own search of the same file."""
    raw = faiss.read_index(str(path))
    vectors = raw.reconstruct_n(0, raw.ntotal)
    score, ix = raw.search(feats, k)
    weight = np.square(1 / score)
    weight /= weight.sum(axis=1, keepdims=True)
    retrieved = np.sum(vectors[ix] * weight[:, :, None], axis=1)
    return retrieved * rate + (1 - rate) * feats


def test_build_round_trip(index_path: Path, index: FeatureIndex, stored: np.ndarray) -> None:
    raw = faiss.read_index(str(index_path))
    ivf = faiss.extract_index_ivf(raw)
    # The WebUI's list count: min(16 * sqrt(n), n // 39), at least 1.
    assert ivf.nlist == 15 and ivf.nprobe == 1
    assert index.dim == DIM and index.size == 600
    assert np.array_equal(np.sort(raw.reconstruct_n(0, 600), axis=0), np.sort(stored, axis=0))


def test_rate_zero_is_identity(index: FeatureIndex) -> None:
    feats = np.random.default_rng(1).standard_normal((20, DIM)).astype(np.float32)
    out = index.blend(feats, 0.0)
    assert out.dtype == np.float32 and np.array_equal(out, feats)
    assert out is not feats


def test_stored_vector_stays_itself(index: FeatureIndex, stored: np.ndarray) -> None:
    out = index.blend(stored[:50], 1.0)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, stored[:50], atol=1e-5)


@pytest.mark.parametrize("rate", [0.3, 0.75, 1.0])
def test_matches_webui_formula(index_path: Path, index: FeatureIndex, rate: float) -> None:
    feats = np.random.default_rng(2).standard_normal((40, DIM)).astype(np.float32)
    out = index.blend(feats, rate)
    assert out.shape == feats.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, _webui_blend(index_path, feats, rate), rtol=1e-4, atol=1e-5)


def test_convex_combination_of_neighbours(stored: np.ndarray) -> None:
    """Against brute force over all stored vectors (an exact index, so no IVF approximation)."""
    exact = faiss.IndexFlatL2(DIM)
    exact.add(stored)
    flat = FeatureIndex(exact, stored)
    feats = np.random.default_rng(3).standard_normal((25, DIM)).astype(np.float32)
    d2 = ((feats[:, None, :] - stored[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(d2, axis=1)[:, :8]
    w = 1.0 / np.take_along_axis(d2, nearest, axis=1) ** 2
    w /= w.sum(axis=1, keepdims=True)
    expect = (stored[nearest] * w[:, :, None]).sum(axis=1)
    np.testing.assert_allclose(flat.blend(feats, 1.0), expect, rtol=1e-4, atol=1e-5)
    assert (w >= 0).all() and np.allclose(w.sum(axis=1), 1.0)


def test_exact_duplicates_and_small_index(tmp_path: Path) -> None:
    base = np.random.default_rng(4).standard_normal((5, 8)).astype(np.float32)
    path = tmp_path / "small.index"
    build_index(np.concatenate([base, base]), path)  # size 10, some exact duplicates
    small = FeatureIndex.load(path)
    assert small.size == 10
    out = small.blend(base, 1.0, k=8)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, base, atol=1e-5)
    build_index(base[:3], tmp_path / "three.index")
    tiny = FeatureIndex.load(tmp_path / "three.index")
    out = tiny.blend(base, 0.5)  # fewer stored vectors than k
    assert out.shape == base.shape and np.isfinite(out).all()


def test_dim_mismatch(index: FeatureIndex) -> None:
    with pytest.raises(IndexFormatError, match=r"768.*32|32.*768"):
        index.blend(np.zeros((4, 768), np.float32), 0.5)


def test_bad_arguments(index: FeatureIndex) -> None:
    with pytest.raises(ValueError):
        index.blend(np.zeros((4, DIM), np.float32), 1.5)
    with pytest.raises(ValueError):
        index.blend(np.zeros(DIM, np.float32), 0.5)
    assert index.blend(np.zeros((0, DIM), np.float32), 0.5).shape == (0, DIM)
    with pytest.raises(ValueError):
        build_index(np.zeros((0, DIM), np.float32), Path("/nonexistent/never.index"))


def test_corrupt_files(tmp_path: Path, index_path: Path) -> None:
    good = index_path.read_bytes()
    rng = np.random.default_rng(5)
    cases = {
        "empty": b"",
        "junk": b"definitely not faiss" * 10,
        "truncated": good[: len(good) // 2],
        "trailing": good + b"\0" * 16,
        "forged_count": good[:8] + (10**15).to_bytes(8, "little") + good[16:],
    }
    for i in range(30):
        flipped = bytearray(good)
        for pos in rng.integers(0, 200, size=3):
            flipped[pos] = int(rng.integers(0, 256))
        cases[f"flip{i}"] = bytes(flipped)
    for name, data in cases.items():
        path = tmp_path / f"{name}.index"
        path.write_bytes(data)
        try:
            loaded = FeatureIndex.load(path)
        except IndexFormatError:
            continue
        # A flip that lands in padding may still be a valid index; it must then work.
        assert name.startswith("flip"), name
        loaded.blend(np.zeros((2, loaded.dim), np.float32), 0.5)
    with pytest.raises(IndexFormatError, match="cannot read"):
        FeatureIndex.load(tmp_path / "missing.index")


def test_empty_and_unsupported_index(tmp_path: Path) -> None:
    empty = faiss.index_factory(DIM, "IVF1,Flat")
    empty.train(np.random.default_rng(6).standard_normal((50, DIM)).astype(np.float32))
    faiss.write_index(empty, str(tmp_path / "empty.index"))
    with pytest.raises(IndexFormatError, match="no vectors"):
        FeatureIndex.load(tmp_path / "empty.index")
    data = np.random.default_rng(7).standard_normal((100, DIM)).astype(np.float32)
    inner = faiss.IndexFlatIP(DIM)
    inner.add(data)
    faiss.write_index(inner, str(tmp_path / "ip.index"))
    with pytest.raises(IndexFormatError, match="IxFI"):
        FeatureIndex.load(tmp_path / "ip.index")
    ivf_ip = faiss.index_factory(DIM, "IVF1,Flat", faiss.METRIC_INNER_PRODUCT)
    ivf_ip.train(data)
    ivf_ip.add(data)
    faiss.write_index(ivf_ip, str(tmp_path / "ivf_ip.index"))
    with pytest.raises(IndexFormatError, match="not L2"):
        FeatureIndex.load(tmp_path / "ivf_ip.index")
