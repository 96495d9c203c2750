"""The WebUI main branch's pitch post-processing (unvoiced fill, shift, coarse bins).

Provenance: the RVC WebUI at commit 4338f12 (main), ``infer/vc/pipeline.py`` extracted with
``git archive`` into a scratch folder outside this repository and run with this
repository's virtualenv. A scratch script gave a ``Pipeline`` (device cpu, is_half False,
x_pad 1, x_query 6, x_center 38, x_max 41) a ``model_rmvpe`` stand-in whose
``infer_from_audio`` returns ``golden_f0_curve()``, so ``get_f0(x, 40, key, "rmvpe")`` ran
main's own post-processing on that curve; the numbers are its two return values
(coarse int32, Hz float64) for f0_up_key 0 and 7. With an all-zero curve ``get_f0`` hits
its exception path (``np.interp`` has no voiced frame) and returns zeros and bins of 1.
"""

from __future__ import annotations

import numpy as np
import pytest

from services.rvc.dsp import f0 as pitch
from tests.unit.rvc.golden_inputs import golden_f0_curve

COARSE_SHIFT_0 = [
    27, 27, 27, 27, 27, 29, 32, 34, 35, 36, 37, 37, 37, 36, 35, 33, 31, 28, 27, 25,
    23, 21, 20, 18, 11, 4, 1, 1, 57, 87, 114, 139, 162, 183, 203, 221, 238, 238, 238, 238,
]

HZ_SHIFT_0 = [
    120.0, 120.0, 120.0, 120.0,
    120.0, 126.86179290487084, 133.35978370029991, 139.14945852653022,
    143.92385738870834, 147.42984872173795, 149.4815500514139, 149.97018320823614,
    148.8698415850453, 146.2388636670118, 142.21674001144993, 137.01671766481164,
    130.91449411973164, 124.23360024179601, 119.36133353483001, 114.48906682786401,
    109.616800120898, 104.744533413932, 99.872266706966, 95.0,
    76.66666666666667, 58.333333333333336, 40.0, 47.5,
    210.0, 308.75, 407.5, 506.25,
    605.0, 703.75, 802.5, 901.25,
    1000.0, 1000.0, 1000.0, 1000.0,
]

COARSE_SHIFT_7 = [
    47, 47, 47, 47, 47, 51, 54, 57, 59, 61, 62, 62, 61, 60, 58, 56, 53, 49, 47, 45,
    42, 40, 37, 35, 25, 15, 5, 9, 89, 128, 163, 194, 222, 248, 255, 255, 255, 255, 255, 255,
]

HZ_SHIFT_7 = [
    179.79684922520178, 179.79684922520178, 179.79684922520178, 179.79684922520178,
    179.79684922520178, 190.07792209463196, 199.81390768890287, 208.48861845385852,
    215.642134056892, 220.89518568263856, 223.96926430452933, 224.70138682139267,
    223.05273718038384, 219.110724346688, 213.08434800948655, 205.2931177276015,
    196.15011300532464, 186.14008242815157, 178.83993074067376, 171.53977905319596,
    164.23962736571815, 156.93947567824034, 149.63932399076256, 142.33917230328476,
    114.87020922721226, 87.40124615113976, 59.93228307506726, 71.16958615164238,
    314.6444861441031, 462.60230998567545, 610.5601338272477, 758.51795766882,
    906.4757815103923, 1054.4336053519646, 1202.3914291935369, 1350.3492530351093,
    1498.3070768766815, 1498.3070768766815, 1498.3070768766815, 1498.3070768766815,
]


class _GivenCurve:
    """An estimator stand-in that returns a fixed curve, as the scratch script's did."""

    def __init__(self, f0: np.ndarray) -> None:
        self._f0 = f0

    def f0(self, audio16k: np.ndarray, threshold: float = 0.03) -> np.ndarray:
        return self._f0.copy()


@pytest.mark.parametrize(
    "semitones, coarse, hz", [(0, COARSE_SHIFT_0, HZ_SHIFT_0), (7, COARSE_SHIFT_7, HZ_SHIFT_7)]
)
def test_fill_shift_and_coarse_match_the_webui(semitones, coarse, hz):
    curve = golden_f0_curve()
    frames = curve.size
    bins, track = pitch.track_pitch(
        np.zeros(frames * 160), "rmvpe", frames, semitones, rmvpe=_GivenCurve(curve)
    )
    assert bins.tolist() == coarse
    # The pipeline hands the synthesizer float32 Hz, as the WebUI's pitchf.
    np.testing.assert_array_equal(track, np.asarray(hz, dtype=np.float32))


def test_fill_unvoiced_matches_the_webui_before_the_shift():
    np.testing.assert_array_equal(pitch.fill_unvoiced(golden_f0_curve()), HZ_SHIFT_0)


def test_nothing_voiced_stays_zero():
    bins, track = pitch.track_pitch(
        np.zeros(12 * 160), "rmvpe", 12, 3, rmvpe=_GivenCurve(np.zeros(12))
    )
    assert bins.tolist() == [1] * 12
    assert not track.any()
