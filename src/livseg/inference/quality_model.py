"""The calibrated quality estimate: signals -> predicted Dice, a review flag and its reasons in words.

The map is deliberately small and inspectable (fitted by ``benchmarks/calibrate_quality.py``,
stored with how it was fitted in ``quality-v3.json`` beside this module)::

    predicted_dice = 1 - exp(intercept + sum_i weight_i * f_i(signal_i))

a linear model of the log of the Dice error, ``f_i`` the identity or ``log(signal + offset)``;
a signal that could not be computed takes its ``neutral`` value (the median of the calibration
cases). A case is flagged for review when ``predicted_dice < review_below`` (the prediction rounded
to the 4 decimals it is stored and shown with), when any signal lies
beyond every good mask of the calibration set (``flag_above``: the largest value among masks
with Dice >= 0.95; a mask unlike all of them is worth a look whatever the sum says), or when
the mask is empty. The reasons name, in words, every term beyond its ``limit`` (the value 95 %
of those good masks stayed under) and every signal beyond ``flag_above``, so a person knows
what to look at.

``stats["quality"]`` (see :func:`assess`) is read by other tools (the PACS watch loop records
``review`` and ``reasons``): its keys are stable.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

__all__ = ["QUALITY_FILE", "Feature", "QualityModel", "assess", "load_quality_model", "shipped_large_volume_ml",
           "shipped_shape_reference"]

QUALITY_FILE = Path(__file__).with_name("quality-v3.json")

# how each signal is put in words when it is beyond its limit: (what it means, format of the value)
_WORDS = {
    "uncertain_share": ("a wide band of uncertain probabilities around the liver", "{:.2f} of the mask's volume"),
    "boundary_band_mm": ("an unsharp boundary", "{:.1f} mm band of doubt"),
    "entropy_inside": ("the network is unsure inside the mask", "mean entropy {:.3f} bits"),
    "entropy_surface": ("the network is unsure where it drew the boundary", "mean entropy {:.3f} bits"),
    "removed_share": ("post-processing removed much of what the network called liver", "{:.1%} of the voxels"),
    "variation_disagreement": ("the mask changes when the CT is seen at a coarser scale", "{:.1%} of it differs"),
    "volume_excess": ("the mask is larger than real livers are (another organ taken for liver?)",
                      "{:.0%} above the LiTS 95th percentile"),
    "left_share": ("much of the mask lies at the liver's left end (a stomach or spleen taken for liver?)",
                   "{:.0%} of its volume"),
    "shape_distance": ("the mask's shape is unlike real livers", "{:.1f} robust SDs from LiTS livers"),
    "wrapped_dark_share": ("dark tissue that the liver wraps around lies outside the mask (a tumour left out?)",
                           "{:.1%} of the mask's volume"),
}


@dataclass(frozen=True)
class Feature:
    """One term of the predictor.

    Attributes:
        signal: the signal's name (a key of :func:`livseg.inference.quality.quality_signals`).
        weight: its coefficient on ``log(1 - Dice)``.
        log_offset: None for the signal itself, else ``log(signal + log_offset)``.
        neutral: the value used when the signal is None.
        limit: above this the signal is named as a reason (None: never).
    """

    signal: str
    weight: float
    log_offset: float | None = None
    neutral: float = 0.0
    limit: float | None = None

    def value(self, signals: Mapping[str, float | None]) -> float:
        """The transformed signal, with ``neutral`` for a missing one."""
        raw = signals.get(self.signal)
        x = self.neutral if raw is None or not math.isfinite(raw) else float(raw)
        return math.log(max(x + self.log_offset, 1e-12)) if self.log_offset is not None else x


@dataclass(frozen=True)
class QualityModel:
    """The predictor and review rule loaded from a quality JSON (see the module docstring)."""

    name: str
    intercept: float
    features: tuple[Feature, ...]
    review_below: float
    shape_reference: dict[str, dict[str, float]]
    fitted: str
    large_volume_ml: float = 2466.0  # the LiTS livers' 95th percentile on the 3 mm grid
    flag_above: dict[str, float] = field(default_factory=dict)  # signal -> the largest value of a good mask

    def predict_dice(self, signals: Mapping[str, float | None]) -> float:
        """The predicted Dice of a mask with these signals, in [0, 1]."""
        error = math.exp(self.intercept + sum(f.weight * f.value(signals) for f in self.features))
        return min(max(1.0 - error, 0.0), 1.0)


def load_quality_model(path: str | os.PathLike[str] | None = None) -> QualityModel:
    """Read a quality JSON (default: the shipped ``quality-v3.json``)."""
    data = json.loads(Path(path or QUALITY_FILE).read_text())
    predictor = data["predictor"]
    return QualityModel(
        name=str(data["name"]),
        intercept=float(predictor["intercept"]),
        features=tuple(Feature(**f) for f in predictor["features"]),
        review_below=float(predictor["review_below"]),
        shape_reference={k: {s: float(v) for s, v in d.items()} for k, d in data["shape_reference"].items()},
        fitted=str(data.get("fitted", "")),
        large_volume_ml=float(data["volume_reference"]["p95_ml"]),
        flag_above={k: float(v) for k, v in predictor.get("flag_above", {}).items()},
    )


@functools.lru_cache(maxsize=1)
def _shipped() -> QualityModel:
    return load_quality_model()


def shipped_shape_reference() -> dict[str, dict[str, float]]:
    """Medians and MADs of the shape descriptors of the 112 LiTS training livers (shipped)."""
    return _shipped().shape_reference


def shipped_large_volume_ml() -> float:
    """The liver volume (mL) that 95 % of the LiTS training livers stay under (shipped)."""
    return _shipped().large_volume_ml


def _words(signal: str, value: float, bound: float, bound_says: str) -> str:
    meaning, fmt = _WORDS.get(signal, (signal, "{:.3g}"))
    return f"{meaning}: {fmt.format(value)} ({bound_says} {fmt.format(bound)})"


def assess(signals: Mapping[str, float | None], model: QualityModel | None = None) -> dict[str, Any]:
    """The quality block of a prediction's statistics.

    Args:
        signals: from :func:`livseg.inference.quality.quality_signals`.
        model: the calibrated predictor (default: the shipped one).

    Returns:
        ``{"model", "signals", "predicted_dice", "review_below", "review", "reasons"}``:
        ``review`` a bool, ``reasons`` a list of sentences (empty when not flagged).
    """
    model = model or _shipped()
    # the number stored, compared and put in words is one and the same (4 decimals): a reason must
    # never say "0.945" of a block that stores 0.9445, nor "0.920 is below 0.92"
    predicted = round(model.predict_dice(signals), 4)
    reasons: list[str] = []
    if not signals.get("volume_ml"):
        reasons.append("the mask is empty: no liver found")
    else:
        beyond = {name: float(signals[name]) for name, bound in model.flag_above.items()  # type: ignore[arg-type]
                  if signals.get(name) is not None and float(signals[name]) > bound}  # type: ignore[arg-type]
        if predicted < model.review_below:
            reasons.append(f"predicted Dice {predicted:.4f} is below {model.review_below:g}")
        elif beyond:
            reasons.append(f"predicted Dice {predicted:.4f}, but a signal lies beyond every good mask of the calibration")
        if reasons:
            for feature in model.features:
                raw = signals.get(feature.signal)
                if feature.limit is not None and raw is not None and raw > feature.limit and feature.signal not in beyond:
                    reasons.append(_words(feature.signal, float(raw), feature.limit, "good masks: up to"))
            reasons.extend(_words(name, value, model.flag_above[name], "no good mask above") for name, value in beyond.items())
    return {
        "model": model.name,
        "signals": {k: (None if v is None else round(float(v), 6)) for k, v in signals.items()},
        "predicted_dice": predicted,
        "review_below": model.review_below,
        "review": bool(reasons),
        "reasons": reasons,
    }
