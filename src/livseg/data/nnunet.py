"""nnU-Net raw datasets and the ``dataset.json`` label names of nnU-Net and MSD folders.

Layout (nnU-Net v2 "raw")::

    DatasetXXX_Name/dataset.json      {"channel_names": {"0": "CT"}, "labels": {"background": 0,
                                       "liver": 1, "tumor": 2}, "numTraining": N, "file_ending": ".nii.gz"}
    DatasetXXX_Name/imagesTr/<case>_0000.nii.gz    channel 0 of each training case
    DatasetXXX_Name/labelsTr/<case>.nii.gz
    DatasetXXX_Name/imagesTs/<case>_0000.nii.gz    (optional) test images without labels

livseg reads one CT channel; a dataset with more channels is refused. The case id is nnU-Net's
case identifier (``liver_000``). MSD's dataset.json writes its labels the other way round
(``{"0": "background", "1": "liver", "2": "cancer"}``); :func:`dataset_labels` reads both.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from livseg.errors import DatasetError, one_line

DATASET_JSON = "dataset.json"
CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})(?P<ending>\.[A-Za-z.]+)$")  # liver_000_0000.nii.gz
_TUMOUR_WORDS = ("tumour", "tumor", "lesion", "cancer", "metastas")
_LONE_TUMOUR_NAMES = {"tumour", "tumor", "tumours", "tumors", "lesion", "lesions", "cancer", "metastases"}


def dataset_root(path: Path) -> Path | None:
    """``path`` or the one folder inside it (``Task03_Liver``, ``Dataset003_Liver``) that holds
    ``imagesTr`` (an MSD or nnU-Net raw dataset), else None."""
    if not path.is_dir():
        return None
    for folder in (path, *sorted(p for p in path.iterdir() if p.is_dir())):
        if (folder / "imagesTr").is_dir():
            return folder
    return None


def read_dataset_json(root: Path) -> dict[str, Any]:
    """The ``dataset.json`` of a dataset folder ({} when there is none).

    Raises:
        DatasetError: the file exists but is not a JSON object.
    """
    path = root / DATASET_JSON
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read dataset.json ({one_line(exc)})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def is_nnunet_raw(root: Path) -> bool:
    """True for an nnU-Net v2 raw dataset: dataset.json with channel_names or file_ending, or
    images named ``<case>_<4-digit channel>`` (MSD's ``liver_12.nii.gz`` has no channel)."""
    info = read_dataset_json(root)
    if "channel_names" in info or "file_ending" in info:
        return True
    images = [p for p in (root / "imagesTr").iterdir() if p.is_file() and not p.name.startswith(".")]
    return bool(images) and all(CHANNEL_FILE.match(p.name) for p in images)


def check_one_channel(root: Path, image_names: list[str]) -> None:
    """Refuse a dataset with more than one input channel (livseg segments one CT).

    Raises:
        DatasetError: dataset.json names several channels, or files of channel 0001+ exist.
    """
    channels = read_dataset_json(root).get("channel_names") or read_dataset_json(root).get("modality") or {}
    names = [str(v) for v in channels.values()] if isinstance(channels, dict) else []
    numbers = {m.group("channel") for m in map(CHANNEL_FILE.match, image_names) if m}
    if len(names) > 1 or len(numbers) > 1:
        listed = ", ".join(names) if len(names) > 1 else ", ".join(sorted(numbers))
        raise DatasetError(
            f"{root}: multi-channel nnU-Net dataset (channels: {listed}); livseg reads one CT channel per case"
        )


def nnunet_cases(root: Path, problems: list[str]) -> list[tuple[str, Path, Path | None]]:
    """``(case id, image, label or None)`` of an nnU-Net raw dataset's training cases.

    Labels without an image are appended to ``problems``.

    Raises:
        DatasetError: a multi-channel dataset.
    """
    ending = str(read_dataset_json(root).get("file_ending", ".nii.gz"))
    files = sorted(p for p in (root / "imagesTr").iterdir() if p.is_file() and not p.name.startswith("."))
    check_one_channel(root, [p.name for p in files])
    images = {}
    for file in files:
        match = CHANNEL_FILE.match(file.name)
        if match and file.name.endswith(ending):
            images[file.name[: -len(ending) - 5]] = file  # drop "_0000" and the ending
    labels_dir = root / "labelsTr"
    labels = {}
    if labels_dir.is_dir():
        labels = {p.name[: -len(ending)]: p for p in labels_dir.iterdir()
                  if p.is_file() and p.name.endswith(ending) and not p.name.startswith(".")}
    problems.extend(f"{case}: label {labels[case]} has no image" for case in sorted(set(labels) - set(images)))
    return [(case, image, labels.get(case)) for case, image in images.items()]


def dataset_labels(path: Path) -> dict[str, tuple[int, ...]]:
    """Liver and tumour label values named in the dataset.json of an nnU-Net or MSD folder.

    nnU-Net writes ``{"liver": 1, "tumor": 2}`` (a value may be a list for region-based
    labels), MSD ``{"1": "liver", "2": "cancer"}``. "liver" is the liver; a tumour is a name
    with tumour, tumor, lesion, cancer or metastasis in it that is either alone or about the
    liver ("liver_lesion", not "kidney tumor").

    Returns:
        ``{"liver": (values...), "tumour": (values...)}`` with the keys that were found; {}
        for a folder without dataset.json labels.

    Raises:
        DatasetError: a label whose value is not an integer 0-255 (or a list of them), e.g.
            ``"liver": true`` or ``"liver": 300``: training on it would give empty targets.
    """
    root = dataset_root(path)
    labels = read_dataset_json(root).get("labels") if root is not None else None
    if labels is None:
        return {}
    where = (root / DATASET_JSON) if root is not None else path
    if not isinstance(labels, dict):
        raise DatasetError(f"{where}: 'labels' is a {type(labels).__name__}; expected an object of name: value")
    pairs: list[tuple[str, Any]] = []
    for key, value in labels.items():
        if isinstance(value, str) and str(key).lstrip("-").isdigit():  # MSD: value -> name
            pairs.append((value, int(key)))
        else:
            pairs.append((str(key), value))
    found: dict[str, list[int]] = {}
    for name, value in pairs:
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in values):
            raise DatasetError(f"{where}: label {name!r} has value {value!r}; expected an integer from 0 to 255 (or a "
                               "list of them, nnU-Net's regions), as the label maps store it")
        kind = _kind(name)
        if kind:
            found.setdefault(kind, []).extend(values)
    return {kind: tuple(sorted(set(values))) for kind, values in found.items()}


def _kind(name: str) -> str | None:
    """'liver', 'tumour' or None for a dataset.json label name."""
    words = " ".join(re.split(r"[\s_\-]+", name.lower())).strip()
    if words == "liver":
        return "liver"
    if any(word in words for word in _TUMOUR_WORDS) and (
        words in _LONE_TUMOUR_NAMES or "liver" in words or "hepat" in words
    ):
        return "tumour"
    return None
