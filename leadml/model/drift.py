"""Drift: a training reference stored with the model, a scoring run's profile against it, and the
few statistics a monitor needs (PSI, KS, Jeffreys intervals).

The **reference** is taken at training from the newest labelled rows (the last backtest fold's
test window, the same rows the tier thresholds come from: the population most like tomorrow's):

- a numeric feature: bin edges at its deciles (repeated values merge bins, so a count that is
  mostly 0 gets a bin of its own for 0), each bin's share, and the share of missing values;
- a categorical feature: the share of each of its (at most :data:`MAX_LEVELS`) most common levels,
  of every other level together (``other``) and of missing values;
- the calibrated probability: the same decile bins and 200 quantiles (for KS).

A scoring run's **profile** counts its rows in the same bins; :func:`psi` compares the two. Only
shares are stored, never rows or values beyond bin edges and level names, which the model's own
categories already hold.

PSI (population stability index) is ``Σ (a - e) ln(a / e)`` over the bins, shares floored at
0.0001; the usual reading is < 0.1 stable, 0.1-0.25 a shift to watch, > 0.25 a shift to act on.
On a sample of ``n`` rows PSI is biased upwards by about ``(bins - 1) / n``, so a monitor needs a
few hundred rows before a value means anything (``monitor.min_rows``).

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> X = pd.DataFrame({"n": rng.poisson(2, 5000).astype(float),
...                   "c": pd.Categorical(rng.choice(["a", "b"], 5000))})
>>> ref = reference(X, rng.uniform(size=5000), {"n": "numeric", "c": "categorical"})
>>> same = profile(ref, X, rng.uniform(size=5000))
>>> round(psi(ref["features"]["n"]["shares"], same["features"]["n"]), 4)
0.0
>>> shifted = X.assign(c=pd.Categorical(np.where(rng.uniform(size=5000) < 0.9, "a", "b")))
>>> psi(ref["features"]["c"]["shares"], profile(ref, shifted, None)["features"]["c"]) > 0.25
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "MAX_LEVELS",
    "jeffreys",
    "ks_from_quantiles",
    "profile",
    "psi",
    "reference",
]

#: A categorical's reference keeps its most common levels; the rest are ``other``.
MAX_LEVELS = 30
_DECILES = np.linspace(0.1, 0.9, 9)
_FLOOR = 1e-4


def _edges(values: np.ndarray) -> list[float]:
    v = values[np.isfinite(values)]
    if not len(v):
        return []
    return [float(e) for e in np.unique(np.quantile(v, _DECILES))]


def _numeric_counts(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Counts in ``(-inf, e1], (e1, e2], ..., (ek, inf)`` and, last, missing."""
    v = np.asarray(values, dtype="float64")
    missing = ~np.isfinite(v)
    idx = np.searchsorted(np.asarray(edges, dtype="float64"), v[~missing], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype("float64")
    return np.append(counts, float(missing.sum()))


def _categorical_counts(values: pd.Series, levels: list[str]) -> np.ndarray:
    """Counts per listed level, then every other level, then missing."""
    s = values.astype("object")
    missing = s.isna().to_numpy()
    text = s[~missing].astype(str)
    code = pd.Index(levels).get_indexer(text)
    counts = np.bincount(np.where(code < 0, len(levels), code), minlength=len(levels) + 1)
    return np.append(counts.astype("float64"), float(missing.sum()))


def _shares(counts: np.ndarray) -> list[float]:
    total = counts.sum()
    return [round(float(c / total), 6) if total else 0.0 for c in counts]


def reference(
    X: pd.DataFrame, proba: np.ndarray | None, kinds: Mapping[str, str]
) -> dict[str, Any]:
    """The training reference of ``X``'s features (``kinds``: name -> ``numeric`` or
    ``categorical``) and of the calibrated probabilities ``proba`` (module docs)."""
    features: dict[str, Any] = {}
    for name, kind in kinds.items():
        if name not in X.columns:
            continue
        col = X[name]
        if kind == "categorical":
            top = col.astype("object").dropna().astype(str).value_counts()
            levels = [str(v) for v in top.index[:MAX_LEVELS]]
            counts = _categorical_counts(col, levels)
            features[name] = {"kind": "categorical", "levels": levels, "shares": _shares(counts)}
        else:
            v = pd.to_numeric(col, errors="coerce").to_numpy(dtype="float64")
            edges = _edges(v)
            counts = _numeric_counts(v, edges)
            features[name] = {"kind": "numeric", "edges": edges, "shares": _shares(counts)}
    out: dict[str, Any] = {"rows": len(X), "features": features}
    if proba is not None and len(proba):
        p = np.asarray(proba, dtype="float64")
        edges = _edges(p)
        out["score"] = {
            "edges": edges,
            "shares": _shares(_numeric_counts(p, edges)),
            "quantiles": [round(float(q), 6) for q in np.quantile(p, np.linspace(0, 1, 200))],
            "mean": float(p.mean()),
        }
    return out


def profile(ref: Mapping[str, Any], X: pd.DataFrame, proba: np.ndarray | None) -> dict[str, Any]:
    """A scoring run's counts in the reference's bins: ``{"rows", "features": {name: counts},
    "score": counts, "score_ks": KS statistic, "score_mean"}``. Features the run lacks are left
    out (the layout check reports them)."""
    features: dict[str, list[float]] = {}
    for name, r in ref.get("features", {}).items():
        if name not in X.columns:
            continue
        if r["kind"] == "categorical":
            counts = _categorical_counts(X[name], list(r["levels"]))
        else:
            v = pd.to_numeric(X[name], errors="coerce").to_numpy(dtype="float64")
            counts = _numeric_counts(v, list(r["edges"]))
        features[name] = [int(c) for c in counts]
    out: dict[str, Any] = {"rows": len(X), "features": features}
    score_ref = ref.get("score")
    if proba is not None and score_ref is not None and len(proba):
        p = np.asarray(proba, dtype="float64")
        out["score"] = [int(c) for c in _numeric_counts(p, list(score_ref["edges"]))]
        out["score_ks"] = ks_from_quantiles(score_ref["quantiles"], p)
        out["score_mean"] = float(np.nanmean(p))
    return out


def psi(expected: list[float] | np.ndarray, actual: list[float] | np.ndarray) -> float:
    """Population stability index between reference shares and a run's counts (or shares)."""
    e = np.asarray(expected, dtype="float64")
    a = np.asarray(actual, dtype="float64")
    if len(e) != len(a) or a.sum() <= 0 or e.sum() <= 0:
        return float("nan")
    e = np.maximum(e / e.sum(), _FLOOR)
    a = np.maximum(a / a.sum(), _FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_from_quantiles(quantiles: list[float] | np.ndarray, values: np.ndarray) -> float:
    """Two-sample KS statistic between a reference given by its quantiles and ``values``."""
    q = np.sort(np.asarray(quantiles, dtype="float64"))
    v = np.sort(np.asarray(values, dtype="float64")[np.isfinite(values)])
    if not len(q) or not len(v):
        return float("nan")
    grid = np.union1d(q, v)
    ref_cdf = np.searchsorted(q, grid, side="right") / len(q)
    run_cdf = np.searchsorted(v, grid, side="right") / len(v)
    return float(np.max(np.abs(ref_cdf - run_cdf)))


def jeffreys(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Jeffreys interval of a binomial rate (Beta(k + 1/2, n - k + 1/2) quantiles); the
    bounds are 0 and 1 when ``k`` is 0 or ``n`` (Brown, Cai and DasGupta, 2001)."""
    if n <= 0:
        return (math.nan, math.nan)
    from scipy.stats import beta

    a = (1 - level) / 2
    lo = 0.0 if successes == 0 else float(beta.ppf(a, successes + 0.5, n - successes + 0.5))
    hi = 1.0 if successes == n else float(beta.ppf(1 - a, successes + 0.5, n - successes + 0.5))
    return (lo, hi)
