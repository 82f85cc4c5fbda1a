"""A trained stage model: booster, calibration, tiers and the feature spec it was built on.

This is the type every layer above shares (bundle, explain, serve, tracking), so it lives below
training: loading or explaining a model never imports the trainer.

- ``probability(X)``: the calibrated probability of promotion within the horizon, one per row;
- ``margin(X)``: the raw log-odds, LightGBM's plus a linear part's when there is one
  (:mod:`leadml.model.linear`: the margin the trees boost from, or a logistic regression
  blended beside them), which TreeSHAP plus the linear part's exact Shapley values explain
  exactly;
- ``tier(p)`` and ``to_score(p)``: the rep's A-D tier (thresholds fixed at training) and the
  0-100 score, ``round(100 p)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from leadml.data.features import FeatureSpec
from leadml.funnel import TIERS
from leadml.model.linear import LinearBase
from leadml.model.matrix import prediction_matrix
from leadml.model.trees import raw_margin

if TYPE_CHECKING:  # LightGBM takes a second to import (scikit-learn, SciPy): not until used
    import lightgbm as lgb

__all__ = ["Calibration", "StageModel", "tier_thresholds"]


@dataclass(frozen=True)
class Calibration:
    """Maps a raw margin to a probability. ``platt``: sigmoid(a*m + b); ``isotonic``: a step
    function interpolated on (x, y) knots."""

    method: str = "platt"
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def __call__(self, margin: np.ndarray) -> np.ndarray:
        m = np.asarray(margin, dtype=float)
        if self.method == "platt":
            # exp overflows to inf for margins below about -709: the probability is then 0.0,
            # which is right, so the overflow is no warning (a steep rule fit hits it).
            with np.errstate(over="ignore"):
                return 1.0 / (1.0 + np.exp(-(self.a * m + self.b)))
        return np.interp(m, np.asarray(self.x), np.asarray(self.y))

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "a": self.a,
            "b": self.b,
            "x": list(self.x),
            "y": list(self.y),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(d["method"], float(d["a"]), float(d["b"]), tuple(d["x"]), tuple(d["y"]))

    @classmethod
    def fit(cls, margin: np.ndarray, y: np.ndarray, method: str = "platt") -> Calibration:
        if method == "platt":
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=1e6, max_iter=1000).fit(np.asarray(margin).reshape(-1, 1), y)
            return cls("platt", float(lr.coef_[0, 0]), float(lr.intercept_[0]))
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=1e-6, y_max=1 - 1e-6).fit(margin, y)
        return cls(
            "isotonic",
            x=tuple(float(v) for v in iso.X_thresholds_),
            y=tuple(float(v) for v in iso.y_thresholds_),
        )


@dataclass
class StageModel:
    """A trained stage model: booster (+ optional linear base) + calibration + tiers + the
    feature spec it was built on."""

    booster: lgb.Booster
    calibration: Calibration
    tier_thresholds: tuple[float, float, float]
    spec: FeatureSpec
    transition: str
    label: str
    metadata: dict[str, Any] = field(default_factory=dict)
    linear: LinearBase | None = None

    def features(self, X: pd.DataFrame) -> pd.DataFrame:
        missing = [n for n in self.spec.names if n not in X.columns]
        if missing:
            raise ValueError(
                f"features frame is missing {len(missing)} model feature(s), e.g. {missing[:5]}; "
                "build it with leadml.data.features.build_features(..., spec=model.spec)"
            )
        return X[list(self.spec.names)]

    def margin(self, X: pd.DataFrame) -> np.ndarray:
        """Raw log-odds: the booster's, plus the linear part's when there is one."""
        F = self.features(X)
        M = prediction_matrix(F, self.booster.pandas_categorical)  # not converted again inside
        m = raw_margin(self.booster, M)  # LightGBM's predict, compiled (to the bit)
        return m if self.linear is None else m + self.linear.margin(F)

    def probability(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of promotion within the horizon."""
        return self.calibration(self.margin(X))

    def tier(self, p: np.ndarray) -> np.ndarray:
        a, b, c = self.tier_thresholds
        p = np.asarray(p)
        return np.select([p >= a, p >= b, p >= c], list(TIERS[:3]), default=TIERS[3]).astype(object)

    @staticmethod
    def to_score(p: np.ndarray) -> np.ndarray:
        """The 0-100 score of probabilities ``p``."""
        return np.rint(100 * np.asarray(p)).astype("int64")


def tier_thresholds(
    p: np.ndarray, shares: tuple[float, float, float]
) -> tuple[float, float, float]:
    """Probability cut-offs of tiers A, B and C: the top ``shares[0]`` of ``p`` are A, the next
    ``shares[1]`` B, the next ``shares[2]`` C."""
    cum = np.cumsum(shares)
    q = [float(np.quantile(p, 1 - s)) for s in cum]
    return (q[0], q[1], q[2])
