"""livseg.pacs.select: which series of a study is segmented, decided from hand-made headers."""

from __future__ import annotations

import pytest

from livseg.errors import PacsError
from livseg.pacs.client import SeriesInfo
from livseg.pacs.select import check_series, choose_series

CT = "1.2.840.10008.5.1.4.1.1.2"
AXIAL, CORONAL = [1, 0, 0, 0, 1, 0], [1, 0, 0, 0, 0, -1]


def headers(n: int, step: float = 1.6, *, orientation: list = AXIAL, sop: str = CT, image_type: tuple = ("ORIGINAL", "PRIMARY"),
            skip: int | None = None) -> list[dict]:
    """DICOM JSON headers of ``n`` slices ``step`` mm apart along the orientation's normal."""
    normal = [orientation[1] * orientation[5] - orientation[2] * orientation[4],
              orientation[2] * orientation[3] - orientation[0] * orientation[5],
              orientation[0] * orientation[4] - orientation[1] * orientation[3]]
    items = []
    for k in range(n + (skip is not None)):
        if k == skip:
            continue
        items.append({
            "00080016": {"vr": "UI", "Value": [sop]}, "00080008": {"vr": "CS", "Value": list(image_type)},
            "00200032": {"vr": "DS", "Value": [10 + k * step * v for v in normal]},
            "00200037": {"vr": "DS", "Value": orientation}, "00280030": {"vr": "DS", "Value": [0.7, 0.7]},
            "00280010": {"vr": "US", "Value": [512]}, "00280011": {"vr": "US", "Value": [512]},
        })
    return items


def series(number: int, modality: str = "CT", description: str = "") -> SeriesInfo:
    return SeriesInfo("1.2.3", f"1.2.3.{number}", modality=modality, description=description, number=number)


@pytest.mark.parametrize("info, items, plane, reason", [
    (series(1, "MR"), [], "", "modality MR, not CT"),
    (series(1), headers(2, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")), "", "a localizer (scout)"),
    (series(1), headers(5), "", "5 images: too few slices for a liver (at least 8)"),
    (series(1), headers(40, sop="1.2.840.10008.5.1.4.1.1.2.1"), "", "enhanced (multi-frame) CT"),
    (series(1), headers(40, sop="1.2.840.10008.5.1.4.1.1.7"), "", "not CT images (SOP class 1.2.840.10008.5.1.4.1.1.7)"),
    (series(1), headers(40, skip=20), "axial", "slice gap of 3.20 mm"),
    (series(1), headers(40, orientation=CORONAL), "coronal", "40 coronal slices of 512x512, 1.60 mm apart; livseg picks axial"),
])
def test_series_that_are_not_chosen_say_why(info: SeriesInfo, items: list, plane: str, reason: str) -> None:
    check = check_series(info, items)
    assert not check.usable and check.plane == plane and reason in check.reason


def test_an_axial_ct_stack_is_usable() -> None:
    check = check_series(series(2), headers(129))
    assert check.usable and check.slices == 129 and check.spacing_mm == pytest.approx(1.6)
    assert check.reason == "129 axial slices of 512x512, 1.60 mm apart"


def test_the_thinnest_complete_axial_series_is_chosen() -> None:
    checks = [
        check_series(series(1), headers(3, image_type=("DERIVED", "LOCALIZER"))),
        check_series(series(2), headers(60, 5.0)),  # thick
        check_series(series(3), headers(100, 1.0, skip=50)),  # thinnest, but a slice is missing
        check_series(series(4), headers(200, 1.25)),
        check_series(series(5), headers(300, 1.25)),  # as thin, more slices: wins
        check_series(series(6), headers(300, 1.0, orientation=CORONAL)),  # a reformat
        check_series(series(7, "SEG"), []),
    ]
    assert choose_series(checks).series.number == 5
    assert choose_series(checks, series_uid="1.2.3.6").series.number == 6  # picked by hand: any plane
    with pytest.raises(PacsError, match="series 1.2.3.3 cannot be segmented: slice gap"):
        choose_series(checks, series_uid="1.2.3.3")
    with pytest.raises(PacsError, match="the study has no series 1.2.3.99; it holds series 1 .*: a localizer"):
        choose_series(checks, series_uid="1.2.3.99")
    with pytest.raises(PacsError, match="no axial CT series .*series 7 .*modality SEG, not CT.*pick one with --series"):
        choose_series([checks[0], checks[2], checks[5], checks[6]])
