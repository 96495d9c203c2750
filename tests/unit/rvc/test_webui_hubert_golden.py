"""HuBERT features as the WebUI main branch computes them: the waveform is never normalised.

Provenance: the RVC WebUI at commit 4338f12 (main), ``infer/hubert.py`` and
``infer/vc/pipeline.py`` extracted with ``git archive`` into a scratch folder outside this
repository and run with this repository's virtualenv (transformers 5). A scratch script
copied the tiny transformers HuBERT folder that ``write_tiny_models`` writes with seed 0,
set ``do_normalize: true`` in its preprocessor_config.json (as the WebUI's converted
hubert_base/ has it; ``hubert_audio_requires_normalization()`` then returned True), loaded
it with ``load_hubert_model("cpu")`` (``HUBERT_MODEL_PATH`` pointed at the copy) and
called ``extract_hubert_features(model, wav, version, padding_mask=<all False>)`` on the
first 16000 samples of ``golden_clip()`` times float32 0.01, as a [1, 16000] float32
tensor, as ``vc()`` passes it. The numbers are the result's float64 sum, sum of
magnitudes and six entries.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from services.rvc.models.content import ContentEncoder
from services.rvc.models.tiny_content import write_tiny_fairseq_hubert
from tests.unit.rvc.golden_inputs import golden_clip

GOLDEN = {
    "v1": {
        "shape": (1, 49, 256),
        "sum": -14.534343136008829,
        "abs_sum": 5986.205304383999,
        "entries": {(0, 0): 0.38585177063941956, (7, 100): 0.10768423974514008,
                    (20, 5): -0.20018158853054047, (31, 200): 0.46905517578125,
                    (40, 17): 0.31617292761802673, (48, 255): -0.13872665166854858},
    },
    "v2": {
        "shape": (1, 49, 768),
        # Each frame leaves the last layer norm with about zero mean: the sum says little.
        "sum": -0.00011147424038426834,
        "abs_sum": 30056.15848460835,
        "entries": {(0, 0): 0.3838810920715332, (7, 100): 1.1539782285690308,
                    (20, 5): -1.9696435928344727, (31, 200): 1.1794980764389038,
                    (40, 17): -0.9544145464897156, (48, 255): 0.01981433294713497},
    },
}


def quiet_clip() -> torch.Tensor:
    """The first second of golden_clip() at -40 dB.

    The first conv layer's group norm cancels a plain gain except through its epsilon, so
    standardising loud audio changes the features only slightly; on quiet audio it
    changes them completely.
    """
    return torch.from_numpy(golden_clip()[:16_000] * np.float32(0.01))[None]


@pytest.fixture(scope="module")
def normalising_checkpoints(tiny_rvc: Path, tmp_path_factory) -> dict[str, Path]:
    """The tiny HuBERT in both formats, each saying the audio should be normalised."""
    root = tmp_path_factory.mktemp("hubert-normalize")
    folder = root / "hubert_base"
    shutil.copytree(tiny_rvc / "assets" / "hubert_base", folder)
    pre = folder / "preprocessor_config.json"
    pre.write_text(json.dumps({**json.loads(pre.read_text()), "do_normalize": True}))
    fairseq = root / "hubert_base.pt"
    write_tiny_fairseq_hubert(fairseq, seed=0)
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = torch.load(fairseq, map_location="cpu", weights_only=True)
    ckpt["args"].normalize = True
    ckpt["cfg"]["task"]["normalize"] = True
    torch.save(ckpt, fairseq)
    return {"transformers": folder, "fairseq": fairseq}


@pytest.mark.parametrize("fmt", ["transformers", "fairseq"])
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_features_match_the_webui_without_normalisation(normalising_checkpoints, fmt, version):
    encoder = ContentEncoder.load(normalising_checkpoints[fmt])
    feats = encoder.extract(quiet_clip(), version).double()
    golden = GOLDEN[version]
    assert tuple(feats.shape) == golden["shape"]
    assert float(feats.abs().sum()) == pytest.approx(golden["abs_sum"], rel=1e-5)
    assert float(feats.sum()) == pytest.approx(golden["sum"], rel=1e-4, abs=2e-3)
    for (t, d), value in golden["entries"].items():
        assert float(feats[0, t, d]) == pytest.approx(value, rel=1e-4, abs=1e-5)
