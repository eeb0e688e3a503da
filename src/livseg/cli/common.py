"""What several subcommands share: the ``--liver-labels`` option and its check."""

from __future__ import annotations

import argparse


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
