"""The quality benchmark's hard phantoms (benchmarks/quality_cases.py): what a variant promises."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import quality_cases  # noqa: E402

from livseg.phantom.generator import make_phantom  # noqa: E402


def test_low_contrast_moves_the_liver_and_keeps_its_tumours_between_water_and_liver() -> None:
    # seed 2018 (a calibration phantom, procedural liver) has tumours; the variant once shifted them
    # as far as the liver, to fat density (-17 to -51 HU measured on three phantoms)
    phantom = make_phantom(2018, scan_ranges=quality_cases.builtin.SCAN_RANGES, debug=True)
    liver, tumour = phantom.labels == 1, phantom.labels == 2
    assert tumour.sum() > 1000
    ct = quality_cases.harden(phantom, "low_contrast", np.random.default_rng(5))
    moved = ct - phantom.ct
    shift = float(np.median(moved[liver]))
    liver_hu = float(phantom.facts["contrast_hu"])
    assert shift < -10 and np.allclose(moved[liver], shift, atol=1e-3)  # one shift, towards the soft tissue
    share = min(max(float(np.median(phantom.ct[tumour])) / liver_hu, 0.0), 1.0)
    assert 0.0 < share < 1.0
    assert np.allclose(moved[tumour], shift * share, atol=1e-3)  # the same shift times tumour HU / liver HU
    assert not moved[phantom.labels == 0].any()  # nothing else changed
    assert 0.0 < np.median(ct[tumour]) < np.median(ct[liver])  # unenhanced: between water and the liver
