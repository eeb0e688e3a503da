"""Figures and reports: training curves, case panels, previews, HTML summaries.

Everything here draws with matplotlib's non-interactive Agg backend (no screen needed) and
writes through :func:`livseg.io.atomic_output`, so a figure is either complete or absent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)

from livseg.io import atomic_output  # noqa: E402


def save_figure(fig: "plt.Figure", path: str | os.PathLike[str], *, overwrite: bool = True, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically and close it."""
    try:
        with atomic_output(path, overwrite=overwrite) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return Path(path)


def plot_curves(history: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Training curves: train loss and validation Dice per epoch, side by side.

    Args:
        history: one mapping per epoch with keys ``epoch``, ``train_loss`` and ``val_dice``
            (``val_accuracy`` is drawn too when present).
        path: PNG to write.
    """
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o", ms=3, label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("AdvancedComboLoss")
    ax_loss.set_title("training loss")
    ax_loss.grid(alpha=0.3)
    ax_dice.plot(epochs, [h["val_dice"] for h in history], marker="o", ms=3, color="tab:green", label="val Dice")
    if all("val_accuracy" in h for h in history):
        ax_dice.plot(epochs, [h["val_accuracy"] for h in history], ls="--", color="tab:gray", label="val accuracy")
    ax_dice.set_xlabel("epoch")
    ax_dice.set_ylim(0, 1.02)
    ax_dice.set_title("validation (network grid, threshold 0.5)")
    ax_dice.grid(alpha=0.3)
    ax_dice.legend(loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)
