"""A logistic regression the boosted trees start from: the linear base margin.

Gradient boosting from a linear base margin (``init_score``) gives a model whose log-odds are
``linear(x) + trees(x)``: where conversion is close to log-linear in the features (small tables,
drifting ones), the trees have little left to add and early stopping keeps them few, so the model
does not fall below the logistic baseline; where it is not, the trees add the curves and
interactions. Both parts stay exactly explainable, and Shapley values add over the parts:

- the linear part's contribution of feature ``j`` is ``term_j(x) - mean(term_j)`` over the rows
  it was fit on (the exact Shapley value of an additive model with that background);
- the trees' contributions are exact TreeSHAP values, as for any booster;

so ``expected value + Σ contributions = margin`` still holds for every row.

The model is stored as plain numbers (``to_dict``), never pickled. Per feature:

- numeric: missing values filled with the training median, clipped to the training 0.5% and
  99.5% quantiles (so an outlier or a drifted count cannot push a score to an extreme), scaled to
  unit variance, one coefficient, plus one for "was missing" when the feature had missing values;
- categorical: one coefficient per level with at least ``min_frequency`` training rows (missing
  is a level of its own); rare and unseen levels share the ``other`` coefficient.

Fit: scikit-learn's ``LogisticRegression`` (L2, ``C=1``, lbfgs) on a sparse design matrix, with
optional row weights (recency weighting), on at most ``max_rows`` rows (a uniform sample: a
logistic regression with a few hundred coefficients is settled by far fewer rows, and the
boosted trees still see every row).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["LinearBase"]

#: Categorical levels with fewer training rows share the ``other`` coefficient.
MIN_FREQUENCY = 20
#: Numerics are clipped to these training quantiles.
CLIP_QUANTILES = (0.005, 0.995)
_MISSING = "\x00missing"  # a level name no data can hold


_NUMERIC_PARAMS = ("fill", "lo", "hi", "center", "scale", "coef", "missing_coef")


def _numbers(col: pd.Series) -> np.ndarray:
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _levels(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, level names) of a column: -1 = missing; categorical dtypes use their codes."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.cat.codes.to_numpy(), np.asarray(col.cat.categories.astype(str), dtype=object)
    codes, uniques = pd.factorize(col.astype(object).where(col.notna(), None), use_na_sentinel=True)
    return np.asarray(codes), np.asarray([str(u) for u in uniques], dtype=object)


@dataclass(frozen=True)
class LinearBase:
    """A fitted logistic regression over a model's features, kept as plain numbers.

    ``numeric[name] = {fill, lo, hi, center, scale, coef, missing_coef}``;
    ``categorical[name] = {levels: {level: coef}, other, missing}``; ``expected[name]`` is the
    feature's mean term over the fitting rows, unweighted (the Shapley background).
    """

    intercept: float
    numeric: dict[str, dict[str, float]] = field(default_factory=dict)
    categorical: dict[str, dict[str, Any]] = field(default_factory=dict)
    expected: dict[str, float] = field(default_factory=dict)

    # ---------------------------------------------------------------------------- applying

    def _lookup(self, name: str, col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """A categorical feature's codes (-1 missing) and its coefficient per code, the
        missing coefficient last."""
        c = self.categorical[name]
        codes, names = _levels(col)
        lookup = np.array(
            [c["levels"].get(str(n), c["other"]) for n in names] + [c["missing"]], dtype="float64"
        )
        return codes, lookup

    def terms(self, X: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
        """Each feature's term, shape ``(rows, len(names))`` (zero for features without one)."""
        out = np.empty((len(X), len(names)))
        self._apply(X, names, np.zeros(len(names)), 0, out)
        return out

    def _apply(
        self, X: pd.DataFrame, names: Sequence[str], centre: np.ndarray, mode: int, out: np.ndarray
    ) -> None:
        """:func:`leadml._kernels.linear_terms` over ``X``: one compiled pass writes the rows in
        place (a column at a time over a row-major array would touch every row once per
        feature); the values are the numpy formula's to the bit (see the kernel)."""
        from leadml._kernels import linear_terms

        used = [j for j, n in enumerate(names) if n in self.numeric or n in self.categorical]
        values = np.empty((len(X), len(used)), order="F")  # each column written whole
        params = np.zeros((len(used), 7))
        is_cat = np.zeros(len(used), dtype=np.uint8)
        lookups: list[np.ndarray] = [np.zeros(0)]
        lookup_at = np.zeros(len(used) + 1, dtype=np.int64)
        for k, j in enumerate(used):
            name = names[j]
            lookup_at[k + 1] = lookup_at[k]
            if name in self.numeric:
                values[:, k] = _numbers(X[name])
                params[k] = [self.numeric[name][p] for p in _NUMERIC_PARAMS]
                continue
            codes, lookup = self._lookup(name, X[name])
            values[:, k] = codes
            is_cat[k] = 1
            lookups.append(lookup)
            lookup_at[k + 1] += len(lookup)
        cols = np.array(used, dtype=np.int64)
        table = np.concatenate(lookups)
        linear_terms(values, cols, is_cat, params, table, lookup_at, centre, mode, out)

    def margin(self, X: pd.DataFrame) -> np.ndarray:
        """The linear log-odds of every row."""
        return self.intercept + self.terms(X, self._names()).sum(axis=1)

    def _names(self) -> list[str]:
        # One fixed order (JSON sorts the keys): the same sums to the last bit after a reload.
        return sorted({*self.numeric, *self.categorical})

    def contributions(
        self, X: pd.DataFrame, names: Sequence[str], add_to: np.ndarray | None = None
    ) -> np.ndarray:
        """Exact Shapley values, laid out like TreeSHAP: ``(rows, len(names) + 1)``, the last
        column the expected value; each row sums to :meth:`margin`. ``add_to``: an array of
        that shape the values are added to, in place (the trees' own), and returned."""
        centre = np.array([self.expected.get(n, 0.0) for n in names])
        expected = self.intercept + float(np.sum([self.expected[k] for k in sorted(self.expected)]))
        if add_to is not None:
            self._apply(X, names, centre, 2, add_to)  # add_to[:, :-1] += terms - centre
            add_to[:, -1] += expected
            return add_to
        out = np.empty((len(X), len(names) + 1))
        self._apply(X, names, centre, 1, out)  # out[:, :-1] = terms - centre
        out[:, -1] = expected
        return out

    def scaled(self, weight: float) -> LinearBase:
        """The same model with every log-odds term (and the intercept) times ``weight``: its
        margin and its Shapley values scale exactly, which is how a blend weighs this part.

        >>> lin = LinearBase(0.5, {}, {"c": {"levels": {"x": 1.0}, "other": 0.0, "missing": 0.0}},
        ...                  {"c": 0.4})
        >>> lin.scaled(2.0).intercept, lin.scaled(2.0).categorical["c"]["levels"]["x"]
        (1.0, 2.0)
        """
        w = float(weight)
        numeric = {
            k: {**v, "coef": w * v["coef"], "missing_coef": w * v["missing_coef"]}
            for k, v in self.numeric.items()
        }
        categorical = {
            k: {
                "levels": {a: w * b for a, b in v["levels"].items()},
                "other": w * v["other"],
                "missing": w * v["missing"],
            }
            for k, v in self.categorical.items()
        }
        expected = {k: w * v for k, v in self.expected.items()}
        return LinearBase(w * self.intercept, numeric, categorical, expected)

    # ---------------------------------------------------------------------------- storing

    def to_dict(self) -> dict[str, Any]:
        return {
            "intercept": self.intercept,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "expected": self.expected,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LinearBase:
        return cls(
            float(d["intercept"]),
            {k: {a: float(b) for a, b in v.items()} for k, v in d["numeric"].items()},
            {
                k: {
                    "levels": {str(a): float(b) for a, b in v["levels"].items()},
                    "other": float(v["other"]),
                    "missing": float(v["missing"]),
                }
                for k, v in d["categorical"].items()
            },
            {k: float(v) for k, v in d["expected"].items()},
        )

    # ---------------------------------------------------------------------------- fitting

    @classmethod
    def fit(
        cls,
        X: pd.DataFrame,
        y: Any,
        categorical: Sequence[str] = (),
        *,
        weight: Any | None = None,
        C: float = 1.0,
        min_frequency: int = MIN_FREQUENCY,
        max_rows: int | None = 200_000,
        seed: int = 0,
    ) -> LinearBase:
        """Fit on ``X`` (every column a feature) and 0/1 ``y`` (see the module docs).

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> rng = np.random.default_rng(0)
        >>> X = pd.DataFrame({"a": rng.normal(size=400), "c": rng.choice(["x", "y"], 400)})
        >>> y = (X["a"] + (X["c"] == "y") + rng.normal(size=400) > 0.5).astype(int)
        >>> lin = LinearBase.fit(X, y, ["c"])
        >>> phi = lin.contributions(X, ["a", "c"])
        >>> bool(np.allclose(phi.sum(axis=1), lin.margin(X)))
        True
        """
        from scipy import sparse
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y).astype(int)
        w = None if weight is None else np.asarray(weight, dtype=float)
        if max_rows is not None and len(y) > max_rows:
            keep = np.sort(np.random.default_rng(seed).choice(len(y), max_rows, replace=False))
            X, y = X.iloc[keep], y[keep]
            w = None if w is None else w[keep]
        n = len(y)
        cats = [c for c in X.columns if c in set(categorical)]
        blocks: list[Any] = []
        layout: list[tuple[str, str, Any]] = []  # (feature, part, level)
        numeric: dict[str, dict[str, float]] = {}
        for name in X.columns:
            if name in cats:
                continue
            x = pd.to_numeric(X[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            miss = np.isnan(x)
            if miss.all():
                continue
            lo, hi = np.quantile(x[~miss], CLIP_QUANTILES)
            fill = float(np.median(x[~miss]))
            v = np.clip(np.where(miss, fill, x), lo, hi)
            center, scale = float(v.mean()), float(v.std())
            if not scale > 0:
                continue
            numeric[name] = {
                "fill": fill,
                "lo": float(lo),
                "hi": float(hi),
                "center": center,
                "scale": scale,
                "coef": 0.0,
                "missing_coef": 0.0,
            }
            blocks.append(sparse.csc_matrix(((v - center) / scale)[:, None]))
            layout.append((name, "coef", None))
            if miss.any():
                blocks.append(sparse.csc_matrix(miss.astype("float64")[:, None]))
                layout.append((name, "missing_coef", None))
        categorical_out: dict[str, dict[str, Any]] = {}
        for name in cats:
            codes, names = _levels(X[name])
            counts = np.bincount(codes + 1, minlength=len(names) + 1)  # [missing, levels...]
            kept = [i for i in range(len(names)) if counts[i + 1] >= min_frequency]
            entry: dict[str, Any] = {"levels": {}, "other": 0.0, "missing": 0.0}
            col_of = np.full(len(names) + 1, -1)  # index: code + 1
            k = 0
            if counts[0] >= min_frequency:
                col_of[0] = k
                layout.append((name, "missing", None))
                k += 1
            for i in kept:
                col_of[i + 1] = k
                layout.append((name, "level", str(names[i])))
                k += 1
            categorical_out[name] = entry
            if k == 0:
                continue
            col = col_of[codes + 1]
            rows = np.flatnonzero(col >= 0)
            blocks.append(
                sparse.csc_matrix(
                    (np.ones(len(rows)), (rows, col[rows])), shape=(n, k), dtype="float64"
                )
            )
        if blocks:
            design = sparse.hstack(blocks, format="csr")
        else:
            design = sparse.csr_matrix((n, 0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if design.shape[1] == 0:
                p = np.clip(np.average(y, weights=w), 1e-6, 1 - 1e-6)
                intercept, coefs = float(np.log(p / (1 - p))), np.zeros(0)
            else:
                lr = LogisticRegression(C=C, max_iter=2000).fit(design, y, sample_weight=w)
                intercept, coefs = float(lr.intercept_[0]), lr.coef_[0]
        for (name, part, level), b in zip(layout, coefs, strict=True):
            if part in ("coef", "missing_coef"):
                numeric[name][part] = float(b)
            elif part == "missing":
                categorical_out[name]["missing"] = float(b)
            else:
                categorical_out[name]["levels"][level] = float(b)
        # Rare levels are all-zero rows of the design: they share the reference, coefficient 0.
        numeric = dict(sorted(numeric.items()))
        categorical_out = dict(sorted(categorical_out.items()))
        fitted = cls(intercept, numeric, categorical_out, {})
        names_all = fitted._names()
        mean_terms = fitted.terms(X, names_all).mean(axis=0) if n else []
        expected = {nm: float(v) for nm, v in zip(names_all, mean_terms, strict=True)}
        return cls(intercept, numeric, categorical_out, expected)
