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


def test_real_cts_made_hard_change_the_ct_as_each_variant_says(shared_data: Path) -> None:
    first = quality_cases.REAL["ircadb-01-patient1"][0]
    original, reference = first(shared_data)
    cases = next(quality_cases.real_hard_cases(shared_data))  # IRCADb patient 1, the first real CT
    assert [c.name for c in cases] == [f"ircadb-01-patient1-{v}" for v in quality_cases.REAL_VARIANTS]
    ct = original.array.astype(np.float32)
    liver = reference > 0
    changed = {c.facts["variant"]: c.volume.array - ct for c in cases}
    for case in cases:
        assert np.array_equal(case.reference, reference) and np.allclose(case.volume.affine, original.affine)
    offset = float(changed["hu_offset"].flat[0])
    assert 35 <= abs(offset) <= 60 and np.allclose(changed["hu_offset"], offset)  # the whole scan, one shift
    assert not changed["low_contrast"][~liver].any() and changed["low_contrast"][liver].max() < 0  # the liver only, darker
    assert not changed["big_lesions"][~liver].any() and (changed["big_lesions"][liver] < -20).mean() > 0.02  # lesions inside
    assert changed["noise"][liver].std() > 20  # 25-60 HU of added noise
    assert 30 < cases[0].facts["contrast_hu"] < 200 and 5 <= cases[0].facts["noise_hu"] <= 40  # measured in the reference
