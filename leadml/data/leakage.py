"""Leakage guard: find the columns that give the answer away before a model is trained.

CRM exports mix what was known when a lead arrived with what the sales team wrote *after* working
it: a status, tags from the last call, a quality rating, the "last activity" at export time. A
model trained on those looks brilliant offline and is useless on a fresh lead, because the field is
empty (or different) when the lead has to be scored. :func:`check_leakage` looks at every column in
two independent ways and reports each suspect with its evidence:

**It predicts too well on its own.** Each column gets a tiny out-of-fold model: its values (numbers
cut into quantile bins, missing values as a level of their own) are replaced by the smoothed target
rate of that value measured on the *other* folds, and the ROC AUC of that encoding is computed.
Out-of-fold matters: in-sample, an ID column would be a perfect predictor. A column whose AUC
reaches ``auc_threshold`` (default 0.9) alone predicts the target far better than a fit attribute
can, which in a CRM export almost always means it was written after the outcome.

**Its name or values say it is post-outcome.** Names are matched against :data:`NAME_RULES`
(status, tags, quality or rating, scores and profiles assigned internally, "last ..." snapshots,
stage, outcome words such as closed/won/lost/converted); category values against
:data:`VALUE_PATTERN` (e.g. ``'Closed by Horizzon'``, ``'Lost to EINS'``).

Every flagged column is excluded unless the caller keeps it with ``allow_columns``; a kept column
stays in the report, marked as allowed, so the decision is on record. The report prints as text
and round-trips through :meth:`LeakageReport.to_dict` (it is stored in the model bundle).

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> y = rng.integers(0, 2, 400)
>>> table = pd.DataFrame({
...     "visits": rng.poisson(3 + y),                        # an honest, weak signal
...     "call_note": np.where(y == 1, "keen", "no answer"),  # the answer itself
...     "Lead Status": rng.choice(["Open", "Working"], 400),
...     "won": y,
... })
>>> report = check_leakage(table, "won", allow_columns=["Lead Status"])
>>> report.excluded
('call_note',)
>>> report.allowed
('Lead Status',)
>>> round(report.aucs["call_note"], 2)
1.0
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "NAME_RULES",
    "VALUE_PATTERN",
    "LeakageError",
    "LeakageFinding",
    "LeakageReport",
    "check_leakage",
    "single_column_auc",
]

#: (regular expression on the normalised column name, why such a column is suspect). Names are
#: lower-cased, camelCase is split and punctuation becomes spaces before matching.
NAME_RULES: tuple[tuple[str, str], ...] = (
    (r"\bstatus(es)?\b", "a status is updated while the lead is worked"),
    (r"\btag(s|ged)?\b", "tags are assigned by sales after contacting the lead"),
    (
        r"\b(quality|rating|rated|grade|priority|temperature)\b",
        "a rating assigned by the sales team",
    ),
    (
        r"\b(scores?|scoring|index|profile)\b",
        "an internal score or profile assigned at an unknown time",
    ),
    (
        r"\b(last|latest|most recent)\b.*\b(activity|action|contact(ed)?|touch\w*|interaction|"
        r"event|engagement|call|email|update[sd]?|modified)\b",
        "a last-state snapshot taken at export time, after the outcome",
    ),
    (r"\b(stage|phase|pipeline|funnel)\b", "the funnel stage is the outcome itself"),
    (
        r"\b(outcome|result|resolution|disposition|closed?|won|lost|churn(ed)?|convert(ed|s)?|"
        r"conversion|disqualif\w*|opportunit(y|ies)|deal|enrol(l)?(ed|ment)?|purchased?|paid)\b",
        "an outcome word",
    ),
)

#: Category values that record an outcome (matched case-insensitively as whole words).
VALUE_PATTERN = (
    r"\b(closed|won(?!')|lost|converted|disqualified|churned|enrolled|purchased|paid|"
    r"not interested)\b"
)

_MIN_LEVEL_ROWS = 5  # a value pattern needs a few rows of evidence, not one typo


class LeakageError(ValueError):
    """The leakage check cannot run as asked (unknown column, unusable target)."""


@dataclass(frozen=True)
class LeakageFinding:
    """One suspect column, the evidence against it and whether it was excluded."""

    column: str
    auc: float | None
    evidence: tuple[str, ...]
    excluded: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "auc": self.auc,
            "evidence": list(self.evidence),
            "excluded": self.excluded,
        }


@dataclass(frozen=True)
class LeakageReport:
    """What :func:`check_leakage` found: suspects with evidence, and every column's AUC."""

    target: str
    n_rows: int
    auc_threshold: float
    n_folds: int
    findings: tuple[LeakageFinding, ...]
    aucs: dict[str, float] = field(default_factory=dict)

    @property
    def excluded(self) -> tuple[str, ...]:
        """Flagged columns that must not become features."""
        return tuple(f.column for f in self.findings if f.excluded)

    @property
    def allowed(self) -> tuple[str, ...]:
        """Flagged columns that the caller chose to keep."""
        return tuple(f.column for f in self.findings if not f.excluded)

    def finding(self, column: str) -> LeakageFinding | None:
        """The finding for ``column``, or None when it was not flagged."""
        return next((f for f in self.findings if f.column == column), None)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (stored in the bundle metadata)."""
        return {
            "target": self.target,
            "n_rows": self.n_rows,
            "auc_threshold": self.auc_threshold,
            "n_folds": self.n_folds,
            "findings": [f.to_dict() for f in self.findings],
            "aucs": {k: float(v) for k, v in self.aucs.items()},
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LeakageReport:
        findings = tuple(
            LeakageFinding(
                column=f["column"],
                auc=None if f["auc"] is None else float(f["auc"]),
                evidence=tuple(f["evidence"]),
                excluded=bool(f["excluded"]),
            )
            for f in raw["findings"]
        )
        return cls(
            target=raw["target"],
            n_rows=int(raw["n_rows"]),
            auc_threshold=float(raw["auc_threshold"]),
            n_folds=int(raw["n_folds"]),
            findings=findings,
            aucs={k: float(v) for k, v in raw["aucs"].items()},
        )

    def __str__(self) -> str:
        head = (
            f"Leakage check on target {self.target!r}: {self.n_rows:,} rows, single-column "
            f"out-of-fold AUC ({self.n_folds} folds), threshold {self.auc_threshold:.2f}."
        )
        if not self.findings:
            lines = [head, "  no suspect columns."]
        else:
            lines = [head]
            for f in self.findings:
                verdict = "excluded" if f.excluded else "KEPT (allow_columns)"
                auc = "n/a" if f.auc is None else f"{f.auc:.3f}"
                lines.append(f"  {verdict:<20} {f.column!r} (AUC {auc}): " + "; ".join(f.evidence))
        best = sorted(self.aucs.items(), key=lambda kv: -kv[1])[:5]
        if best:
            lines.append(
                "  strongest single columns: " + ", ".join(f"{c!r} {a:.3f}" for c, a in best)
            )
        return "\n".join(lines)


def _normalise_name(name: str) -> str:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", str(name))
    return re.sub(r"[^a-z0-9]+", " ", spaced.lower()).strip()


def _name_evidence(column: str, rules: Sequence[tuple[str, str]]) -> list[str]:
    name = _normalise_name(column)
    out = []
    for pattern, why in rules:
        m = re.search(pattern, name)
        if m:
            out.append(f"name matches {m.group(0)!r} ({why})")
    return out


def _is_categorical(s: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype))


def _value_evidence(s: pd.Series, pattern: str) -> list[str]:
    if not _is_categorical(s):
        return []
    counts = s.dropna().astype(str).value_counts()
    counts = counts[counts >= _MIN_LEVEL_ROWS]
    hits = [v for v in counts.index if re.search(pattern, v, flags=re.IGNORECASE)]
    if not hits:
        return []
    shown = ", ".join(repr(v) for v in hits[:3])
    more = f" and {len(hits) - 3} more" if len(hits) > 3 else ""
    return [f"values record an outcome ({shown}{more})"]


def _codes(s: pd.Series, n_bins: int) -> np.ndarray:
    """Integer level per row; missing values form their own level (-1 before the shift)."""
    if _is_categorical(s):
        codes, _ = pd.factorize(s.astype("string"), use_na_sentinel=True)
    else:
        x = pd.to_numeric(s, errors="coerce").astype("float64")
        present = x.notna()
        if x[present].nunique() <= n_bins:
            codes, _ = pd.factorize(x, use_na_sentinel=True)
        else:
            # Ranks make the bins equal-frequency even with heavy ties at zero.
            binned = pd.qcut(x.rank(method="average"), n_bins, labels=False, duplicates="drop")
            codes = np.where(present, binned.fillna(-1).to_numpy(), -1).astype("int64")
    return np.asarray(codes, dtype="int64") + 1


def _stratified_folds(y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold number per row, each class spread evenly over the folds."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype="int64")
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        fold[idx] = np.arange(len(idx)) % n_folds
    return fold


def _roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC with ties counted as one half (the Mann-Whitney statistic)."""
    ranks = pd.Series(score).rank(method="average").to_numpy()
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def single_column_auc(
    values: pd.Series,
    y: np.ndarray | pd.Series,
    *,
    n_folds: int = 5,
    n_bins: int = 20,
    smoothing: float = 5.0,
    seed: int = 0,
) -> float:
    """Out-of-fold ROC AUC of one column's smoothed target-rate encoding.

    Parameters
    ----------
    values : Series
        The column. Categories are used as they are, numbers are cut into ``n_bins`` quantile
        bins; missing values are a level of their own.
    y : array of 0/1
        The binary target.
    n_folds : int
        Folds for the out-of-fold encoding (stratified by the target).
    n_bins : int
        Quantile bins for numeric columns with more distinct values than that.
    smoothing : float
        Pseudo-rows at the overall rate added to every level, so a level seen once cannot
        look certain.
    seed : int
        Fold assignment seed.

    Returns
    -------
    float
        The AUC; 0.5 means the column alone says nothing about the target.
    """
    target = np.asarray(y, dtype="int64")
    codes = _codes(values.reset_index(drop=True), n_bins)
    n_levels = int(codes.max()) + 1
    fold = _stratified_folds(target, n_folds, seed)
    encoded = np.empty(len(target), dtype="float64")
    for k in range(n_folds):
        held = fold == k
        fit = ~held
        prior = target[fit].mean()
        hits = np.bincount(codes[fit], weights=target[fit], minlength=n_levels)
        seen = np.bincount(codes[fit], minlength=n_levels)
        rate = (hits + smoothing * prior) / (seen + smoothing)
        encoded[held] = rate[codes[held]]
    return _roc_auc(target, encoded)


def _binary_target(table: pd.DataFrame, target: str) -> np.ndarray:
    if target not in table.columns:
        raise LeakageError(
            f"target column {target!r} not in the table (columns: "
            f"{', '.join(map(repr, list(table.columns)[:12]))}). Pass the outcome column's name."
        )
    raw = table[target]
    if raw.isna().any():
        rows = np.flatnonzero(raw.isna().to_numpy())[:5].tolist()
        raise LeakageError(
            f"target column {target!r} has {int(raw.isna().sum())} missing values (rows {rows}). "
            "Expected 0/1 for every row; drop the unlabelled rows first."
        )
    levels = set(pd.unique(raw).tolist())
    if len(levels) != 2:
        raise LeakageError(
            f"target column {target!r} must have exactly two values, got {len(levels)} "
            f"({sorted(map(str, levels))[:5]}). Expected 0/1 (or two labels such as Yes/No)."
        )
    if levels <= {0, 1} or levels <= {True, False}:
        return raw.astype("int64").to_numpy()
    raise LeakageError(
        f"target column {target!r} has values {sorted(map(str, levels))}, not 0/1. "
        "Map the converted label to 1 and the rest to 0."
    )


def check_leakage(
    table: pd.DataFrame,
    target: str,
    *,
    columns: Iterable[str] | None = None,
    allow_columns: Iterable[str] = (),
    auc_threshold: float = 0.9,
    n_folds: int = 5,
    n_bins: int = 20,
    seed: int = 0,
    name_rules: Sequence[tuple[str, str]] = NAME_RULES,
    value_pattern: str | None = VALUE_PATTERN,
) -> LeakageReport:
    """Flag columns that alone predict ``target`` too well or look post-outcome.

    Parameters
    ----------
    table : DataFrame
        One row per lead, the target and candidate feature columns.
    target : str
        The 0/1 outcome column.
    columns : iterable of str, optional
        Candidate feature columns (default: every column except ``target``).
    allow_columns : iterable of str
        Flagged columns to keep anyway; they stay in the report, marked as allowed.
    auc_threshold : float
        Single-column out-of-fold AUC at or above which a column is flagged.
    n_folds, n_bins, seed
        See :func:`single_column_auc`.
    name_rules : sequence of (pattern, reason)
        Column-name rules (default :data:`NAME_RULES`); pass ``()`` to check AUCs only.
    value_pattern : str or None
        Regular expression for outcome-recording category values; None to skip.

    Returns
    -------
    LeakageReport
        Findings ordered by AUC (highest first) and the AUC of every candidate column.

    Raises
    ------
    LeakageError
        When the target is missing or not binary, or ``columns``/``allow_columns`` name columns
        the table does not have.
    """
    y = _binary_target(table, target)
    candidates = [c for c in table.columns if c != target] if columns is None else list(columns)
    allowed = list(allow_columns)
    unknown = [c for c in [*candidates, *allowed] if c not in table.columns]
    if unknown:
        raise LeakageError(
            f"unknown column(s) {', '.join(map(repr, unknown))} in the leakage check (table has "
            f"{', '.join(map(repr, list(table.columns)[:12]))}). Check the spelling."
        )
    if not 0.5 < auc_threshold <= 1.0:
        raise LeakageError(f"auc_threshold must be in (0.5, 1], got {auc_threshold}")
    aucs: dict[str, float] = {}
    findings: list[LeakageFinding] = []
    for col in candidates:
        auc = single_column_auc(table[col], y, n_folds=n_folds, n_bins=n_bins, seed=seed)
        aucs[col] = auc
        evidence = []
        if auc >= auc_threshold:
            evidence.append(
                f"alone predicts the target (out-of-fold AUC {auc:.3f} >= {auc_threshold:.2f})"
            )
        evidence += _name_evidence(col, name_rules)
        if value_pattern is not None:
            evidence += _value_evidence(table[col], value_pattern)
        if evidence:
            findings.append(LeakageFinding(col, auc, tuple(evidence), col not in allowed))
    findings.sort(key=lambda f: (-(f.auc or 0.0), f.column))
    return LeakageReport(
        target=target,
        n_rows=len(table),
        auc_threshold=auc_threshold,
        n_folds=n_folds,
        findings=tuple(findings),
        aucs=aucs,
    )
