"""Warnings about a result that is probably wrong although nothing was refused: an image whose
intensities are not CT in Hounsfield units, and a segmentation that found no liver at all.

The intensity rule: an abdominal CT holds air (about -1000 HU) around the body, in the bowel
and at the lung bases, so its darkest 1 % of voxels lies far below 0. When the 1st percentile is
above :data:`AIR_PERCENTILE_MAX_HU` (-500 HU) the image is probably not CT in HU: an MR image,
HU + 1024 stored without its rescale intercept, an image scaled to [0, 1], or a CT cropped to the
inside of the body, where the warning can be ignored. The network was trained on HU and can only
be trusted on them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AIR_PERCENTILE", "AIR_PERCENTILE_MAX_HU", "intensity_warning", "result_warnings"]

AIR_PERCENTILE = 1.0  # the darkest 1 % of voxels ...
AIR_PERCENTILE_MAX_HU = -500.0  # ... lies below this in any CT with air in it
_SAMPLE_VOXELS = 1 << 20  # the percentile of a strided sample of about a million voxels (milliseconds)


def intensity_warning(array: np.ndarray, source: str = "") -> str | None:
    """One sentence when ``array`` does not look like CT in HU (see the module docstring), else None."""
    step = max(1, int(round((array.size / _SAMPLE_VOXELS) ** (1 / 3))))
    sample = np.asarray(array[::step, ::step, ::step], dtype=np.float32)
    darkest = float(np.percentile(sample, AIR_PERCENTILE))
    if darkest <= AIR_PERCENTILE_MAX_HU:
        return None
    return (f"{source or 'image'}: intensities do not look like CT in HU (the darkest {AIR_PERCENTILE:g} % of voxels "
            f"is at {darkest:.0f} or above, where air in a CT is about -1000): an MR image, or HU + 1024 without its "
            "rescale intercept? the result is unreliable")


def result_warnings(array: np.ndarray, mask: np.ndarray, source: str = "") -> list[str]:
    """The warnings of one segmentation: :func:`intensity_warning` and an empty mask."""
    found = [w for w in (intensity_warning(array, source),) if w]
    if not np.any(mask):
        found.append(f"{source or 'image'}: no liver found (the mask is empty)" if not found else "no liver found")
    return found
