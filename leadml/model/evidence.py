"""Evidence behind a reason: how past leads like this one converted, from the training rows.

A rep who reads "Industry: Software (+4.1 pts)" may ask "says who?". The answer is stored with
the model at training time, per feature, as counts and rates of the labelled training rows (the
observation points the model learned from), never as rows or ids:

- a categorical feature: each level's rows and positive rate (missing is a level of its own);
- a numeric feature: five bins at the training quintiles (fewer when values repeat: a count that
  is mostly 0 gets a bin of its own for 0), each with its rows, positive rate and the range of
  values it holds (a bin holds the values up to and including its upper edge), and one bin for
  missing values.

Levels and bins with fewer than ``MIN_ROWS`` rows are left out (a rate of 2 out of 7 is noise, and
small groups say more about a few people than about a pattern). At scoring, each listed reason
gets one sentence from the statistics of the feature that speaks for it (the one its text is
about), e.g. *Past leads in Software: 14% became prospects, against 6% overall.*

Rates are shares of training rows, i.e. of weekly observation points in event mode: the same
question the model answers ("promoted within the horizon after this point?").
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MIN_ROWS", "evidence_stats", "evidence_texts"]

#: Levels and bins with fewer training rows get no evidence sentence.
MIN_ROWS = 50
#: At most this many training rows (a seeded uniform sample) feed the statistics.
MAX_ROWS = 300_000
_QUANTILES = (0.2, 0.4, 0.6, 0.8)


def _rate(y: np.ndarray) -> list[float]:
    return [int(len(y)), round(float(y.mean()), 6) if len(y) else 0.0]


def evidence_stats(
    X: pd.DataFrame,
    y: Any,
    kinds: dict[str, str],
    *,
    max_rows: int = MAX_ROWS,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-feature conversion statistics of the training rows (module docs); JSON-able.

    On more than ``max_rows`` rows a uniform sample of that many is used (seeded): a rate over
    300,000 rows is within a fraction of a point of the full one, and millions of observation
    points would otherwise cost seconds per feature.

    Parameters
    ----------
    X : DataFrame
        The training features (pandas ``category`` for categoricals).
    y : array-like of 0/1
        Their labels.
    kinds : dict
        ``"numeric"`` or ``"categorical"`` per feature (``FeatureSpec.kinds``).
    """
    y = np.asarray(y, dtype=float)
    if len(y) > max_rows:  # rates settle long before millions of rows; the cost does not
        keep = np.sort(np.random.default_rng(seed).choice(len(y), max_rows, replace=False))
        X, y = X.iloc[keep], y[keep]
    features: dict[str, Any] = {}
    for name, kind in kinds.items():
        if name not in X.columns:
            continue
        col = X[name]
        if kind == "categorical":
            cat = col if isinstance(col.dtype, pd.CategoricalDtype) else col.astype("category")
            codes = np.asarray(cat.cat.codes) + 1  # 0 = missing
            size = len(cat.cat.categories) + 1
            n_at = np.bincount(codes, minlength=size)
            pos_at = np.bincount(codes, weights=y, minlength=size)
            levels: dict[str, list[float]] = {
                str(level): [int(n_at[k + 1]), round(float(pos_at[k + 1] / n_at[k + 1]), 6)]
                for k, level in enumerate(cat.cat.categories)
                if n_at[k + 1] >= MIN_ROWS
            }
            miss = codes == 0
            entry: dict[str, Any] = {"kind": "categorical", "levels": levels}
        else:
            x = pd.to_numeric(col, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            miss = np.isnan(x)
            known = x[~miss]
            edges = np.unique(np.quantile(known, _QUANTILES)) if len(known) else np.zeros(0)
            b = np.searchsorted(edges, x, side="left")
            bins = []
            for k in range(len(edges) + 1):
                at = (b == k) & ~miss
                n = int(at.sum())
                if n >= MIN_ROWS:
                    bins.append([*_rate(y[at]), float(x[at].min()), float(x[at].max())])
                else:
                    bins.append([n, 0.0, 0.0, 0.0])
            entry = {"kind": "numeric", "edges": [float(e) for e in edges], "bins": bins}
        if int(miss.sum()) >= MIN_ROWS:
            entry["missing"] = _rate(y[miss])
        features[name] = entry
    return {"overall": round(float(y.mean()), 6) if len(y) else 0.0, "rows": int(len(y)),
            "features": features}  # fmt: skip


def floats(values: Any) -> np.ndarray:
    """``values`` (a Series or an array of any dtype) as float64, NaN where missing or not a
    number."""
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        return values
    num = pd.to_numeric(values, errors="coerce")
    if isinstance(num, np.ndarray):
        return num.astype(np.float64, copy=False)
    return np.asarray(num.to_numpy(dtype="float64", na_value=np.nan))


def _pct(p: float) -> str:
    return f"{100 * p:.1f}%" if p < 0.095 else f"{100 * p:.0f}%"


def _num(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"


def evidence_texts(
    stats: dict[str, Any] | None, feature: str, values: pd.Series, outcome: str
) -> list[str]:
    """One evidence sentence per value of ``feature`` ("" where the training rows were too few
    or the model carries no statistics, e.g. one trained before they existed).

    >>> stats = {"overall": 0.06, "rows": 900, "features": {"industry": {
    ...     "kind": "categorical", "levels": {"Software": [120, 0.14]}}}}
    >>> evidence_texts(stats, "industry", pd.Series(["Software", "Retail"]), "became prospects")
    ['Past leads in Software: 14% became prospects, against 6.0% overall.', '']
    """
    codes, texts = evidence_codes(stats, feature, values, outcome)
    return np.asarray(texts, dtype=object)[codes].tolist()


def evidence_codes(
    stats: dict[str, Any] | None, feature: str, values: Any, outcome: str
) -> tuple[np.ndarray, list[str]]:
    """:func:`evidence_texts` as ``(codes, sentences)``: value ``i``'s sentence is
    ``sentences[codes[i]]``; each distinct sentence is built once (this runs for every scored
    lead). ``values``: a Series or an array (a ``Categorical`` for a categorical feature)."""
    entry = (stats or {}).get("features", {}).get(feature)
    if entry is None:
        return np.zeros(len(values), dtype=np.int32), [""]
    overall = float(stats["overall"])  # type: ignore[index]
    missing = entry.get("missing")
    none = _sentence("without a value here", missing[1], outcome, overall) if missing else ""
    if entry["kind"] == "categorical":
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        levels = entry["levels"]
        texts = [
            _sentence(f"in {u}", levels[str(u)][1], outcome, overall) if str(u) in levels else ""
            for u in uniques
        ]
        return np.where(codes < 0, len(texts), codes).astype(np.int32), [*texts, none]
    x = floats(values)
    b = np.searchsorted(np.asarray(entry["edges"], dtype=float), x, side="left")
    bins = _bin_sentences(tuple(map(tuple, entry["bins"])), overall, outcome)
    return np.where(np.isnan(x), len(bins), b).astype(np.int32), [*bins, none]


@functools.lru_cache(maxsize=4096)
def _bin_sentences(
    bins: tuple[tuple[float, float, float, float], ...], overall: float, outcome: str
) -> tuple[str, ...]:
    """The sentence of each bin ``(rows, rate, lo, hi)`` of a numeric feature: the same for
    every chunk of every run of a model, so built once (keyed by the numbers themselves)."""
    out = []
    for n, r, lo, hi in bins:
        if n < MIN_ROWS:
            out.append("")
            continue
        span = f"a value of {_num(lo)}" if lo == hi else f"a value from {_num(lo)} to {_num(hi)}"
        out.append(_sentence(f"with {span} here", r, outcome, overall))
    return tuple(out)


def _sentence(who: str, rate: float, outcome: str, overall: float) -> str:
    return f"Past leads {who}: {_pct(rate)} {outcome}, against {_pct(overall)} overall."
