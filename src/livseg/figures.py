"""Figures and reports: training curves, case panels, previews, HTML summaries.

Everything here draws with matplotlib's non-interactive Agg backend (no screen needed) and
writes through :func:`livseg.data.io.files.atomic_output`, so a figure is either complete or absent.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)

from livseg.data.io.files import atomic_output  # noqa: E402
from livseg.data.io.volume import spacing_from_affine
from livseg.data.preprocessing import to_ras  # noqa: E402


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
            (``val_accuracy`` and stage 2's ``val_tumour_dice`` are drawn too when present).
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
    if all("val_tumour_dice" in h for h in history):  # stage 2 of a cascade
        ax_dice.plot(epochs, [h["val_tumour_dice"] for h in history], marker="o", ms=3, color="tab:cyan",
                     label="val tumour Dice")
    ax_dice.set_xlabel("epoch")
    ax_dice.set_ylim(0, 1.02)
    ax_dice.set_title("validation (network grid, threshold 0.5)")
    ax_dice.grid(alpha=0.3)
    ax_dice.legend(loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)


# ------------------------------------------------------------------ previews, case panels, HTML
# Slices are shown in the radiological convention: the volume is first turned (flips and axis
# swaps only, as views) to the closest RAS+ orientation, then the patient's right is drawn on
# the image's left, anterior up in axial views and superior up in coronal/sagittal views, with
# the orientation letters on the edges. Pixel aspect ratios come from the voxel spacing.

DISPLAY_WINDOW_HU = (-160.0, 240.0)  # abdominal soft-tissue window (W400, L40)
TUMOUR_COLOUR = "cyan"  # tumour outlines; the liver's are red


def _plane(array: np.ndarray, plane: str, index: int) -> np.ndarray:
    """2D display image of a RAS array; rows top->bottom, columns left->right on screen."""
    if plane == "axial":  # patient right on the left, anterior up
        return array[::-1, ::-1, index].T
    if plane == "coronal":  # patient right on the left, superior up
        return array[::-1, index, ::-1].T
    return array[index, ::-1, ::-1].T  # sagittal: anterior on the left, superior up


_LETTERS = {"axial": "RLAP", "coronal": "RLSI", "sagittal": "APSI"}  # left, right, top, bottom


def _aspect(plane: str, spacing: Sequence[float]) -> float:
    """imshow aspect (pixel height / width in mm) of a plane of a RAS array."""
    sx, sy, sz = spacing
    return {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}[plane]


def _label_orientation(ax: Any, plane: str) -> None:
    left, right, top, bottom = _LETTERS[plane]
    style = {"color": "yellow", "fontsize": 9, "transform": ax.transAxes, "fontweight": "bold",
             "bbox": {"facecolor": "black", "alpha": 0.5, "pad": 1, "edgecolor": "none"}}  # readable on white
    ax.text(0.02, 0.5, left, ha="left", va="center", **style)
    ax.text(0.98, 0.5, right, ha="right", va="center", **style)
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)


def _show(ax: Any, image: np.ndarray, plane: str, spacing: Sequence[float], window: Sequence[float]) -> None:
    ax.imshow(image, cmap="gray", vmin=window[0], vmax=window[1], aspect=_aspect(plane, spacing), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _centroid(mask: np.ndarray) -> list[int]:
    """Voxel index of the mask's centre of mass (the array centre when empty), from per-axis
    profiles: np.nonzero on a whole-abdomen mask would allocate gigabytes."""
    centre = []
    for axis, n in enumerate(mask.shape):
        profile = mask.sum(axis=tuple(i for i in range(3) if i != axis), dtype=np.int64)
        total = profile.sum()
        centre.append(int(round(float(profile @ np.arange(n)) / total)) if total else n // 2)
    return centre


def plot_preview(
    image: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike[str],
    *,
    title: str = "",
    window: Sequence[float] = DISPLAY_WINDOW_HU,
    review: Sequence[str] | None = None,
) -> Path:
    """Axial, coronal and sagittal slices through the liver centre with the mask outlined.

    The liver (every non-zero voxel: tumour counts as liver) is outlined in red; tumour (label 2
    of a cascade's 0/1/2 map) in a second colour, cyan.

    Args:
        image: CT in HU, axes (x, y, z) as :func:`livseg.data.io.volume.load_volume` gives them.
        mask: liver mask on the same grid (non-zero = liver; 2 = tumour).
        affine: the CT's voxel-to-RAS affine (used for orientation and aspect ratio).
        path: PNG to write (atomically).
        title: figure title, e.g. the case name.
        window: display HU range.
        review: the reasons of a mask flagged for review (``stats["quality"]["reasons"]``): the
            figure then gets a red frame, "REVIEW" in its title and the reasons under it.

    Returns:
        ``path``. The slices go through the mask's centroid, or the volume's centre when the
        mask is empty; radiological convention, orientation letters on every panel.
    """
    ras_image, ras_affine = to_ras(image, affine)
    ras_mask = to_ras(np.asarray(mask) != 0, affine)[0]
    ras_tumour = to_ras(np.asarray(mask) == 2, affine)[0]
    spacing = spacing_from_affine(ras_affine)
    # through the largest tumour's centre when there is tumour, else through the liver's
    centre = _centroid(ras_tumour if ras_tumour.any() else ras_mask)
    planes = (("axial", 2), ("coronal", 1), ("sagittal", 0))
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    for ax, (plane, axis) in zip(axes, planes):
        index = centre[axis]
        _show(ax, _plane(ras_image, plane, index), plane, spacing, window)
        for outline_mask, colour in ((ras_mask, "red"), (ras_tumour, TUMOUR_COLOUR)):
            outline = _plane(outline_mask, plane, index)
            if outline.any():
                ax.contour(outline.astype(np.float32), levels=[0.5], colors=colour, linewidths=0.8)
        _label_orientation(ax, plane)
        ax.set_title(f"{plane} {index + 1}/{ras_image.shape[axis]}", fontsize=9)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    label = f"liver {float(np.count_nonzero(ras_mask)) * voxel_ml:.0f} mL"
    if ras_tumour.any():
        label += f", tumour {float(np.count_nonzero(ras_tumour)) * voxel_ml:.1f} mL (cyan)"
    if review is None:
        fig.suptitle(f"{title}  {label}".strip(), fontsize=11)
        fig.tight_layout()
        return save_figure(fig, path)
    fig.suptitle(f"REVIEW  {title}  {label}".strip(), fontsize=11, color="red", fontweight="bold")
    fig.text(0.5, 0.01, "\n".join(review), ha="center", va="bottom", fontsize=8, color="red")
    fig.tight_layout(rect=(0, 0.03 + 0.03 * len(review), 1, 1))
    fig.patches.append(matplotlib.patches.Rectangle((0.003, 0.003), 0.994, 0.994, transform=fig.transFigure,
                                                    fill=False, edgecolor="red", linewidth=4))
    return save_figure(fig, path)


def plot_quality_scatter(
    points: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    review_below: float | None = None,
    title: str = "predicted against actual Dice",
) -> Path:
    """Scatter plot of the quality estimate: predicted Dice (x) against actual Dice (y).

    Args:
        points: one mapping per case with ``predicted_dice``, ``dice`` and optionally ``group``
            (one colour and legend entry per group, in first-seen order) and ``review`` (a bool:
            flagged cases are drawn filled, the others hollow).
        path: PNG to write (atomically).
        review_below: draws the review threshold (a vertical line) when given.
        title: figure title.

    Returns:
        ``path``. Two panels: every case, and the square 0.8-1.0 where good and barely good masks
        lie; dotted lines at Dice 0.90 and 0.95, the diagonal in grey.
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for point in points:
        groups.setdefault(str(point.get("group", "cases")), []).append(point)
    markers = "os^Dv<>p"
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2))
    for k, (name, members) in enumerate(groups.items()):
        for flagged in (True, False):
            chosen = [m for m in members if bool(m.get("review")) is flagged]
            x = [float(m["predicted_dice"]) for m in chosen]
            y = [float(m["dice"]) for m in chosen]
            label = f"{name}: {len(chosen)} {'flagged' if flagged else 'not flagged'}"
            for ax in axes:
                ax.scatter(x, y, s=22, marker=markers[k % len(markers)], facecolors=f"C{k}" if flagged else "none",
                           edgecolors=f"C{k}", linewidths=0.9, alpha=0.8, label=label if ax is axes[0] else None)
    for ax, low in zip(axes, (0.0, 0.8)):
        ax.plot([low, 1], [low, 1], color="0.75", lw=0.8)
        for level in (0.90, 0.95):
            ax.axhline(level, color="0.6", lw=0.8, ls=":")
        if review_below is not None:
            ax.axvline(review_below, color="red", lw=1, ls="--")
        ax.set_xlim(low, 1.0)
        ax.set_ylim(low, 1.0)
        ax.set_xlabel("predicted Dice (stats['quality']['predicted_dice'])")
        ax.set_ylabel("actual Dice (each CT's own grid)")
    if review_below is not None:
        axes[1].text(review_below - 0.003, 0.805, "flagged: predicted Dice left of this line", ha="right",
                     fontsize=8, color="red")
    axes[0].legend(loc="upper left", fontsize=8)
    axes[1].set_title("zoom: Dice 0.8-1.0", fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_case_panels(
    image: np.ndarray,
    reference: np.ndarray,
    prediction: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike[str],
    *,
    title: str = "",
    window: Sequence[float] = DISPLAY_WINDOW_HU,
    tumour: bool = False,
) -> Path:
    """The paper's Fig. 4 for one case: CT slice, ground truth, prediction, side by side.

    The axial slice is the one with the most reference liver (the most predicted liver when the
    reference is empty), shown in the radiological convention at the physical aspect ratio.

    Args:
        image: CT in HU, axes (x, y, z).
        reference: ground-truth label map on the same grid (non-zero = liver).
        prediction: predicted mask on the same grid.
        affine: the grid's voxel-to-RAS affine.
        path: PNG to write (atomically).
        title: figure title (e.g. case id and Dice).
        window: display HU range.
        tumour: show labels 0/1/2 (a cascade's prediction): tumour brighter than liver in both
            label panels, on the slice with the most reference tumour (predicted if none).

    Returns:
        ``path``.
    """
    ras_image, ras_affine = to_ras(np.asarray(image), affine)
    top = 2 if tumour else 1
    ras_ref, ras_pred = (to_ras(np.minimum(np.asarray(a), top), affine)[0] for a in (reference, prediction))
    spacing = spacing_from_affine(ras_affine)
    shown = ras_ref if ras_ref.any() else ras_pred
    if tumour and (ras_ref == 2).any() | (ras_pred == 2).any():
        shown = ras_ref if (ras_ref == 2).any() else ras_pred
        per_slice = (shown == 2).sum(axis=(0, 1))
    else:
        per_slice = (shown > 0).sum(axis=(0, 1))
    index = int(np.argmax(per_slice))
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    panels = ((ras_image, "CT", window), (ras_ref, "ground truth", (0, top)), (ras_pred, "prediction", (0, top)))
    for ax, (array, name, win) in zip(axes, panels):
        _show(ax, _plane(array, "axial", index).astype(np.float32), "axial", spacing, win)
        _label_orientation(ax, "axial")
        ax.set_title(name, fontsize=10)
    fig.suptitle(f"{title}  axial slice {index + 1}/{ras_image.shape[2]}".strip(), fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "&ndash;"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"  # Dice to 4 places, mL/HU/mm to 0.1
    if value is None:
        return "&ndash;"
    return html.escape(str(value))


def write_html_report(
    rows: Sequence[Mapping[str, Any]],
    figures: Mapping[str, str | os.PathLike[str]],
    path: str | os.PathLike[str],
    *,
    title: str = "livseg report",
    notes: Sequence[str] = (),
) -> Path:
    """A small self-contained HTML page: a table of per-case values and the case figures.

    No scripts, stylesheets or images are fetched from elsewhere; figures are linked by paths
    relative to the page, so keep the page beside its figures when moving it.

    Args:
        rows: one mapping per table row; columns are the union of keys, in first-seen order.
            A ``case`` key, when present, links to that case's figure.
        figures: case name -> figure path (absolute, or relative to the page's folder).
        path: HTML file to write (atomically, replacing an older one).
        title: page title and heading.
        notes: paragraphs shown under the heading (e.g. how a summary treats empty masks).

    Returns:
        ``path``.
    """
    path = Path(path)
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)

    def link(figure: str | os.PathLike[str]) -> str:
        target = Path(figure)
        if target.is_absolute():
            target = Path(os.path.relpath(target, path.parent))
        return html.escape(target.as_posix(), quote=True)

    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}"
        "td:first-child{text-align:left}figure{display:inline-block;margin:0.5em}"
        "img{max-width:720px}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        *(f"<p>{html.escape(note)}</p>" for note in notes),
        "<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>",
    ]
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            text = _cell(value)
            if column == "case" and str(value) in figures:
                text = f'<a href="{link(figures[str(value)])}">{text}</a>'
            cells.append(f"<td>{text}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    for case, figure in figures.items():
        parts.append(
            f'<figure id="{html.escape(str(case), quote=True)}"><a href="{link(figure)}">'
            f'<img src="{link(figure)}" alt="{html.escape(str(case), quote=True)}"></a>'
            f"<figcaption>{html.escape(str(case))}</figcaption></figure>"
        )
    parts.append("</body></html>\n")
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    return path
