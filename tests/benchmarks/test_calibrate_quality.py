"""The quality benchmark's shipping rule (benchmarks/calibrate_quality.py): when a refit may replace
the shipped estimate. Rows and predictors are made by hand so that every flag is known."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import calibrate_quality  # noqa: E402

from livseg.inference.quality_model import Feature, QualityModel  # noqa: E402


def estimate(review_below: float, name: str = "quality-v3") -> QualityModel:
    """predicted Dice = 1 - exp(s): a row's signal ``s`` says its predicted Dice exactly."""
    return QualityModel(name, 0.0, (Feature("s", 1.0),), review_below, {}, "by hand")


def row(case: str, dice: float, predicted: float, model: str = "builtin") -> dict:
    return {"case": case, "model": model, "dice": dice, "signals": {"volume_ml": 1500.0, "s": math.log(1.0 - predicted)}}


# ten claim rows, predicted Dice rising with the actual one (Spearman 1): two under 0.90, five good
CLAIM = [row("bad-a", 0.85, 0.910), row("bad-b", 0.88, 0.935), row("mid-a", 0.91, 0.940), row("mid-b", 0.92, 0.945),
         row("mid-c", 0.94, 0.947), row("good-a", 0.95, 0.952), row("good-b", 0.96, 0.955), row("good-c", 0.97, 0.960),
         row("good-d", 0.98, 0.965), row("good-e", 0.99, 0.970)]


def test_a_refit_that_flags_more_bad_masks_within_the_budget_may_replace_the_shipped_one() -> None:
    shipped, candidate = estimate(0.92), estimate(0.953, "quality-v4")  # flags bad-a / bad-a, bad-b, good-a
    assert calibrate_quality.shipping_verdict(candidate, shipped, CLAIM, []) == []


def test_a_refit_that_flags_fewer_bad_masks_may_not() -> None:
    shipped, candidate = estimate(0.94), estimate(0.92, "quality-v4")  # 2/2 flagged -> 1/2
    assert calibrate_quality.shipping_verdict(candidate, shipped, CLAIM, []) == [
        "masks under Dice 0.9 flagged 1/2 < the shipped 2/2"]


def test_a_refit_that_flags_more_than_one_good_mask_in_five_may_not() -> None:
    failures = calibrate_quality.shipping_verdict(estimate(0.956, "quality-v4"), estimate(0.92), CLAIM, [])
    assert failures == ["good masks flagged 2/5 > 1 in 5"]  # good-a and good-b


def test_a_refit_that_ranks_badly_may_not() -> None:
    reversed_rows = [dict(r, dice=d) for r, d in zip(CLAIM, [r["dice"] for r in reversed(CLAIM)])]
    failures = calibrate_quality.shipping_verdict(estimate(0.0, "quality-v4"), estimate(0.0), reversed_rows, [])
    assert failures == ["Spearman -1.000 < 0.6"]


@pytest.mark.parametrize(("real", "why"), [
    ([row("ircadb", 0.950, 0.940)], "newly flags good real CTs: ircadb"),  # v4 flags it, v3 does not
    ([row("lits-small", 0.849, 0.925)], "no longer flags real CTs under Dice 0.9: lits-small"),
])
def test_real_never_trained_on_cases_keep_their_flags(real: list[dict], why: str) -> None:
    shipped = estimate(0.93)
    candidate = estimate(0.945, "quality-v4") if real[0]["dice"] > 0.9 else estimate(0.92, "quality-v4")
    assert why in calibrate_quality.shipping_verdict(candidate, shipped, CLAIM, real)


def test_the_refit_is_named_as_the_next_version() -> None:
    assert calibrate_quality.next_name("quality-v3") == "quality-v4"
    assert calibrate_quality.next_name("quality-v9") == "quality-v10"
