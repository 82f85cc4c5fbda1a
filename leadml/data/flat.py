"""Flat-table mode: one row per lead with pre-aggregated columns and an outcome column.

Many teams only have a CRM export such as X Education's ``Leads.csv``: no event history, no stage
changes, just a row per lead and a ``Converted`` flag. This module cleans such a table, keeps the
leaky columns out (:mod:`leadml.data.leakage`) and trains, calibrates, explains and scores it with the
same machinery as the event mode.

Cleaning
--------
:func:`plan_cleaning` learns what to do from the training table and returns a
:class:`FlatCleaning` that applies exactly the same steps to any later table (scoring uses the
plan stored in the bundle, so a new export is cleaned the way the training data was):

- **Placeholders become missing.** A value equal, after trimming and ignoring case, to one of
  ``placeholders`` (default :data:`DEFAULT_PLACEHOLDERS`: ``Select``, ``N/A``, ``NA``, ``-``,
  ``--``, ``null``, ``NaN`` and the empty string) is missing. ``Unknown``, ``None`` and
  ``Other`` are **not** placeholders by default: in many CRMs they are explicit answers ("the
  lead would not say") that carry signal of their own; add them when your export uses them as
  defaults.
- **Numbers stored as text become numbers** when every remaining value parses.
- **Case and spacing variants are merged.** ``google`` and ``Google`` (and ``Interested  in``
  with two spaces) are one category, spelled as its most frequent variant.
- **Constant columns are dropped**: a single value and no missing values. A single value *with*
  missing values is kept, because "filled in or not" is information.
- **ID-like columns are dropped**: text with (almost) one distinct value per row, or integers
  that are distinct per row and are named like an id or run in sequence.
- **Direct identifiers are dropped**: names such as ``email``, ``phone``, ``first name``,
  ``address``, or text values that look like e-mail addresses or phone numbers.
- Timestamp columns are dropped as features (pass one as ``time_column`` to split on it).

Every step is recorded in :attr:`FlatCleaning.steps` and printed by :meth:`FlatCleaning.report`.
The identifier rules need evidence beyond the name: ``Do Not Email`` (a Yes/No consent flag) is
a feature, ``Contact Email`` with an address per row is not.

Training and scoring
--------------------
:func:`train_flat` splits first (:func:`split_flat`: out-of-time on a ``time_column`` or an
``order_column`` such as a sequential lead number, stratified random with a
:class:`RandomSplitWarning` otherwise), then plans the cleaning and runs the leakage guard on the
training and validation rows only, builds a :class:`~leadml.data.features.FeatureSpec` in which every
column is its own reason group ("Total Time Spent on Website: 1,532"), and hands the rest to the
event mode's :func:`leadml.model.training.fit_calibrated` (LightGBM, Platt calibration on the margin,
tiers A-D, logistic-regression baseline on the same test rows). The model is a
:class:`~leadml.model.training.StageModel` with ``transition == "flat"`` whose metadata carries the
cleaning plan, the leakage report and the split, so :func:`leadml.model.bundle.save_bundle`,
:mod:`leadml.tracking` (``leadml-flat`` in the registry) and :func:`score_flat` (probability,
score, tier and SHAP reasons per lead) work on it unchanged. :func:`run_train_flat` and
:func:`run_score_flat` are the CLI's ``leadml train --table`` and ``leadml score --table``.

Examples
--------
>>> import pandas as pd
>>> table = pd.DataFrame({
...     "Lead ID": [f"L{i}" for i in range(40)],
...     "Lead Source": ["Google", "google", "Direct"] * 13 + ["Select"],
...     "Magazine": ["No"] * 40,
...     "Visits": [str(i % 7) for i in range(40)],
...     "Converted": [0, 1] * 20,
... })
>>> clean, plan = clean_flat(table, target="Converted")
>>> list(clean.columns)
['Lead Source', 'Visits']
>>> clean["Lead Source"].value_counts(dropna=False).to_dict()
{'Google': 26, 'Direct': 13, nan: 1}
>>> plan.dropped
{'Lead ID': 'id-like', 'Magazine': 'constant'}
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from leadml.config import FlatConfig
from leadml.data.features import FeatureSpec, choose_levels, column_kind

__all__ = [
    "DEFAULT_PLACEHOLDERS",
    "FLAT_TRANSITION",
    "CleaningStep",
    "FlatCleaning",
    "FlatDataError",
    "FlatSplit",
    "RandomSplitWarning",
    "check_columns",
    "check_ids",
    "clean_flat",
    "flat_spec",
    "FALSE_VALUES",
    "TRUE_VALUES",
    "flat_target",
    "ordering_key",
    "plan_cleaning",
    "split_flat",
]

#: Values read as missing unless told otherwise (``flat.placeholders`` in the config).
DEFAULT_PLACEHOLDERS: tuple[str, ...] = FlatConfig().placeholders

Kind = Literal["numeric", "categorical"]

_ID_NAME = re.compile(r"(^|[^a-z])(id|ids|uuid|guid|key|number|no|num|nr|ref|reference)([^a-z]|$)")
_IDENTIFIER_NAME = re.compile(
    r"(^|[^a-z])(e ?mail|email address|phone|phone number|mobile|mobile number|telephone|fax|"
    r"whatsapp|(first|last|full|sur|given|family|contact|lead|customer|client|person|prospect) ?"
    r"name|surname|address|street|ip address|ssn|passport)$"
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^\+?[\d\s().\-/]{7,}$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_MIN_ID_ROWS = 20  # uniqueness says little about a column with a handful of rows


class FlatDataError(ValueError):
    """The flat table cannot be used as given; the message names the column and the fix."""


@dataclass(frozen=True)
class CleaningStep:
    """One thing cleaning did to one column, in words."""

    column: str
    action: str
    detail: str

    def __str__(self) -> str:
        return f"{self.column!r}: {self.action} ({self.detail})"


@dataclass(frozen=True)
class FlatCleaning:
    """A cleaning plan learned from a training table; apply it to any table of the same export.

    Attributes
    ----------
    placeholders : tuple of str
        Values (compared trimmed and case-insensitively) read as missing.
    kinds : dict
        Feature column -> ``"numeric"`` or ``"categorical"``, in table order.
    spellings : dict
        Categorical column -> {normalised value: canonical spelling}.
    dropped : dict
        Column -> why it is not a feature (``constant``, ``id-like``, ``identifier``,
        ``timestamp``, ``excluded``). The target and id columns are roles, not drops, and are
        not listed.
    steps : tuple of CleaningStep
        What was done, for the report.
    """

    placeholders: tuple[str, ...]
    kinds: dict[str, Kind]
    spellings: dict[str, dict[str, str]]
    dropped: dict[str, str]
    steps: tuple[CleaningStep, ...] = field(default=())

    @property
    def features(self) -> tuple[str, ...]:
        """Feature columns, in table order."""
        return tuple(self.kinds)

    def apply(self, table: pd.DataFrame) -> pd.DataFrame:
        """Clean ``table`` with this plan: only the feature columns, in a fixed order and dtype.

        Numeric columns come back as float64, categorical ones as ``object`` with canonical
        spellings and ``NaN`` for missing. A feature column the table lacks raises
        :class:`FlatDataError`; extra columns are ignored.
        """
        missing = [c for c in self.kinds if c not in table.columns]
        if missing:
            raise FlatDataError(
                f"table lacks feature column(s) {', '.join(map(repr, missing[:8]))} that the "
                f"model was trained with. Expected the same export layout as the training table; "
                "add the columns (empty is fine) or retrain."
            )
        placeholders = {_norm(p) for p in self.placeholders}
        out = {}
        for col, kind in self.kinds.items():
            values = _blank_placeholders(table[col], placeholders)
            if kind == "numeric":
                out[col] = pd.to_numeric(values, errors="coerce").astype("float64")
            else:
                spell = self.spellings.get(col, {})
                text = values.astype("string").str.strip()
                canonical = _map_distinct(text, lambda v, spell=spell: spell.get(_norm(v)))
                # A spelling never seen in training keeps its own (trimmed) form.
                merged = canonical.where(canonical.notna(), text)
                out[col] = merged.astype(object).where(merged.notna(), np.nan)
        return pd.DataFrame(out, index=table.index)

    def without(self, columns: Iterable[str], reason: str) -> FlatCleaning:
        """The same plan with ``columns`` no longer features (recorded as dropped for
        ``reason``), so scoring tables need not carry them."""
        gone = [c for c in columns if c in self.kinds]
        if not gone:
            return self
        return FlatCleaning(
            placeholders=self.placeholders,
            kinds={c: k for c, k in self.kinds.items() if c not in gone},
            spellings={c: v for c, v in self.spellings.items() if c not in gone},
            dropped={**self.dropped, **dict.fromkeys(gone, reason)},
            steps=(
                *self.steps,
                *(CleaningStep(c, f"dropped: {reason}", "see the leakage report") for c in gone),
            ),
        )

    def report(self) -> str:
        """What cleaning did, one line per step."""
        n_feat = len(self.kinds)
        head = f"Cleaning: {n_feat} feature column(s) kept, {len(self.dropped)} dropped."
        return "\n".join([head, *(f"  - {s}" for s in self.steps)])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (stored in the bundle)."""
        return {
            "placeholders": list(self.placeholders),
            "kinds": dict(self.kinds),
            "spellings": {k: dict(v) for k, v in self.spellings.items()},
            "dropped": dict(self.dropped),
            "steps": [[s.column, s.action, s.detail] for s in self.steps],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FlatCleaning:
        return cls(
            placeholders=tuple(raw["placeholders"]),
            kinds=dict(raw["kinds"]),
            spellings={k: dict(v) for k, v in raw["spellings"].items()},
            dropped=dict(raw["dropped"]),
            steps=tuple(CleaningStep(*s) for s in raw.get("steps", ())),
        )


def _norm(value: str) -> str:
    return " ".join(str(value).split()).casefold()


def _map_distinct(s: pd.Series, fn: Any) -> pd.Series:
    """``s.map(fn)`` computed once per distinct value (exports repeat a few values a lot)."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    mapped = np.array([fn(u) for u in uniques] + [None], dtype=object)
    out = pd.Series(mapped[codes], index=s.index, dtype=object)
    return out.where(codes >= 0, None)


def _blank_placeholders(s: pd.Series, placeholders: set[str]) -> pd.Series:
    if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        return s
    text = s.astype("string")
    is_placeholder = _map_distinct(text, lambda v: _norm(v) in placeholders).fillna(False)
    is_placeholder = is_placeholder.astype(bool)
    return s.where(~is_placeholder.to_numpy(), np.nan)


def _looks_numeric(text: pd.Series) -> bool:
    present = text.dropna()
    if present.empty:
        return False
    parsed = pd.to_numeric(present.astype("string").str.strip(), errors="coerce")
    return bool(parsed.notna().all())


def _share_matching(text: pd.Series, pattern: re.Pattern[str]) -> float:
    present = text.dropna().astype(str).str.strip()
    if present.empty:
        return 0.0
    return float(_map_distinct(present, lambda v: bool(pattern.match(v))).astype(bool).mean())


def _name_key(column: str) -> str:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", str(column))
    return re.sub(r"[^a-z0-9]+", " ", spaced.lower()).strip()


def _identifier_reason(column: str, s: pd.Series, kind: Kind) -> str | None:
    key = _name_key(column)
    m = _IDENTIFIER_NAME.search(key)
    present = s.dropna()
    # A name alone is not enough: "Do Not Email" is a consent flag with two values.
    if (m or key == "name") and present.nunique() >= max(10, 0.02 * len(present)):
        noun = m.group(2) if m else "name"
        return f"name looks like a direct identifier ({noun!r}), {present.nunique():,} values"
    if kind == "numeric":
        return None
    if _share_matching(s, _EMAIL) >= 0.5:
        return "values look like e-mail addresses"
    if _share_matching(s, _PHONE) >= 0.5 and _share_matching(s, _ISO_DATE) < 0.5:
        digits = present.astype(str).str.count(r"\d")
        if bool((digits >= 7).mean() >= 0.5):
            return "values look like phone numbers"
    return None


def _id_like_reason(column: str, s: pd.Series, kind: Kind) -> str | None:
    present = s.dropna()
    n = len(present)
    if n < _MIN_ID_ROWS:
        return None
    distinct = present.nunique()
    if kind == "categorical":
        if distinct >= 0.9 * n:
            return f"{distinct:,} distinct values in {n:,} rows"
        return None
    integral = bool(np.all(np.mod(present.to_numpy(dtype="float64"), 1) == 0))
    if not integral or distinct < 0.99 * n:
        return None
    values = present.to_numpy(dtype="float64")
    steps = np.diff(values)
    sequential = bool(np.all(steps > 0) or np.all(steps < 0))
    if _ID_NAME.search(_name_key(column)) or sequential:
        why = "named like an id" if _ID_NAME.search(_name_key(column)) else "runs in sequence"
        return f"{distinct:,} distinct integers in {n:,} rows, {why}"
    return None


def plan_cleaning(
    table: pd.DataFrame,
    *,
    target: str | None = None,
    id_column: str | None = None,
    drop: Iterable[str] = (),
    keep: Iterable[str] = (),
    placeholders: Sequence[str] = DEFAULT_PLACEHOLDERS,
    identifier_columns: Iterable[str] = (),
) -> FlatCleaning:
    """Decide how to clean a flat CRM table (see the module docstring for the rules).

    Parameters
    ----------
    table : DataFrame
        One row per lead.
    target, id_column : str, optional
        Outcome and lead-id columns: never features.
    drop : iterable of str
        Columns the caller excludes (e.g. the time or order column, known leaks).
    keep : iterable of str
        Columns to keep even if a heuristic would drop them (constant columns are still
        dropped: they cannot be used).
    placeholders : sequence of str
        Values read as missing (trimmed, case-insensitive).
    identifier_columns : iterable of str
        Direct identifiers named by the caller, in addition to the heuristics.

    Returns
    -------
    FlatCleaning
        The plan; call :meth:`FlatCleaning.apply` to clean a table.

    Raises
    ------
    FlatDataError
        When ``target``, ``id_column``, ``drop``, ``keep`` or ``identifier_columns`` name a
        column the table does not have.
    """
    drop, keep, identifiers = list(drop), set(keep), list(identifier_columns)
    named = [c for c in (target, id_column) if c is not None] + drop + list(keep) + identifiers
    unknown = [c for c in named if c not in table.columns]
    if unknown:
        raise FlatDataError(
            f"column(s) {', '.join(map(repr, unknown))} not in the table (it has "
            f"{', '.join(map(repr, list(table.columns)[:12]))}"
            f"{', ...' if table.shape[1] > 12 else ''}). Check the spelling."
        )
    ph = {_norm(p) for p in placeholders}
    steps: list[CleaningStep] = []
    dropped: dict[str, str] = {}
    kinds: dict[str, Kind] = {}
    spellings: dict[str, dict[str, str]] = {}

    def drop_col(col: str, why: str, detail: str) -> None:
        dropped[col] = why
        steps.append(CleaningStep(col, f"dropped: {why}", detail))

    for col in table.columns:
        if col in (target, id_column):
            continue
        if col in drop:
            drop_col(col, "excluded", "named by the caller")
            continue
        if col in identifiers:
            drop_col(col, "identifier", "named as a direct identifier")
            continue
        raw = table[col]
        if pd.api.types.is_datetime64_any_dtype(raw.dtype):
            drop_col(col, "timestamp", "timestamps are not flat features; pass it as time_column")
            continue
        values = _blank_placeholders(raw, ph)
        n_blanked = int((values.isna() & raw.notna()).sum())
        if n_blanked:
            shown = sorted({str(v).strip() for v in raw[values.isna() & raw.notna()].unique()})
            steps.append(
                CleaningStep(
                    col,
                    "placeholders to missing",
                    f"{n_blanked:,} value(s) {', '.join(map(repr, shown[:4]))}",
                )
            )
        kind: Kind
        if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
            kind = "numeric"
            values = values.astype("float64")
        elif _looks_numeric(values):
            kind = "numeric"
            values = pd.to_numeric(values.astype("string").str.strip()).astype("float64")
            steps.append(CleaningStep(col, "read as numbers", "every value parses as a number"))
        else:
            kind = "categorical"
        if col not in keep:
            why = _identifier_reason(col, values, kind)
            if why:
                drop_col(col, "identifier", why)
                continue
        if kind == "categorical":
            text = values.astype("string").str.strip()
            counts = text.dropna().value_counts(sort=False)
            keys = pd.Series(counts.index.map(_norm), index=counts.index)
            spell: dict[str, str] = {}
            merged: list[str] = []
            for key, variants in keys.groupby(keys, sort=True):
                ranked = sorted(variants.index, key=lambda v: (-int(counts[v]), str(v)))
                spell[str(key)] = str(ranked[0])
                if len(ranked) > 1:
                    merged.append(
                        " + ".join(f"{v!r} ({int(counts[v]):,})" for v in ranked)
                        + f" -> {ranked[0]!r}"
                    )
            if merged:
                steps.append(CleaningStep(col, "merged case variants", "; ".join(merged[:4])))
            values = _map_distinct(text, lambda v, spell=spell: spell[_norm(v)])
        n_levels = values.nunique(dropna=True)
        if n_levels <= 1 and not values.isna().any():
            only = repr(values.dropna().iloc[0]) if n_levels else "nothing"
            drop_col(col, "constant", f"every row is {only}")
            continue
        if n_levels == 0:
            drop_col(col, "constant", "every value is missing")
            continue
        if col not in keep:
            why = _id_like_reason(col, values, kind)
            if why:
                drop_col(col, "id-like", why)
                continue
        kinds[col] = kind
        if kind == "categorical":
            spellings[col] = spell
    return FlatCleaning(
        placeholders=tuple(placeholders),
        kinds=kinds,
        spellings=spellings,
        dropped=dropped,
        steps=tuple(steps),
    )


def clean_flat(
    table: pd.DataFrame,
    *,
    target: str | None = None,
    id_column: str | None = None,
    drop: Iterable[str] = (),
    keep: Iterable[str] = (),
    placeholders: Sequence[str] = DEFAULT_PLACEHOLDERS,
    identifier_columns: Iterable[str] = (),
) -> tuple[pd.DataFrame, FlatCleaning]:
    """Plan the cleaning on ``table`` and apply it; returns the clean features and the plan.

    Parameters are those of :func:`plan_cleaning`. The returned frame holds only the feature
    columns (no target, id or dropped columns), with the index of ``table``.
    """
    plan = plan_cleaning(
        table,
        target=target,
        id_column=id_column,
        drop=drop,
        keep=keep,
        placeholders=placeholders,
        identifier_columns=identifier_columns,
    )
    return plan.apply(table), plan


class RandomSplitWarning(UserWarning):
    """The flat table has no time or order column, so the split is random (optimistic)."""


@dataclass(frozen=True)
class FlatSplit:
    """Row positions of the train, validation (early stopping, calibration) and test parts."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    kind: Literal["time", "order", "random"]
    description: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "description": self.description,
            "n_train": int(len(self.train)),
            "n_valid": int(len(self.valid)),
            "n_test": int(len(self.test)),
        }


def ordering_key(table: pd.DataFrame, column: str, kind: str) -> pd.Series:
    if column not in table.columns:
        raise FlatDataError(
            f"{kind} column {column!r} not in the table (it has "
            f"{', '.join(map(repr, list(table.columns)[:12]))}). Check the spelling."
        )
    raw = table[column]
    if kind == "time":
        if pd.api.types.is_datetime64_any_dtype(raw.dtype):
            key = raw
            if isinstance(key.dtype, pd.DatetimeTZDtype):
                key = key.dt.tz_convert("UTC").dt.tz_localize(None)
        else:
            key = pd.to_datetime(raw, errors="coerce", utc=True, format="mixed")
            key = key.dt.tz_localize(None)
        bad = key.isna() & raw.notna()
        what = "could not be parsed as timestamps"
    else:
        key = pd.to_numeric(raw, errors="coerce")
        bad = key.isna() & raw.notna()
        what = "are not numbers"
    if bool(bad.any()):
        rows = np.flatnonzero(bad.to_numpy())[:5].tolist()
        examples = [str(v) for v in raw[bad.to_numpy()].head(3)]
        raise FlatDataError(
            f"{kind} column {column!r}: {int(bad.sum())} value(s) {what} (rows {rows}; "
            f"e.g. {examples}). Fix the export or pass another column."
        )
    if bool(key.isna().any()):
        rows = np.flatnonzero(key.isna().to_numpy())[:5].tolist()
        raise FlatDataError(
            f"{kind} column {column!r}: {int(key.isna().sum())} missing value(s) (rows {rows}). "
            "Every lead needs a place in time for an out-of-time split; fill or drop them."
        )
    return key


def split_flat(
    table: pd.DataFrame,
    target: str,
    *,
    time_column: str | None = None,
    order_column: str | None = None,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
) -> FlatSplit:
    """Split a flat table into train, validation and test parts.

    With ``time_column`` (timestamps) or ``order_column`` (numbers that grow with arrival, such
    as a sequential lead number) the split is **out-of-time**: the earliest ``fractions[0]``
    of the rows train, the next ``fractions[1]`` validate (early stopping and calibration) and
    the latest ``fractions[2]`` test. Rows sharing a boundary value stay together, in the later
    part, so no instant is on both sides. Without either, the split is stratified random and a
    :class:`RandomSplitWarning` says why that is optimistic.

    Parameters
    ----------
    table : DataFrame
        One row per lead.
    target : str
        The 0/1 outcome column (stratifies the random split).
    time_column, order_column : str, optional
        At most one of them.
    fractions : (float, float, float)
        Train, validation and test shares; they must sum to 1.
    seed : int
        Random split seed.

    Returns
    -------
    FlatSplit
        Row positions (not labels) of each part, sorted.
    """
    if time_column is not None and order_column is not None:
        raise FlatDataError(
            f"pass time_column ({time_column!r}) or order_column ({order_column!r}), not both"
        )
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-9:
        raise FlatDataError(
            f"fractions must be three positive shares summing to 1, got {fractions}"
        )
    n = len(table)
    column = time_column if time_column is not None else order_column
    if column is not None:
        kind: Literal["time", "order"] = "time" if time_column is not None else "order"
        key = ordering_key(table, column, kind).reset_index(drop=True)
        ordered = key.sort_values(kind="stable")
        cut1 = ordered.iloc[min(int(round(fractions[0] * n)), n - 1)]
        cut2 = ordered.iloc[min(int(round((fractions[0] + fractions[1]) * n)), n - 1)]
        k = key.to_numpy()
        train = np.flatnonzero(k < cut1)
        valid = np.flatnonzero((k >= cut1) & (k < cut2))
        test = np.flatnonzero(k >= cut2)
        if min(len(train), len(valid), len(test)) == 0:
            raise FlatDataError(
                f"{kind} column {column!r} has too few distinct values to split out-of-time "
                f"({key.nunique()} distinct in {n} rows): train {len(train)}, validation "
                f"{len(valid)}, test {len(test)} rows. Use a finer column or more data."
            )
        lo, hi = key.min(), key.max()
        description = (
            f"out-of-time by {column!r}: train {len(train):,} rows [{lo}, {cut1}), "
            f"validation {len(valid):,} rows [{cut1}, {cut2}), test {len(test):,} rows "
            f"[{cut2}, {hi}]"
        )
        return FlatSplit(train, valid, test, kind, description)

    y = table[target].to_numpy()
    rng = np.random.default_rng(seed)
    part = np.empty(n, dtype="int64")
    for cls in pd.unique(y):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        bounds = np.round(np.cumsum(fractions)[:2] * len(idx)).astype(int)
        part[idx] = np.searchsorted(bounds, np.arange(len(idx)), side="right")
    warnings.warn(
        "no time_column or order_column: using a stratified random split. Leads from the same "
        "period share the test set with training leads, so the test metrics are optimistic; "
        "pass a creation date or a sequential lead number for an out-of-time estimate.",
        RandomSplitWarning,
        stacklevel=2,
    )
    description = (
        f"stratified random (seed {seed}): train {int((part == 0).sum()):,}, validation "
        f"{int((part == 1).sum()):,}, test {int((part == 2).sum()):,} rows"
    )
    return FlatSplit(
        np.flatnonzero(part == 0),
        np.flatnonzero(part == 1),
        np.flatnonzero(part == 2),
        "random",
        description,
    )


# --- training and scoring: the event mode's LightGBM, calibration, tiers, bundle and reasons ---

#: The transition name flat models carry (MLflow registers them as ``leadml-flat``).
FLAT_TRANSITION = "flat"


def flat_spec(X: pd.DataFrame, max_levels: int = 50) -> FeatureSpec:
    """A :class:`~leadml.data.features.FeatureSpec` for clean flat columns.

    Each column is its own reason group and reads as ``"<Column>: <value>"`` (``"<Column>
    unknown"`` when missing), e.g. ``"Total Time Spent on Website: 1,532"``. Categorical levels are
    the ``max_levels - 1`` most frequent values of ``X`` (the training rows) plus ``"other"`` when
    there are more.
    """
    kinds: dict[str, str] = {}
    levels: dict[str, tuple[str, ...]] = {}
    for col in X.columns:
        kinds[col] = column_kind(X[col])
        if kinds[col] == "categorical":
            levels[col] = choose_levels(X[col], max_levels)
    names = tuple(X.columns)
    return FeatureSpec(
        names=names,
        kinds=kinds,
        levels=levels,
        groups={n: n for n in names},
        templates={n: _templates(n, kinds[n]) for n in names},
        event_types=(),
        fit_columns=names,
        excluded_columns=(),
        windows_days=(),
        half_life_days=14.0,
        trend_days=14,
    )


def _templates(column: str, kind: str) -> dict[str, str]:
    # Export headers are already what a rep reads; snake_case ones get spaces.
    label = column if " " in column else column.replace("_", " ").strip()
    label = label[:1].upper() + label[1:]
    value = "{value}" if kind == "categorical" else "{num}"
    return {"value": f"{label}: {value}", "missing": f"{label} unknown"}


#: Outcome spellings read as 1 and 0 (compared trimmed and case-insensitively).
TRUE_VALUES: frozenset[str] = frozenset({"1", "1.0", "true", "t", "yes", "y"})
FALSE_VALUES: frozenset[str] = frozenset({"0", "0.0", "false", "f", "no", "n"})


def flat_target(table: pd.DataFrame, target: str, positive: str | None = None) -> np.ndarray:
    """The outcome column as 0/1, as users export it.

    Without ``positive``: 0/1 (numbers or text), true/false, yes/no, y/n and t/f in any case.
    With ``positive``: rows equal to it (trimmed, case-insensitive) are 1 and every other value
    is 0, e.g. ``positive="Won"`` or ``"Converted"``. Missing outcomes are an error either way.

    Examples
    --------
    >>> t = pd.DataFrame({"y": ["Yes", "no", " YES "], "s": ["Won", "Lost", "Open"]})
    >>> flat_target(t, "y").tolist(), flat_target(t, "s", positive="won").tolist()
    ([1, 0, 1], [1, 0, 0])
    """
    raw = table[target]
    missing = raw.isna().to_numpy()
    if missing.any():
        rows = np.flatnonzero(missing)[:5].tolist()
        raise FlatDataError(
            f"target {target!r}: {int(missing.sum())} missing value(s) (rows {rows}). Every "
            "training row needs its outcome; drop the rows whose outcome is not known yet."
        )
    if pd.api.types.is_bool_dtype(raw.dtype):
        return raw.to_numpy().astype(int)
    text = pd.Series(_map_distinct(raw.astype("string"), _norm), index=raw.index).astype(str)
    if positive is not None:
        return (text == _norm(positive)).to_numpy().astype(int)
    numeric = pd.to_numeric(raw, errors="coerce")
    is_true = text.isin(TRUE_VALUES).to_numpy() | (numeric == 1).to_numpy()
    is_false = text.isin(FALSE_VALUES).to_numpy() | (numeric == 0).to_numpy()
    bad = ~(is_true | is_false)
    if bad.any():
        found = sorted(raw[bad].astype(str).unique())
        shown = ", ".join(repr(v) for v in found[:6]) + (", ..." if len(found) > 6 else "")
        rows = np.flatnonzero(bad)[:5].tolist()
        raise FlatDataError(
            f"target {target!r}: {int(bad.sum())} value(s) are not a yes/no outcome (rows "
            f"{rows}; values found: {shown}). Expected 0/1, true/false, yes/no or y/n; for "
            f"another encoding name the positive value with --positive (e.g. --positive "
            f"{found[0]!r})."
        )
    return is_true.astype(int)


def check_columns(table: pd.DataFrame, **named: str | Iterable[str] | None) -> None:
    for role, cols in named.items():
        for col in [cols] if isinstance(cols, str) else list(cols or ()):
            if col not in table.columns:
                raise FlatDataError(
                    f"{role.replace('_', ' ')} {col!r} not in the table (it has "
                    f"{', '.join(map(repr, list(table.columns)[:12]))}"
                    f"{', ...' if table.shape[1] > 12 else ''}). Check the spelling."
                )


def check_ids(table: pd.DataFrame, id_column: str) -> None:
    ids = table[id_column]
    bad = (ids.isna() | ids.duplicated(keep="first")).to_numpy()
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise FlatDataError(
            f"id column {id_column!r}: {int(bad.sum())} missing or duplicate id(s) (rows {rows}; "
            f"e.g. {[str(v) for v in ids[bad].head(3)]}). Expected one row per lead; "
            "deduplicate the export."
        )
