"""What several subcommands share: the ``--liver-labels`` option and its check, the dataset and
preset help texts, and the ``--device`` option."""

from __future__ import annotations

import argparse

DATA_HELP = ("dataset folder (LiTS volume-N/segmentation-N, MSD Task03_Liver imagesTr/labelsTr, or nnU-Net raw "
             "DatasetXXX_Name with dataset.json), or a CSV of image,label[,case_id]")


def presets_help() -> str:
    """The preset names, for --preset help texts (every preset, stage 2's included)."""
    from livseg.config import PRESETS

    return ", ".join(sorted(PRESETS))


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")


def add_liver_labels(p: argparse.ArgumentParser) -> None:
    p.add_argument("--liver-labels", metavar="V[,V...]", default=None,
                   help="label values that count as liver (preprocess.liver_labels; default 1,2 as LiTS, where 2 "
                   "is tumour inside the liver; e.g. 5 for TotalSegmentator masks)")


def liver_labels_override(text: str | None) -> list[str]:
    """``--liver-labels 1,2`` as a ``--set`` override (checked like one)."""
    from livseg.errors import ConfigError

    if text is None:
        return []
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in parts):
        raise ConfigError(f"--liver-labels: expected label values like 1,2 or 5, got {text!r}")
    return [f"preprocess.liver_labels={','.join(parts)}"]
