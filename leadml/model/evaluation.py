"""Out-of-time evaluation: discrimination, calibration, lift and tiers, model beside baseline.

Expected calibration error (ECE) is our own: predictions are put in ``n_bins`` equal-width bins
over [0, 1] (the last bin closed), and ECE is the mean over bins of
``|mean predicted - observed rate|`` weighted by the bin's share of rows. Empty bins weigh nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from leadml.funnel import TIERS

__all__ = [
    "calibration_by_month",
    "calibration_table",
    "evaluate",
    "expected_calibration_error",
    "lift_at",
    "tier_conversion",
]


def calibration_table(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Per equal-width bin: rows, mean predicted probability and observed rate."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    df = pd.DataFrame({"bin": bins, "y": y, "p": p})
    t = df.groupby("bin").agg(rows=("y", "size"), predicted=("p", "mean"), observed=("y", "mean"))
    return t.reindex(range(n_bins)).fillna({"rows": 0}).astype({"rows": int})


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """ECE with equal-width bins (see module docstring).

    Examples
    --------
    >>> expected_calibration_error([0, 1, 1, 1], [0.05, 0.05, 0.95, 0.95], n_bins=10)
    0.25
    """
    t = calibration_table(np.asarray(y), np.asarray(p), n_bins).dropna()
    if t["rows"].sum() == 0:
        return float("nan")
    w = t["rows"] / t["rows"].sum()
    return round(float((w * (t["predicted"] - t["observed"]).abs()).sum()), 12)


def lift_at(y: np.ndarray, p: np.ndarray, share: float) -> tuple[float, float]:
    """(lift, capture) of the top ``share`` of rows by score: the top's positive rate over the
    overall rate, and the fraction of all positives it holds. Ties broken by row order."""
    y = np.asarray(y, float)
    n = max(1, int(round(share * len(y))))
    top = np.argsort(-np.asarray(p), kind="stable")[:n]
    base = y.mean()
    if base == 0:
        return float("nan"), float("nan")
    return float(y[top].mean() / base), float(y[top].sum() / y.sum())


def tier_conversion(y: np.ndarray, tiers: np.ndarray) -> dict[str, dict[str, float]]:
    """Observed conversion rate and share of rows per tier A–D."""
    y, tiers = np.asarray(y, float), np.asarray(tiers)
    out: dict[str, dict[str, float]] = {}
    for t in TIERS:
        m = tiers == t
        out[t] = {
            "share": float(m.mean()) if len(m) else 0.0,
            "rows": int(m.sum()),
            "conversion_rate": float(y[m].mean()) if m.any() else float("nan"),
        }
    return out


def calibration_by_month(y: np.ndarray, p: np.ndarray, as_of: pd.Series) -> pd.DataFrame:
    """Calibration-in-the-large per as_of month: mean predicted vs observed rate."""
    df = pd.DataFrame(
        {"month": pd.to_datetime(as_of).dt.to_period("M").astype(str).to_numpy(), "y": y, "p": p}
    )
    return df.groupby("month").agg(
        rows=("y", "size"), predicted=("p", "mean"), observed=("y", "mean")
    )


def evaluate(
    y: np.ndarray, p: np.ndarray, *, tiers: np.ndarray | None = None, n_bins: int = 10
) -> dict[str, Any]:
    """The metrics of one model on one window (all floats; NaN where undefined)."""
    y = np.asarray(y, int)
    p = np.clip(np.asarray(p, float), 1e-12, 1 - 1e-12)
    both = len(np.unique(y)) == 2
    lift10, cap10 = lift_at(y, p, 0.10)
    lift20, cap20 = lift_at(y, p, 0.20)
    m: dict[str, Any] = {
        "rows": int(len(y)),
        "positive_rate": float(y.mean()) if len(y) else float("nan"),
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p, n_bins),
        "lift_10": lift10,
        "capture_10": cap10,
        "lift_20": lift20,
        "capture_20": cap20,
    }
    if tiers is not None:
        for t, v in tier_conversion(y, tiers).items():
            m[f"conversion_tier_{t}"] = v["conversion_rate"]
    return m
