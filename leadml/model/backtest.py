"""Rolling-origin backtest: every modelling choice comes from K folds in time, never one slice.

The backtest is mode-agnostic: it takes a feature frame ``X``, 0/1 labels ``y`` and each row's time
``t`` (``as_of`` timestamps in event mode, or any sortable number such as a sequential lead number
in flat mode), and works in the units of ``t`` throughout (``purge`` and half-lives too).

Folds (:func:`make_folds`)
    The last ``test_fraction`` (default 40%) of the span of ``t`` is cut into ``n_folds`` (default
    4) consecutive test windows ``[test_start, test_end)``; fold k trains on every row with
    ``t + purge < test_start`` (expanding window), so no training label window ``(t, t + purge]``
    reaches into the test window. Event mode passes ``purge = horizon + gap``; flat mode 0. With
    timestamps the windows have equal length in time (inner boundaries rounded up to the second);
    with a numeric key they hold equal numbers of rows (a lead number has gaps and bursts, so equal
    key length would give unequal, unequally powered windows; ties stay in one window). The first
    fold thus trains on about the oldest 60% (minus the purge), the last on about 90%; if the
    oldest part holds fewer than ``min_train_rows`` rows, the test span starts later. Rows are
    assigned by ``t`` alone; rows whose time is missing are rejected.

Skipping
    A fold is skipped, with a note saying which and why, when its training part, its inner
    early-stopping split or its test window lacks one of the classes. When the training part is
    too short in time for a purged inner split (few observation points, a long horizon), the
    inner split is made without the purge and a remark says so: the fold's test window stays
    purged, only its early-stopping point may be optimistic. If no fold remains,
    :class:`BacktestError` (a ``ValueError``) lists rows and positives per fold and what to do.

Per-fold fit
    The fold's training part (subsampled on large tables, see Cost) is split in time: the
    *inner validation* slice is its newest 20% of rows or 20% of positives,
    whichever is the shorter slice that still holds both classes, and the *inner training* part is
    everything at least ``purge`` older. The positive share matters when positives are recent
    (a rising base rate, or a funnel whose outcomes exist only in the latest months): a rows-only
    cut would leave the inner training part without positives. LightGBM (``lgb.train``, the given
    plain parameters) early-stops on the inner validation log loss; its best iteration is recorded
    and the test window is scored with raw margins. Recency weighting, when chosen, weighs a row
    ``0.5 ** (age / half_life)`` with ``age`` measured from the newest training row.

Baselines, on the same folds and the same training and test rows
    ``base_rate`` (the training positive rate as a constant), ``logistic`` (median-imputed scaled
    numerics with missing indicators, one-hot categoricals), ``lgbm_default`` (LightGBM's own
    defaults: 100 trees, 31 leaves, learning rate 0.1; deterministic, same categoricals) and
    ``rule`` (the marketer's score, higher = call first, mapped to a probability by a Platt fit on
    the fold's training rows; skipped when no rule is given).

Choices
    1. *Parameters*: each candidate (default :func:`default_candidates`: ``additive`` stumps,
       ``linear``, the same stumps boosted from a logistic regression fit on the inner training
       part, ``shallow``, 4 leaves of depth 2 with larger leaves and stronger L2, then ``base`` = the
       given parameters; the order is simplest first) is fit on the newest ``search_folds`` (default 2) folds: they
       are the most like tomorrow, their training parts are the largest (closest to the refit),
       and searching two folds instead of four halves the cost. Score: mean over those folds of
       the test log loss after a Platt fit on the fold's inner validation slice (log loss is
       proper and catches calibration collapse; Platt first so that a good ranker is not
       punished for a scale that calibration fixes anyway). The **one-standard-error rule**
       picks the simplest candidate whose mean loss is within one standard error of the best
       (paired per-row differences within each fold; rows of one lead are correlated, so this
       error is if anything too small and the rule leans to the best, not to the simplest).
    2. *Recency weighting*, for the chosen parameters only: none, or each half-life (default:
       half and a quarter of the whole span of ``t``), same score and rule; no weighting counts
       as the simplest, then longer half-lives before shorter ones.
    3. The chosen setting is then fit on the remaining folds, so every fold reports it.
       ``n_trees`` for the refit is the median of its best iterations over all folds, unscaled:
       the loss curve is flat near its minimum, so a median of early-stopping points is a safe
       choice, while scaling by the refit's extra rows is a heuristic without a guarantee that
       would fit older patterns harder under drift (see ``max_train_rows`` below).

       *Refit per fold.* Each fold's model is then refit on its **whole** training part with
       its own best iteration and no early stopping, exactly as :func:`refit` fits the shipped
       model on every row; the fold's test window is scored by that refit. Without it the
       folds measured a model that never saw the newest 20% of its training part (the inner
       validation slice), while the baselines and the shipped model do see it: under drift
       that handicap alone cost 0.006 ROC AUC on X Education and 0.014 on BPI 2012 prospect
       (BENCHMARKS.md), and out-of-fold margins of the refit are what the shipped model's
       calibration must map.
    4. *Blend*: the chosen trees' margin plus ``w`` times a logistic regression's margin
       (:class:`~leadml.model.linear.LinearBase`, fit on the same rows with the same recency
       weights, on the columns the trees split on: :func:`split_features`), ``w`` in
       :data:`BLEND_WEIGHTS` (a linear share of 1/4, 1/2 or 3/4 after
       calibration rescales the sum) or no blend, skipped when the trees already boost from a
       linear base. Trees and a linear model err differently (steps against slopes, one-hot
       levels against binned ones), and a combination of two such forecasts is rarely worse
       than either and often better than both. Score: *refinement* loss on the search folds, the
       log loss after the best Platt mapping on the test window itself: the blend is a
       ranking choice and calibration is chosen next on its own evidence (with inner-slice
       Platt, a blend's wider margins on a few hundred rows were penalised for the slice's
       noise rather than the blend's). One-standard-error rule, no blend the simplest. The
       blend stays exactly explainable: the linear part is stored scaled by ``w`` and its
       exact Shapley values add to TreeSHAP's, as for a linear base.
    5. *Calibration* on out-of-fold margins of the chosen setting: ``platt`` (pooled),
       ``platt_recent`` (pooled, rows weighted by recency with the chosen half-life, else a
       quarter of the span) and ``isotonic``. Cross-check: for every fold with earlier
       out-of-fold rows, fit on those (only rows with ``t + purge < test_start``, so no label
       reaches into the fold) and score the fold. Plain Platt stays unless ``platt_recent``
       beats it by more than one paired standard error, or isotonic beats the better Platt by
       more than two, and in both cases by at least 0.5% of the log loss. Platt is affine in
       the margin, so TreeSHAP values times its slope explain the calibrated log-odds exactly;
       isotonic does not, hence the higher bar. The shipped
       :class:`~leadml.model.stage.Calibration` is fit on all pooled out-of-fold margins: a fold
       model scoring the window after its training data is the same situation as the refit
       scoring tomorrow, so the mapping carries over (including the lag of a drifting base
       rate).

Cost
    Per fold: one LightGBM Dataset (shared by every fit of the fold), one logistic regression and
    one 100-tree default LightGBM; early-stopped candidate fits: (candidates + half-lives) x
    ``search_folds`` + the remaining folds (default 4 x 2 + 2 x 2 + 2 = 14), then one refit
    with a fixed number of trees and one more logistic regression per fold (the blend). On
    large tables each fold's training
    part is uniformly subsampled to ``max_train_rows`` (default 200,000; the same rows for every
    model of the fold, so comparisons stay paired and the base rate unchanged); its numbers then
    describe models trained on at most that many rows, a conservative estimate for the refit on
    every row. The cap is set by measurement: on the 200k-lead synthetic training set (2.7M
    weekly rows, 2% positive) folds of 50,000 rows made the boosted model trail the logistic
    baseline (ROC AUC 0.782 against 0.792: too few positives per fold for trees), while 200,000
    rows tie it (0.796 against 0.798) and the whole protocol still costs about what the single
    fit it replaced did (BENCHMARKS.md).

Metrics (:func:`leadml.model.evaluation.evaluate`), per fold and model
    rows, positives, positive rate, ROC AUC, PR AUC, log loss, Brier, ECE, lift and capture in the
    top 10% and 20%, and conversion per tier (A = top 10%, B = next 20%, C = next 30%, D = rest,
    by rank of the model's own scores within the test window, ties in row order: tiers measure
    ranking in the words sales uses, not threshold stability). ``leadml`` is scored by
    the fold's refit, with probabilities from Platt on the fold's inner validation slice scored
    by the same refit (earlier folds' models may hold ten times fewer trees, so their margins
    are on another scale; the slice is among the refit's training rows, a small optimism for
    stumps that stopped early on that very slice). Summary: mean over folds with a 95% t-interval (with 4 folds it is wide,
    that is the honest width), and paired per-fold differences ``leadml - baseline`` with their
    intervals. The chosen setting is reported on the folds it was chosen on: the optimism of
    picking one of a handful of candidates is small next to these intervals.

Readiness (:func:`readiness`)
    Ready only if, over at least two folds, (1) the lower end of leadml's mean ROC AUC interval
    is above 0.5, (2) its mean log loss is below the base rate's, and (3) it is not materially
    worse than the best baseline (logistic, default LightGBM or rule, highest mean ROC AUC)
    beyond the interval: the upper end of the paired difference interval is at least -0.01 ROC
    AUC and -2% of the baseline's PR AUC.

Refit (:func:`refit`)
    The shipped booster is a plain LightGBM model (no ``linear_tree``, so TreeSHAP stays exact)
    fit on every labelled row with the chosen parameters, ``n_trees`` trees, the chosen recency
    weights (age from the newest row) and no early stopping; when the ``linear`` candidate was
    chosen, a :class:`~leadml.model.linear.LinearBase` is fit first on the same rows and weights
    and the booster starts from its margin (its Shapley values are exact too, and add to
    TreeSHAP's); when a blend was chosen, the LinearBase is fit after the booster, on the
    columns it splits on, and stored scaled by the blend weight. The caller calibrates with ``result.calibration`` and sets
    tiers from the newest scores.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from leadml._json import jsonable
from leadml.funnel import TIERS
from leadml.model.evaluation import evaluate
from leadml.model.linear import LinearBase
from leadml.model.stage import Calibration

__all__ = [
    "BacktestError",
    "BacktestResult",
    "Candidate",
    "Fold",
    "Verdict",
    "default_candidates",
    "make_folds",
    "make_logistic",
    "readiness",
    "refit",
    "run_backtest",
    "split_features",
]

MODELS = ("leadml", "base_rate", "logistic", "lgbm_default", "rule")
BASELINES = MODELS[1:]
#: Tier shares A, B, C (D is the rest), as in ``TrainingConfig.tier_shares``.
TIER_SHARES = (0.1, 0.2, 0.3)
#: Share of the fold's training rows (or positives) held out for early stopping.
INNER_SHARE = 0.2
#: Metrics summarised over folds (all but ``rows`` / ``positives`` are from ``evaluate``).
SUMMARY_METRICS = (
    "positive_rate",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "ece",
    "lift_10",
    "capture_10",
    "conversion_tier_A",
    "conversion_tier_B",
    "conversion_tier_C",
    "conversion_tier_D",
)
CALIBRATION_METHODS = ("platt", "platt_recent", "isotonic")
#: How much worse than the best baseline (beyond the interval) makes a model not ready:
#: absolute for ROC AUC, relative to the baseline's value for PR AUC.
MATERIAL: dict[str, float] = {"roc_auc": 0.01, "pr_auc": 0.02}
#: Weights of the logistic regression's margin tried in the blend (linear share 1/4, 1/2, 3/4).
BLEND_WEIGHTS = (1 / 3, 1.0, 3.0)
#: A calibration other than plain Platt must also lower the log loss by this share.
MIN_GAIN = 0.005


class BacktestError(ValueError):
    """The backtest cannot run: too little history, or no fold with both classes."""


# --------------------------------------------------------------------------------------------
# Time: everything is computed on an exact internal key (int64 nanoseconds for timestamps, the
# numbers themselves otherwise), so the purge is honoured exactly, with no float rounding.


def _as_key(t: Any) -> tuple[np.ndarray, str]:
    """``t`` as (key array, kind): int64 ns for datetimes (tz-aware ones in UTC), else numbers."""
    s = t if isinstance(t, pd.Series) else pd.Series(t)
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        if s.isna().any():
            raise ValueError(f"t has {int(s.isna().sum())} missing time(s); every row needs one")
        return s.to_numpy(dtype="datetime64[ns]").view("int64"), "datetime"
    if pd.api.types.is_bool_dtype(s.dtype) or not pd.api.types.is_numeric_dtype(s.dtype):
        raise TypeError(f"t must be datetimes or numbers (an order key), got dtype {s.dtype}")
    kind = "integer" if pd.api.types.is_integer_dtype(s.dtype) else "numeric"
    v = s.to_numpy(dtype="int64" if kind == "integer" else "float64")
    if kind == "numeric" and not np.isfinite(v).all():
        raise ValueError("t has missing or infinite values; every row needs a time or order key")
    return v, kind


def _as_width(w: Any, kind: str, what: str) -> Any:
    """A width (purge, half-life) in the key's internal units."""
    if kind == "datetime":
        if isinstance(w, int | float) and not isinstance(w, bool) and w == 0:
            return 0
        if isinstance(w, int | float | np.number):
            raise TypeError(f"{what} must be a Timedelta when t holds timestamps, got {w!r}")
        v = pd.Timedelta(w).value
    else:
        if isinstance(w, pd.Timedelta | np.timedelta64):
            raise TypeError(f"{what} must be a number in t's units (t is numeric), got {w!r}")
        v = w
    if v < 0:
        raise ValueError(f"{what} must not be negative, got {w!r}")
    return v


def _ext_time(v: Any, kind: str) -> Any:
    """An internal key value as the user sees it (Timestamp or plain number)."""
    if kind == "datetime":
        return pd.Timestamp(int(v))
    return int(v) if kind == "integer" else float(v)


def _ext_width(v: Any, kind: str) -> Any:
    if kind == "datetime":
        return pd.Timedelta(int(round(v)))
    return v.item() if isinstance(v, np.generic) else v


def _next_above(v: Any, kind: str) -> Any:
    """The smallest key value strictly above ``v`` (an integer key stays an integer even when
    ``v`` is not, e.g. with a fractional purge)."""
    if kind == "numeric":
        return float(np.nextafter(float(v), np.inf))
    return math.floor(v) + 1


@dataclass(frozen=True)
class Fold:
    """One expanding-window fold: trains on ``t + purge < test_start``, tests on
    ``test_start <= t < test_end``.

    Boundaries are Timestamps (and ``purge`` a Timedelta) when ``t`` holds timestamps, else
    numbers in ``t``'s units.
    """

    index: int
    test_start: Any
    test_end: Any
    purge: Any

    @property
    def train_end(self) -> Any:
        """Exclusive upper bound of the training rows' times: ``test_start - purge``."""
        return self.test_start - self.purge

    def _bounds(self, kind: str) -> tuple[Any, Any, Any]:
        if kind == "datetime":
            return (
                pd.Timestamp(self.test_start).value,
                pd.Timestamp(self.test_end).value,
                pd.Timedelta(self.purge).value,
            )
        return self.test_start, self.test_end, self.purge

    def _masks_key(self, key: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
        start, end, purge = self._bounds(kind)
        return key + purge < start, (key >= start) & (key < end)

    def masks(self, t: Any) -> tuple[np.ndarray, np.ndarray]:
        """Boolean (train, test) masks over the rows of ``t``."""
        key, kind = _as_key(t)
        return self._masks_key(key, kind)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "test_start": jsonable(self.test_start),
            "test_end": jsonable(self.test_end),
            "purge": jsonable(self.purge),
            "train_end": jsonable(self.train_end),
        }


def make_folds(
    t: Any,
    n_folds: int = 4,
    *,
    purge: Any = 0,
    test_fraction: float = 0.4,
    min_train_rows: int = 100,
) -> list[Fold]:
    """Cut the later part of the span of ``t`` into ``n_folds`` consecutive test windows.

    Parameters
    ----------
    t : array-like
        Each row's time: datetimes, or numbers that grow with time (an order key).
    n_folds : int
        Number of test windows (folds).
    purge : Timedelta or number
        Gap in ``t``'s units: fold k trains on rows with ``t + purge < test_start``.
    test_fraction : float
        Share of the span (timestamps) or of the rows (numeric key) given to test windows.
    min_train_rows : int
        The first fold trains on at least this many rows; the test span starts later if needed.

    Returns
    -------
    list of Fold
        Ordered, non-overlapping, contiguous test windows; the last ends just after ``max(t)``.
        With heavily tied numeric keys there may be fewer than ``n_folds``.

    Raises
    ------
    BacktestError
        When the span leaves no room for test windows after ``min_train_rows`` training rows.

    Examples
    --------
    >>> [(f.test_start, f.test_end) for f in make_folds(range(100), 4, min_train_rows=10)]
    [(60, 70), (70, 80), (80, 90), (90, 100)]
    """
    if n_folds < 1:
        raise ValueError(f"n_folds must be at least 1, got {n_folds}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    key, kind = _as_key(t)
    p = _as_width(purge, kind, "purge")
    n = len(key)
    if n < max(min_train_rows, 1) + n_folds:
        raise BacktestError(
            f"{n} rows: too few for {n_folds} test windows after {min_train_rows} training rows"
        )
    s = np.sort(key)
    # The earliest test start that leaves min_train_rows rows with t + purge < start.
    earliest = _next_above(s[max(min_train_rows, 1) - 1] + p, kind)
    edges: list[Any]
    if kind == "datetime":
        # Python ints: nanosecond timestamps do not fit a float exactly. When windows are at
        # least a minute long, boundaries are whole seconds (rounded up, so the first fold keeps
        # its min_train_rows) and the last window ends on the second after max(t).
        lo, hi, sec = int(s[0]), int(s[-1]), 10**9
        readable = hi - lo >= n_folds * 60 * sec
        end: Any = (hi // sec + 1) * sec if readable else hi + 1
        start0 = max(lo + int((1 - test_fraction) * (end - lo)), int(earliest))
        edges = [start0 + (end - start0) * k // n_folds for k in range(n_folds)]
        if readable:
            edges = [-(-b // sec) * sec for b in edges]
        edges.append(end)
    else:
        end = _next_above(s[-1], kind)
        start0 = max(s[min(int((1 - test_fraction) * n), n - 1)], earliest)
        test_keys = s[s >= start0]
        m = len(test_keys)
        edges = [test_keys[min(int(round(k * m / n_folds)), m - 1)] for k in range(n_folds) if m]
        edges.append(end)
    edges = sorted(set(edges))
    if len(edges) < 2 or edges[0] >= end:
        raise BacktestError(
            f"t spans {_ext_time(s[0], kind)}..{_ext_time(s[-1], kind)} ({n} rows): after "
            f"{min_train_rows} training rows and a purge of {_ext_width(p, kind)} there is no "
            "room for a test window; add history, shorten the horizon or lower min_train_rows"
        )
    purge_ext = _ext_width(p, kind)
    return [
        Fold(k, _ext_time(a, kind), _ext_time(b, kind), purge_ext)
        for k, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True))
    ]


# --------------------------------------------------------------------------------------------
# Candidates and the small helpers every fold uses.


@dataclass(frozen=True)
class Candidate:
    """A named set of LightGBM parameter overrides on top of the given parameters; ``linear``:
    boost from a logistic regression's margin (:class:`~leadml.model.linear.LinearBase`)."""

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    linear: bool = False

    def params(self, base: Mapping[str, Any]) -> dict[str, Any]:
        return {**base, **self.overrides}


def default_candidates(params: Mapping[str, Any]) -> list[Candidate]:
    """``additive``, ``linear``, ``shallow`` and ``base`` (the given parameters), simplest first.

    ``additive``: stumps (one split per tree, learning rate up to 0.2), i.e. a generalised
    additive model: each feature's effect is a free-form curve, and no interactions. Where
    conversion is log-linear in the features (a logistic regression's home ground, and on the
    synthetic CRM) it matches or beats logistic regression while keeping trees, so TreeSHAP
    stays exact (and cheap: a stump's SHAP value is its leaf value minus its mean). ``shallow``:
    4 leaves of depth at most 2 (interactions of two features at most), twice the
    leaf size, L2 of at least 30, and twice the learning rate, because such weak trees at 0.05
    need several hundred of them (more trees to fit and to explain at scoring time). Shallow,
    regularised trees cannot chase interactions that do not last, so they suit drifting data
    and small tables; the given parameters stay the other candidate. (A 7-leaf middle candidate
    was left out: it rarely won by more than the one-standard-error margin and cost a fit per
    search fold.) ``linear``: the same stumps boosted from a logistic regression's margin
    (:class:`~leadml.model.linear.LinearBase`, fit on the same rows): where a linear model ranks
    best (drifting tables whose relations stay log-linear while their base rate moves, one-hot
    heavy tables), early stopping keeps the stumps few and the model is the logistic regression
    plus the corrections the inner validation slice supports. On X Education and BPI 2012 it
    lost to plain stumps by more than one standard error, so it ships only where it wins.

    Examples
    --------
    >>> [c.name for c in default_candidates({"min_child_samples": 20, "reg_lambda": 10.0})]
    ['additive', 'linear', 'shallow', 'base']
    """
    mcs = int(params.get("min_child_samples", 20))
    lam = float(params.get("reg_lambda", 0.0))
    lr = float(params.get("learning_rate", 0.1))
    out = [
        Candidate(
            "additive",
            {"num_leaves": 2, "max_depth": 1, "learning_rate": min(4 * lr, 0.2)},
        ),
        Candidate(
            "shallow",
            {
                "num_leaves": 4,
                "max_depth": 2,
                "min_child_samples": 2 * mcs,
                "reg_lambda": max(30.0, 3 * lam),
                "learning_rate": min(2 * lr, 0.2),
            },
        ),
        Candidate("base", {}),
    ]
    # ``linear`` goes second: stumps on top of a logistic regression's margin.
    return [out[0], Candidate("linear", dict(out[0].overrides), linear=True), *out[1:]]


def _lgb_default_params(seed: int, n_threads: int | None) -> dict[str, Any]:
    """``LGBMClassifier()``'s defaults, made deterministic."""
    p: dict[str, Any] = {
        "objective": "binary",
        "learning_rate": 0.1,
        "num_leaves": 31,
        "min_child_samples": 20,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }
    if n_threads is not None:
        p["num_threads"] = n_threads
    return p


def _prepare_params(params: Mapping[str, Any], seed: int, n_threads: int | None) -> dict[str, Any]:
    """The caller's parameters for the backtest: seeded, threads set, log loss as the only metric
    (early stopping watches it; computing PR AUC every round would only cost time)."""
    bad = [k for k in ("linear_tree", "linear_trees", "init_score") if params.get(k)]
    if bad:
        raise ValueError(
            f"{bad}: the shipped model must be a plain booster so TreeSHAP is exact (a linear "
            "base margin is the 'linear' candidate's job)"
        )
    p = {**params, "seed": seed, "metric": "binary_logloss", "verbosity": -1}
    p.pop("first_metric_only", None)
    if n_threads is not None:
        p["num_threads"] = n_threads
    return p


def make_logistic(numeric: Sequence[str], categorical: Sequence[str]) -> Any:
    """Unfitted logistic regression on plain column lists: the in-run baseline.

    Numerics: float, median imputation with missing indicators, standard scaling. Categoricals:
    one-hot with ``missing`` as its own level, rare levels (< 20 rows) pooled, unseen ignored;
    pandas ``category`` columns are encoded by their codes (fast, and the same codes in every
    fold because the folds share the frame's dtype).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        parts.append(
            (
                "num",
                make_pipeline(
                    FunctionTransformer(_as_float, feature_names_out="one-to-one"),
                    SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                    StandardScaler(),
                ),
                list(numeric),
            )
        )
    if categorical:
        parts.append(
            (
                "cat",
                make_pipeline(
                    FunctionTransformer(_as_codes, feature_names_out="one-to-one"),
                    OneHotEncoder(handle_unknown="ignore", min_frequency=20),
                ),
                list(categorical),
            )
        )
    return make_pipeline(ColumnTransformer(parts), LogisticRegression(max_iter=2000, C=1.0))


_NOT_IN_LGB_NAMES = re.compile(r'[\[\]{}",:\s]')


def lgb_feature_names(columns: Sequence[Any]) -> list[str]:
    """Column names as LightGBM stores them: its JSON model dump forbids ``[ ] { } " , :`` in
    feature names (and it rewrites whitespace), so these become ``_``; a clash gets a ``__k``
    suffix. Only the booster's copy changes: frames keep the names CRMs write (reasons and
    reports show those), and LightGBM matches a frame's columns by position.

    >>> lgb_feature_names(["Source: channel", "n_Webinar: Q3 launch_7d", "Source_ channel"])
    ['Source__channel', 'n_Webinar__Q3_launch_7d', 'Source__channel__2']
    """
    out: list[str] = []
    seen: set[str] = set()
    for k, c in enumerate(columns):
        name = _NOT_IN_LGB_NAMES.sub("_", str(c))
        if name in seen:
            name = f"{name}__{k}"
        seen.add(name)
        out.append(name)
    return out


def _lgb_names(columns: Sequence[Any], categorical: Sequence[str]) -> dict[str, Any]:
    """``feature_name`` and ``categorical_feature`` arguments of ``lgb.Dataset``."""
    names = lgb_feature_names(columns)
    cats = set(categorical)
    return {
        "feature_name": names,
        "categorical_feature": [n for c, n in zip(columns, names, strict=True) if c in cats]
        or "auto",
    }


def _as_float(X: pd.DataFrame) -> pd.DataFrame:
    return X.astype("float64")


def _as_codes(X: pd.DataFrame) -> pd.DataFrame:
    out = {}
    for c in X.columns:
        col = X[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            out[c] = col.cat.codes.to_numpy()  # -1 = missing, its own level
        else:
            out[c] = col.astype(object).where(col.notna(), "missing").astype(str).to_numpy()
    return pd.DataFrame(out, index=X.index)


def _fit_quietly(model: Any, X: Any, y: np.ndarray, **kw: Any) -> Any:
    """Fit a scikit-learn model; a baseline that has not fully converged is still a baseline."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y, **kw)


def _platt(margin: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> Calibration:
    """Platt scaling ``sigmoid(a * margin + b)``, optionally weighted.

    Newton's method on the two parameters (dozens of fits per backtest; scikit-learn's solver
    overhead would dominate), with the same tiny ridge on the slope as ``Calibration.fit``'s
    ``C=1e6`` so that perfectly separated margins still give a finite slope.
    """
    x = np.asarray(margin, float)
    yy = np.asarray(y, float)
    w = np.ones_like(x) if weight is None else np.asarray(weight, float)
    A = np.column_stack([x, np.ones_like(x)])
    ridge = np.diag([1e-6, 0.0])
    rate = np.clip(np.average(yy, weights=w), 1e-9, 1 - 1e-9)
    beta = np.array([0.0, math.log(rate / (1 - rate))])

    def objective(b: np.ndarray) -> float:
        eta = A @ b
        return float(np.sum(w * (np.logaddexp(0.0, eta) - yy * eta)) + 0.5 * b @ ridge @ b)

    current = objective(beta)
    for _ in range(100):
        p = 0.5 * (1.0 + np.tanh(0.5 * (A @ beta)))  # the sigmoid, without exp overflow
        grad = A.T @ (w * (p - yy)) + ridge @ beta
        hess = (A * (w * p * (1 - p))[:, None]).T @ A + ridge + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        for _ in range(30):  # step halving keeps every iteration an improvement
            trial = beta - step
            value = objective(trial)
            if value <= current:
                break
            step = step / 2
        else:
            break
        beta, done = trial, current - value < 1e-12 * max(1.0, abs(current))
        current = value
        if done:
            break
    return Calibration("platt", float(beta[0]), float(beta[1]))


def _recency(key: np.ndarray, half_life: float, ref: Any | None = None) -> np.ndarray:
    """``0.5 ** (age / half_life)``, age from ``ref`` (default: the newest row)."""
    ref = key.max() if ref is None else ref
    return np.power(0.5, (ref - key).astype(float) / float(half_life))


def _row_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 1e-12, 1 - 1e-12)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


def _rank_tiers(p: np.ndarray) -> np.ndarray:
    """A/B/C/D by rank within the window (A top 10%, B next 20%, C next 30%), ties in row order."""
    n = len(p)
    rank = np.empty(n, dtype=int)
    rank[np.argsort(-np.asarray(p), kind="stable")] = np.arange(n)
    cuts = np.round(np.cumsum(TIER_SHARES) * n).astype(int)
    return np.select(
        [rank < cuts[0], rank < cuts[1], rank < cuts[2]], list(TIERS[:3]), TIERS[3]
    ).astype(object)


def _t_interval(values: Sequence[float]) -> tuple[float, float, float, int]:
    """Mean and 95% t-interval over folds (NaN bounds with fewer than two values)."""
    from scipy import stats

    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    k = len(v)
    if k == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(v.mean())
    if k < 2:
        return mean, math.nan, math.nan, k
    half = float(stats.t.ppf(0.975, k - 1) * v.std(ddof=1) / math.sqrt(k))
    return mean, mean - half, mean + half, k


# --------------------------------------------------------------------------------------------
# Per-fold data and fits.


@dataclass
class _FoldData:
    fold: Fold
    train: np.ndarray  # row positions (possibly subsampled), sorted
    test: np.ndarray
    inner_train: np.ndarray  # positions within ``train``
    inner_valid: np.ndarray
    dataset: lgb.Dataset  # on ``train``; inner parts are subsets sharing its bins


@dataclass
class _FitOut:
    best_iteration: int
    test_margin: np.ndarray
    valid_margin: np.ndarray
    loss: np.ndarray  # per test row, after Platt on the inner validation slice


def _inner_split(key: np.ndarray, y: np.ndarray, purge: Any) -> tuple[np.ndarray, np.ndarray] | str:
    """Inner (train, valid) positions, or the reason there is no usable split (module docs)."""
    n, pos = len(key), np.sort(key[y == 1])
    ks = np.sort(key)
    c_rows = ks[min(n - 1, int((1 - INNER_SHARE) * n))]
    c_pos = pos[min(len(pos) - 1, int((1 - INNER_SHARE) * len(pos)))]
    found = ""
    for cut in sorted({c_rows, c_pos}, reverse=True):  # the shorter slice first
        valid, train = key >= cut, key + purge < cut
        nv, nt = int(y[valid].sum()), int(y[train].sum())
        if 0 < nv < valid.sum() and 0 < nt < train.sum():
            return np.flatnonzero(train), np.flatnonzero(valid)
        found = (
            f"the inner early-stopping split leaves {int(train.sum())} rows / {nt} positives "
            f"to train and {int(valid.sum())} rows / {nv} positives to validate"
        )
    return found


def _describe(k: Fold, what: str) -> str:
    return f"fold {k.index} (test {k.test_start} .. {k.test_end}) skipped: {what}"


def _fit_fold(
    fd: _FoldData,
    params: Mapping[str, Any],
    key: np.ndarray,
    y: np.ndarray,
    X: pd.DataFrame,
    half_life: Any,
    max_trees: int,
    patience: int,
    *,
    linear: bool = False,
    categorical: Sequence[str] = (),
    seed: int = 0,
) -> _FitOut:
    """Early-stopped LightGBM on the fold's inner split; margins on the test window."""
    tr = fd.dataset.subset(fd.inner_train.tolist()).construct()
    va = fd.dataset.subset(fd.inner_valid.tolist()).construct()
    inner_rows, valid_rows = fd.train[fd.inner_train], fd.train[fd.inner_valid]
    weight = None if half_life is None else _recency(key[inner_rows], half_life)
    if weight is not None:
        # After construct(): weights set on an unconstructed subset are silently dropped.
        tr.set_weight(weight)
    base_test, base_valid = np.zeros(len(fd.test)), np.zeros(len(valid_rows))
    if linear:
        lin = LinearBase.fit(
            X.iloc[inner_rows], y[inner_rows], categorical, weight=weight, seed=seed
        )
        tr.set_init_score(lin.margin(X.iloc[inner_rows]))
        base_valid = lin.margin(X.iloc[valid_rows])
        va.set_init_score(base_valid)
        base_test = lin.margin(X.iloc[fd.test])
    booster = lgb.train(
        dict(params),
        tr,
        num_boost_round=max_trees,
        valid_sets=[va],
        valid_names=["inner"],
        callbacks=[lgb.early_stopping(patience, first_metric_only=True, verbose=False)],
    )
    best = max(1, int(booster.best_iteration or booster.current_iteration()))
    test_m = base_test + np.asarray(
        booster.predict(X.iloc[fd.test], raw_score=True, num_iteration=best)
    )
    valid_m = base_valid + np.asarray(
        booster.predict(X.iloc[valid_rows], raw_score=True, num_iteration=best)
    )
    cal = _platt(valid_m, y[valid_rows])
    return _FitOut(best, test_m, valid_m, _row_log_loss(y[fd.test], cal(test_m)))


@dataclass
class _FoldRefit:
    """A fold's chosen model refit on its whole training part, as the shipped model is on every
    row: margins on the inner validation slice (in sample) and on the test window, for the
    trees (plus their linear base, if any) and for a logistic regression beside them."""

    trees_valid: np.ndarray
    trees_test: np.ndarray
    linear_valid: np.ndarray
    linear_test: np.ndarray

    def margins(self, w: float | None) -> tuple[np.ndarray, np.ndarray]:
        if w is None:
            return self.trees_valid, self.trees_test
        return self.trees_valid + w * self.linear_valid, self.trees_test + w * self.linear_test


def _refit_fold(
    fd: _FoldData,
    params: Mapping[str, Any],
    n_trees: int,
    boosted_from_linear: bool,
    key: np.ndarray,
    y: np.ndarray,
    X: pd.DataFrame,
    half_life: Any,
    categorical: Sequence[str],
    seed: int,
) -> _FoldRefit:
    """What :func:`refit` does, on the fold's training part (module docs, "Refit per fold")."""
    rows, valid_rows = fd.train, fd.train[fd.inner_valid]
    weight = None if half_life is None else _recency(key[rows], half_life)
    ds = fd.dataset
    base_valid, base_test = np.zeros(len(valid_rows)), np.zeros(len(fd.test))
    if weight is not None or boosted_from_linear:
        ds = fd.dataset.subset(list(range(len(rows)))).construct()
        if weight is not None:
            ds.set_weight(weight)
        if boosted_from_linear:
            base = LinearBase.fit(X.iloc[rows], y[rows], categorical, weight=weight, seed=seed)
            ds.set_init_score(base.margin(X.iloc[rows]))
            base_valid, base_test = base.margin(X.iloc[valid_rows]), base.margin(X.iloc[fd.test])
    booster = lgb.train({**params, "metric": "None"}, ds, num_boost_round=n_trees)
    trees_valid = base_valid + np.asarray(booster.predict(X.iloc[valid_rows], raw_score=True))
    trees_test = base_test + np.asarray(booster.predict(X.iloc[fd.test], raw_score=True))
    if boosted_from_linear:  # never blended: the linear part is in the trees' margin already
        return _FoldRefit(
            trees_valid, trees_test, np.zeros_like(base_valid), np.zeros_like(base_test)
        )
    used = split_features(booster, X.columns)
    lin = LinearBase.fit(X.iloc[rows][used], y[rows], categorical, weight=weight, seed=seed)
    return _FoldRefit(
        trees_valid, trees_test, lin.margin(X.iloc[valid_rows]), lin.margin(X.iloc[fd.test])
    )


def split_features(booster: lgb.Booster, columns: Sequence[Any]) -> list[Any]:
    """The columns the trees split on at least once: what a blend's logistic regression may
    use. A column the trees never chose (a noise attribute, a constant) would only let the
    linear part fit noise that a rep then reads as a reason."""
    counts = booster.feature_importance("split")
    return [c for c, n in zip(columns, counts, strict=True) if n > 0]


def _one_se_choice(names: Sequence[Any], losses: Mapping[Any, list[np.ndarray]]) -> Any:
    """The first (simplest) name whose mean-over-folds loss is within one standard error of the
    best, the error from paired per-row differences within each fold."""
    mean = {c: float(np.mean([v.mean() for v in losses[c]])) for c in names}
    best = min(names, key=lambda c: mean[c])
    for c in names:
        diffs = [a - b for a, b in zip(losses[c], losses[best], strict=True)]
        se = math.sqrt(sum(d.var(ddof=1) / len(d) for d in diffs if len(d) > 1)) / len(diffs)
        if mean[c] - mean[best] <= se:
            return c
    return best  # pragma: no cover - best always qualifies


def _fit_calibration(
    method: str, margin: np.ndarray, y: np.ndarray, key: np.ndarray, half_life: float
) -> Calibration:
    if method == "isotonic":
        return Calibration.fit(margin, y, "isotonic")
    weight = _recency(key, half_life) if method == "platt_recent" else None
    return _platt(margin, y, weight)


# --------------------------------------------------------------------------------------------
# The result, its verdict and the entry points.


@dataclass(frozen=True)
class Verdict:
    """Whether the backtest shows the model is worth shipping, and a one-line reason."""

    ready: bool
    reason: str


@dataclass
class BacktestResult:
    """Everything the backtest measured and chose (see the module docstring).

    Attributes
    ----------
    folds : list of Fold
        The folds that were used (skipped ones are only in ``skipped``).
    skipped : list of str
        One note per skipped fold.
    remarks : list of str
        Other notes on folds that were used (e.g. an inner split that could not be purged).
    per_fold : DataFrame
        One row per fold x model: fold, test window, training rows/positives, then the metrics.
    summary : DataFrame
        model, metric, mean, lo, hi (95% t-interval over folds), n_folds.
    differences : DataFrame
        baseline, metric, mean, lo, hi, n_folds of the paired ``leadml - baseline`` per fold.
    pooled : DataFrame
        One row per model: the metrics of all its out-of-fold rows taken together. Per-fold
        ECE on a few hundred rows is mostly binning noise (about 0.04 for 900 rows at a 40%
        rate even when perfectly calibrated), so calibration is judged on the pooled rows.
    search : DataFrame
        The candidates compared: stage, candidate, half_life, fold, log_loss, best_iteration.
    calibration_check : DataFrame
        method, fold, log_loss of the calibration cross-check.
    candidate : str
        The chosen candidate; ``overrides`` are its changes to the given parameters,
        ``params`` the full LightGBM parameters the folds used and ``linear`` whether the trees
        boost from a logistic regression's margin.
    n_trees : int
        Trees for the refit: the median of ``best_iterations`` (one per fold).
    half_life : Timedelta, number or None
        Recency half-life in ``t``'s units; None = unweighted.
    calibration_method : str
        ``platt``, ``platt_recent`` or ``isotonic``; ``calibration`` is the mapping (margin to
        probability) fit on all out-of-fold margins.
    oof : DataFrame
        Out-of-fold rows of the chosen setting: row (position in X), fold, y, margin and the
        out-of-sample calibrated probability.
    """

    folds: list[Fold]
    skipped: list[str]
    per_fold: pd.DataFrame
    summary: pd.DataFrame
    differences: pd.DataFrame
    pooled: pd.DataFrame
    search: pd.DataFrame
    calibration_check: pd.DataFrame
    candidate: str
    overrides: dict[str, Any]
    params: dict[str, Any]
    n_trees: int
    best_iterations: list[int]
    half_life: Any
    calibration_method: str
    calibration: Calibration
    oof: pd.DataFrame
    categorical: list[str]
    purge: Any
    seed: int
    n_rows: int
    n_positives: int
    subsampled: bool = False
    remarks: list[str] = field(default_factory=list)
    linear: bool = False
    linear_weight: float | None = None

    @property
    def verdict(self) -> Verdict:
        return readiness(self)

    @property
    def chosen(self) -> str:
        """The chosen model in words: the candidate, and the blend weight when blended."""
        if self.linear_weight is None:
            return self.candidate
        return f"{self.candidate} + {self.linear_weight:.3g} x linear"

    def metric(self, model: str, metric: str) -> tuple[float, float, float]:
        """(mean, lo, hi) of one model's metric over the folds."""
        r = self.summary[(self.summary["model"] == model) & (self.summary["metric"] == metric)]
        if r.empty:
            return math.nan, math.nan, math.nan
        return float(r["mean"].iloc[0]), float(r["lo"].iloc[0]), float(r["hi"].iloc[0])

    def difference(self, baseline: str, metric: str) -> tuple[float, float, float]:
        """(mean, lo, hi) of the paired per-fold difference ``leadml - baseline``."""
        d = self.differences
        r = d[(d["baseline"] == baseline) & (d["metric"] == metric)]
        if r.empty:
            return math.nan, math.nan, math.nan
        return float(r["mean"].iloc[0]), float(r["lo"].iloc[0]), float(r["hi"].iloc[0])

    def to_dict(self, *, include_oof: bool = False) -> dict[str, Any]:
        """JSON-able summary for the model bundle (out-of-fold rows only on request: they grow
        with the data)."""
        v = self.verdict
        out: dict[str, Any] = {
            "folds": [f.to_dict() for f in self.folds],
            "skipped": list(self.skipped),
            "remarks": list(self.remarks),
            "chosen": {
                "candidate": self.candidate,
                "overrides": jsonable(self.overrides),
                "linear_base": self.linear,
                "linear_weight": self.linear_weight,
                "params": jsonable(self.params),
                "n_trees": self.n_trees,
                "best_iterations": list(self.best_iterations),
                "half_life": jsonable(self.half_life),
                "calibration_method": self.calibration_method,
                "calibration": self.calibration.to_dict(),
            },
            "verdict": {"ready": v.ready, "reason": v.reason},
            "per_fold": jsonable(self.per_fold.to_dict(orient="records")),
            "summary": jsonable(self.summary.to_dict(orient="records")),
            "differences": jsonable(self.differences.to_dict(orient="records")),
            "pooled": jsonable(self.pooled.to_dict(orient="records")),
            "search": jsonable(self.search.to_dict(orient="records")),
            "calibration_check": jsonable(self.calibration_check.to_dict(orient="records")),
            "categorical": list(self.categorical),
            "purge": jsonable(self.purge),
            "seed": self.seed,
            "rows": self.n_rows,
            "positives": self.n_positives,
            "subsampled": self.subsampled,
        }
        if include_oof:
            out["oof"] = jsonable(self.oof.to_dict(orient="list"))
        json.dumps(out, allow_nan=False)  # fail here, not in the bundle writer
        return out

    def format(self) -> str:
        """Compact text table for the CLI."""
        models = [m for m in MODELS if (self.summary["model"] == m).any()]
        cols = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_10")
        f0, f1 = self.folds[0], self.folds[-1]
        test_rows = int(self.per_fold.loc[self.per_fold["model"] == "leadml", "rows"].sum())
        hl = "none" if self.half_life is None else str(self.half_life)
        lines = [
            f"backtest: {len(self.folds)} fold(s) testing {f0.test_start} .. {f1.test_end}, "
            f"{test_rows:,} test rows" + (f", {len(self.skipped)} skipped" if self.skipped else ""),
            f"chosen: {self.chosen}, {self.n_trees} trees, recency half-life {hl}, "
            f"calibration {self.calibration_method}",
            f"  {'model':<13}" + "".join(f"{c:>22}" for c in cols),
        ]
        for m in models:
            cells = []
            for c in cols:
                mean, lo, hi = self.metric(m, c)
                cells.append(
                    f"{mean:.3f} [{lo:.3f}, {hi:.3f}]" if math.isfinite(lo) else f"{mean:.3f}"
                )
            lines.append(f"  {m:<13}" + "".join(f"{x:>22}" for x in cells))
        for b in models[1:]:
            mean, lo, hi = self.difference(b, "roc_auc")
            ci = f" [{lo:+.3f}, {hi:+.3f}]" if math.isfinite(lo) else ""
            lines.append(f"  leadml - {b:<12} ROC AUC {mean:+.3f}{ci}")
        ece = self.pooled.set_index("model")["ece"]
        lines.append(
            "  ECE of the pooled out-of-fold rows: "
            + ", ".join(f"{m} {ece[m]:.3f}" for m in models if m in ece.index)
        )
        lines.extend(f"  {note}" for note in [*self.skipped, *self.remarks])
        lines.append(self.verdict.reason)
        return "\n".join(lines)


def readiness(result: BacktestResult) -> Verdict:
    """Is the model ready to ship? (the rule is in the module docstring, "Readiness").

    Ready only if, over at least two folds: the lower end of leadml's mean ROC AUC interval is
    above 0.5; its mean log loss is below the base rate's; and, against the baseline with the
    highest mean ROC AUC (logistic, default LightGBM or rule), it is not worse beyond the
    interval by a margin that matters: the upper end of the paired difference interval is at
    least ``-MATERIAL[metric]`` (0.01 ROC AUC; 2% of the baseline's PR AUC). Tiny but consistent
    differences (a third decimal on four folds) are not a reason to keep a model from reps.
    """
    auc, lo, hi = result.metric("leadml", "roc_auc")
    auc_txt = f"ROC AUC {auc:.3f} [{lo:.3f}, {hi:.3f}]"
    k = len(result.folds)
    if k < 2:
        return Verdict(
            False,
            f"not ready: {auc_txt} from {k} usable fold; one fold cannot tell a model from "
            "noise (add history or lower the purge so that two folds have both classes)",
        )
    if not lo > 0.5:
        return Verdict(False, f"not ready: {auc_txt} does not beat the base rate (0.5)")
    ll = result.metric("leadml", "log_loss")[0]
    ll_base = result.metric("base_rate", "log_loss")[0]
    if not ll < ll_base:
        return Verdict(
            False, f"not ready: log loss {ll:.4f} is not below the base rate's {ll_base:.4f}"
        )
    others = [
        b for b in ("logistic", "lgbm_default", "rule") if (result.summary["model"] == b).any()
    ]
    best = max(others, key=lambda b: result.metric(b, "roc_auc")[0])
    for metric, label in (("roc_auc", "ROC AUC"), ("pr_auc", "PR AUC")):
        d, dlo, dhi = result.difference(best, metric)
        margin = MATERIAL[metric] * (result.metric(best, metric)[0] if metric == "pr_auc" else 1)
        if dhi < -margin:
            return Verdict(
                False,
                f"not ready: {label} is significantly worse than the {best} baseline "
                f"(difference {d:+.3f} [{dlo:+.3f}, {dhi:+.3f}]); {auc_txt}",
            )
    d, dlo, dhi = result.difference(best, "roc_auc")
    return Verdict(
        True,
        f"ready: {auc_txt} vs base rate 0.5, best baseline {best} "
        f"{result.metric(best, 'roc_auc')[0]:.3f} (difference {d:+.3f} [{dlo:+.3f}, {dhi:+.3f}]); "
        f"log loss {ll:.4f} vs base rate {ll_base:.4f}; {k} folds",
    )


def run_backtest(
    X: pd.DataFrame,
    y: Any,
    t: Any,
    *,
    categorical: Sequence[str],
    params: Mapping[str, Any],
    purge: Any,
    n_folds: int = 4,
    rule: Any | None = None,
    candidates: Sequence[Candidate] | None = None,
    half_lives: Sequence[Any] | None = None,
    seed: int = 42,
    n_threads: int | None = None,
    test_fraction: float = 0.4,
    min_train_rows: int = 100,
    max_train_rows: int | None = 200_000,
    search_folds: int | None = 2,
    max_trees: int = 300,
    early_stopping_rounds: int = 50,
    ece_bins: int = 10,
    allow_isotonic: bool = True,
    blend_weights: Sequence[float] = BLEND_WEIGHTS,
) -> BacktestResult:
    """Rolling-origin backtest: folds, choices, baselines and metrics (see the module docs).

    Parameters
    ----------
    X : DataFrame
        Features (pandas ``category`` columns are LightGBM-native categoricals).
    y : array-like of 0/1
        Labels.
    t : array-like
        Each row's time (datetimes) or order key (numbers).
    categorical : sequence of str
        Categorical feature columns.
    params : mapping
        Plain LightGBM parameters (e.g. ``training.lgb_params(ModelConfig(), n_train)``).
    purge : Timedelta or number
        Label-window width in ``t``'s units (event mode: horizon + gap; flat mode: 0).
    n_folds : int
        Number of test windows.
    rule : array-like, optional
        The marketer's score per row, higher = call first (missing = called last).
    candidates : sequence of Candidate, optional
        Parameter candidates, simplest first (default :func:`default_candidates`).
    half_lives : sequence, optional
        Recency half-lives in ``t``'s units to try (default: a half and a quarter of the span;
        pass ``()`` for none).
    seed : int
        Seeds subsampling and every LightGBM fit (overrides ``params["seed"]``).
    n_threads : int, optional
        LightGBM threads (overrides ``params["num_threads"]``).
    test_fraction, min_train_rows
        See :func:`make_folds`.
    max_train_rows : int or None
        Fold training parts are uniformly subsampled to this many rows (None: never), which
        bounds the cost on large tables; the refit always uses every row.
    search_folds : int or None
        How many of the newest folds compare candidates (None: all).
    max_trees, early_stopping_rounds : int
        Boosting rounds and early-stopping patience of the fold fits.
    ece_bins : int
        Bins of the expected calibration error.
    allow_isotonic : bool
        Whether isotonic calibration may be chosen (it breaks the exact additivity of reasons
        on the calibrated scale; Platt and recency-weighted Platt keep it).
    blend_weights : sequence of float
        Weights of a logistic regression's margin added to the trees' margin to try (module
        docs, "Blend"); ``()`` never blends.

    Returns
    -------
    BacktestResult

    Raises
    ------
    BacktestError
        When no fold has both classes in its training part, inner split and test window.
    """
    y = np.asarray(y).astype(int)
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y must hold 0/1 labels")
    key, kind = _as_key(t)
    if len(key) != len(y):
        raise ValueError(f"t has {len(key)} values but y has {len(y)} rows")
    p_purge = _as_width(purge, kind, "purge")
    if rule is not None:
        rule = np.asarray(rule, dtype=float)
        if rule.shape != (len(y),):
            raise ValueError(f"rule must be one score per row ({len(y)}), got shape {rule.shape}")
    categorical = list(categorical)
    numeric = [c for c in X.columns if c not in categorical]
    base = _prepare_params(params, seed, n_threads)
    cands = list(candidates) if candidates is not None else default_candidates(base)
    if not cands:
        raise ValueError("candidates must not be empty")
    span = key.max() - key.min()
    if half_lives is None:
        hls = [span / 2, span / 4] if span > 0 else []
    else:
        hls = [_as_width(h, kind, "half_life") for h in half_lives]
    hls = sorted({float(h) for h in hls if h > 0}, reverse=True)  # milder (longer) first

    folds = make_folds(
        t,
        n_folds,
        purge=purge,
        test_fraction=test_fraction,
        min_train_rows=min_train_rows,
    )

    # 1. Fold data: rows, subsample, inner split, one Dataset per fold; skip unusable folds.
    prepared: list[_FoldData] = []
    notes: list[str] = []
    remarks: list[str] = []
    found: list[str] = []
    subsampled = False
    for f in folds:
        m_tr, m_te = f._masks_key(key, kind)
        tr, te = np.flatnonzero(m_tr), np.flatnonzero(m_te)
        if max_train_rows is not None and len(tr) > max_train_rows:
            rng = np.random.default_rng([seed, f.index])
            tr = np.sort(rng.choice(tr, max_train_rows, replace=False))
            subsampled = True
        ptr, pte = int(y[tr].sum()), int(y[te].sum())
        found.append(
            f"fold {f.index}: train {len(tr)} rows / {ptr} positives, "
            f"test {len(te)} rows / {pte} positives"
        )
        if not 0 < ptr < len(tr):
            notes.append(_describe(f, f"its {len(tr)} training rows hold {ptr} positives"))
            continue
        if not 0 < pte < len(te):
            notes.append(_describe(f, f"its {len(te)} test rows hold {pte} positives"))
            continue
        split = _inner_split(key[tr], y[tr], p_purge)
        if isinstance(split, str) and p_purge:
            # A training part shorter than the purge (few observation points, a long horizon):
            # early-stop on an unpurged inner split. The test window stays purged, so the
            # fold's scores stay honest; only its tree count and inner Platt may be optimistic.
            unpurged = _inner_split(key[tr], y[tr], 0)
            if not isinstance(unpurged, str):
                remarks.append(
                    f"fold {f.index}: inner early-stopping split not purged ({split}; "
                    "the training part is shorter than the purge)"
                )
                split = unpurged
        if isinstance(split, str):
            notes.append(_describe(f, split))
            continue
        ds = lgb.Dataset(
            X.iloc[tr],
            y[tr],
            **_lgb_names(X.columns, categorical),
            # Several parameter sets train on these bins; pre-filtering would tie it to one.
            # (The raw rows are freed: subsets and fits need only the bins.)
            params={"feature_pre_filter": False, "verbosity": -1, "seed": seed},
        ).construct()
        prepared.append(_FoldData(f, tr, te, split[0], split[1], ds))
    if not prepared:
        raise BacktestError(
            "no usable fold: every fold lacks positives or negatives in its training part, its "
            f"inner early-stopping split or its test window ({'; '.join(found)}); add history, "
            "lower n_folds or min_train_rows, or shorten the horizon (purge)"
        )

    # 2. Choices on the newest folds: parameters, then recency weighting (module docs).
    fits: dict[tuple[str, float | None], dict[int, _FitOut]] = {}
    search_rows: list[dict[str, Any]] = []
    nsearch = len(prepared) if search_folds is None else max(1, min(search_folds, len(prepared)))
    search = prepared[-nsearch:]
    by_name = {c.name: c for c in cands}

    def run(cand: str, hl: float | None, fds: Sequence[_FoldData], stage: str) -> None:
        out = fits.setdefault((cand, hl), {})
        for fd in fds:
            if fd.fold.index in out:
                continue
            out[fd.fold.index] = r = _fit_fold(
                fd,
                by_name[cand].params(base),
                key,
                y,
                X,
                hl,
                max_trees,
                early_stopping_rounds,
                linear=by_name[cand].linear,
                categorical=categorical,
                seed=seed,
            )
            search_rows.append(
                {
                    "stage": stage,
                    "candidate": cand,
                    "half_life": None if hl is None else _ext_width(hl, kind),
                    "fold": fd.fold.index,
                    "log_loss": float(r.loss.mean()),
                    "best_iteration": r.best_iteration,
                }
            )

    def losses(cfg: tuple[str, float | None]) -> list[np.ndarray]:
        return [fits[cfg][fd.fold.index].loss for fd in search]

    for c in cands:
        run(c.name, None, search, "parameters")
    chosen = _one_se_choice(
        [c.name for c in cands], {c.name: losses((c.name, None)) for c in cands}
    )
    for h in hls:
        run(chosen, h, search, "recency")
    options: list[float | None] = [None, *hls]
    half_life = _one_se_choice(options, {h: losses((chosen, h)) for h in options})
    run(chosen, half_life, prepared, "all folds")
    final = fits[(chosen, half_life)]

    best_iters = [final[fd.fold.index].best_iteration for fd in prepared]
    n_trees = max(1, int(round(float(np.median(best_iters)))))

    # 2b. Each fold refit on its whole training part, then the blend (module docs).
    fold_refits = {
        fd.fold.index: _refit_fold(
            fd,
            by_name[chosen].params(base),
            final[fd.fold.index].best_iteration,
            by_name[chosen].linear,
            key,
            y,
            X,
            half_life,
            categorical,
            seed,
        )
        for fd in prepared
    }

    def refined(fd: _FoldData, w: float | None) -> np.ndarray:
        m = fold_refits[fd.fold.index].margins(w)[1]
        return _row_log_loss(y[fd.test], _platt(m, y[fd.test])(m))

    linear_weight: float | None = None
    tried = sorted({float(w) for w in blend_weights if w > 0}, key=lambda w: abs(math.log(w)))
    if tried and not by_name[chosen].linear:
        weights: list[float | None] = [None, *tried]
        blend_losses = {w: [refined(fd, w) for fd in search] for w in weights}
        for w in tried:
            for fd, loss in zip(search, blend_losses[w], strict=True):
                search_rows.append(
                    {
                        "stage": "blend",
                        "candidate": f"{chosen} + {w:.3g} x linear",
                        "half_life": None if half_life is None else _ext_width(half_life, kind),
                        "fold": fd.fold.index,
                        "log_loss": float(loss.mean()),
                        "best_iteration": final[fd.fold.index].best_iteration,
                    }
                )
        linear_weight = _one_se_choice(weights, blend_losses)
    for fd in prepared:
        valid_m, test_m = fold_refits[fd.fold.index].margins(linear_weight)
        out = final[fd.fold.index]
        y_valid = y[fd.train[fd.inner_valid]]
        loss = _row_log_loss(y[fd.test], _platt(valid_m, y_valid)(test_m))
        final[fd.fold.index] = _FitOut(out.best_iteration, test_m, valid_m, loss)

    # 3. Calibration: cross-check on earlier folds' out-of-fold rows, then fit on all of them.
    oof_rows = np.concatenate([fd.test for fd in prepared])
    oof_fold = np.concatenate([np.full(len(fd.test), fd.fold.index) for fd in prepared])
    oof_margin = np.concatenate([final[fd.fold.index].test_margin for fd in prepared])
    oof_key, oof_y = key[oof_rows], y[oof_rows]
    cal_hl = float(half_life) if half_life is not None else (float(span) / 4 or 1.0)
    check: dict[str, list[np.ndarray]] = {m: [] for m in CALIBRATION_METHODS}
    check_rows: list[dict[str, Any]] = []
    prior_fits: dict[int, dict[str, Calibration]] = {}
    for fd in prepared:
        start, _, _ = fd.fold._bounds(kind)
        usable = (oof_fold < fd.fold.index) & (oof_key + p_purge < start)
        if not 0 < oof_y[usable].sum() < usable.sum():
            continue
        yk = y[fd.test]
        mk = final[fd.fold.index].test_margin
        prior_fits[fd.fold.index] = {}
        for m in CALIBRATION_METHODS:
            cal = _fit_calibration(m, oof_margin[usable], oof_y[usable], oof_key[usable], cal_hl)
            prior_fits[fd.fold.index][m] = cal
            loss = _row_log_loss(yk, cal(mk))
            check[m].append(loss)
            check_rows.append({"method": m, "fold": fd.fold.index, "log_loss": float(loss.mean())})
    method = "platt"
    if check["platt"]:
        if _better_by(check["platt_recent"], check["platt"], 1.0):
            method = "platt_recent"
        if allow_isotonic and _better_by(check["isotonic"], check[method], 2.0):
            method = "isotonic"
    calibration = _fit_calibration(method, oof_margin, oof_y, oof_key, cal_hl)

    # 4. Metrics per fold and model, on the same test rows.
    records: list[dict[str, Any]] = []
    pooled_p: dict[str, list[np.ndarray]] = {}
    oof_proba = np.empty(len(oof_rows))
    offset = 0
    for fd in prepared:
        f, tr, te = fd.fold, fd.train, fd.test
        yk = y[te]
        out = final[f.index]
        # Platt on the fold's own inner validation slice (older than the test window, scored
        # by the same model): earlier folds' models can differ in size by an order of
        # magnitude, so their margins are not on this model's scale.
        fold_cal = _platt(out.valid_margin, y[tr[fd.inner_valid]])
        probs: dict[str, np.ndarray] = {"leadml": fold_cal(out.test_margin)}
        oof_proba[offset : offset + len(te)] = probs["leadml"]
        offset += len(te)
        probs["base_rate"] = np.full(len(te), y[tr].mean())
        lr = _fit_quietly(make_logistic(numeric, categorical), X.iloc[tr], y[tr])
        probs["logistic"] = lr.predict_proba(X.iloc[te])[:, 1]
        default = lgb.train(_lgb_default_params(seed, n_threads), fd.dataset, num_boost_round=100)
        probs["lgbm_default"] = np.asarray(default.predict(X.iloc[te]))
        if rule is not None:
            probs["rule"] = _rule_proba(rule[tr], y[tr], rule[te])
        for model, p in probs.items():
            pooled_p.setdefault(model, []).append(p)
            metrics = evaluate(yk, p, tiers=_rank_tiers(p), n_bins=ece_bins)
            records.append(
                {
                    "fold": f.index,
                    "test_start": f.test_start,
                    "test_end": f.test_end,
                    "model": model,
                    "train_rows": len(tr),
                    "train_positives": int(y[tr].sum()),
                    "positives": int(yk.sum()),
                    **metrics,
                }
            )
    per_fold = pd.DataFrame.from_records(records)
    summary, differences = _summarise(per_fold)
    pooled = pd.DataFrame.from_records(
        [
            {"model": m, **evaluate(oof_y, np.concatenate(ps), n_bins=ece_bins)}
            for m, ps in pooled_p.items()
        ]
    )

    return BacktestResult(
        folds=[fd.fold for fd in prepared],
        skipped=notes,
        remarks=remarks,
        per_fold=per_fold,
        summary=summary,
        differences=differences,
        pooled=pooled,
        search=pd.DataFrame.from_records(search_rows),
        calibration_check=pd.DataFrame.from_records(
            check_rows, columns=["method", "fold", "log_loss"]
        ),
        candidate=chosen,
        overrides=dict(by_name[chosen].overrides),
        linear=by_name[chosen].linear,
        linear_weight=linear_weight,
        params={**by_name[chosen].params(base), "num_iterations": n_trees},
        n_trees=n_trees,
        best_iterations=best_iters,
        half_life=None if half_life is None else _ext_width(half_life, kind),
        calibration_method=method,
        calibration=calibration,
        oof=pd.DataFrame(
            {
                "row": oof_rows,
                "fold": oof_fold,
                "y": oof_y,
                "margin": oof_margin,
                "proba": oof_proba,
            }
        ),
        categorical=categorical,
        purge=_ext_width(p_purge, kind),
        seed=seed,
        n_rows=len(y),
        n_positives=int(y.sum()),
        subsampled=subsampled,
    )


def _better_by(challenger: list[np.ndarray], incumbent: list[np.ndarray], n_se: float) -> bool:
    """Is the challenger's mean-over-folds loss lower by more than ``n_se`` paired standard
    errors *and* by more than ``MIN_GAIN`` of the incumbent's loss? (Two near-identical
    calibrations have tiny paired errors: significance alone would switch for nothing.)"""
    diffs = [a - b for a, b in zip(challenger, incumbent, strict=True)]
    mean = float(np.mean([d.mean() for d in diffs]))
    se = math.sqrt(sum(d.var(ddof=1) / len(d) for d in diffs if len(d) > 1)) / len(diffs)
    base = float(np.mean([v.mean() for v in incumbent]))
    return mean < -n_se * se and mean < -MIN_GAIN * base


def _rule_proba(r_train: np.ndarray, y_train: np.ndarray, r_test: np.ndarray) -> np.ndarray:
    """The marketer's score as a probability: Platt on standardised training scores; a missing
    score ranks below every known one."""
    finite = r_train[np.isfinite(r_train)]
    if len(finite) == 0:
        return np.full(len(r_test), y_train.mean())
    lo, mu, sd = finite.min(), finite.mean(), finite.std() or 1.0

    def z(r: np.ndarray) -> np.ndarray:
        return (np.where(np.isfinite(r), r, lo - sd) - mu) / sd

    return _platt(z(r_train), y_train)(z(r_test))


def _summarise(per_fold: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = []
    for model, g in per_fold.groupby("model", sort=False):
        for metric in SUMMARY_METRICS:
            mean, lo, hi, k = _t_interval(g[metric].to_numpy())
            rows.append(
                {"model": model, "metric": metric, "mean": mean, "lo": lo, "hi": hi, "n_folds": k}
            )
    summary = pd.DataFrame.from_records(rows)
    wide = per_fold.set_index(["fold", "model"])
    diffs = []
    for b in BASELINES:
        if b not in per_fold["model"].values:
            continue
        for metric in SUMMARY_METRICS[1:]:
            d = wide[metric].xs("leadml", level="model") - wide[metric].xs(b, level="model")
            mean, lo, hi, k = _t_interval(d.to_numpy())
            diffs.append(
                {"baseline": b, "metric": metric, "mean": mean, "lo": lo, "hi": hi, "n_folds": k}
            )
    return summary, pd.DataFrame.from_records(diffs)


def refit(
    X: pd.DataFrame,
    y: Any,
    t: Any,
    result: BacktestResult,
    params: Mapping[str, Any],
    *,
    n_threads: int | None = None,
) -> tuple[lgb.Booster, LinearBase | None]:
    """Fit the shipped model on every labelled row with the backtest's choices.

    ``params`` are the same plain parameters the backtest got; the chosen candidate's overrides,
    ``result.n_trees`` trees (no early stopping) and, if chosen, recency weights with age from
    the newest row are applied. Returns the booster and, when the chosen candidate boosts from a
    linear base, that logistic regression (fit first, on the same rows and weights; the model's
    margin is then ``linear.margin(X) + booster.predict(X, raw_score=True)``). Calibrate the
    margins with ``result.calibration``.
    """
    y = np.asarray(y).astype(int)
    key, kind = _as_key(t)
    if not len(X) == len(y) == len(key):
        raise ValueError(f"X, y and t must have the same rows ({len(X)}, {len(y)}, {len(key)})")
    p = {**_prepare_params(params, result.seed, n_threads), **result.overrides, "metric": "None"}
    weight = None
    if result.half_life is not None:
        weight = _recency(key, _as_width(result.half_life, kind, "half_life"))
    linear = None
    init = None
    if result.linear:
        linear = LinearBase.fit(X, y, result.categorical, weight=weight, seed=result.seed)
        init = linear.margin(X)
    ds = lgb.Dataset(
        X, y, weight=weight, init_score=init, **_lgb_names(X.columns, result.categorical)
    )
    booster = lgb.train(p, ds, num_boost_round=result.n_trees)
    if result.linear_weight is not None:
        used = split_features(booster, X.columns)
        linear = LinearBase.fit(X[used], y, result.categorical, weight=weight, seed=result.seed)
        linear = linear.scaled(result.linear_weight)
    return booster, linear
