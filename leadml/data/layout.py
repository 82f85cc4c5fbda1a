"""Does the data still look like what the model was trained on? (the layout check of scoring)

A model reads the fit columns of the leads table and counts the event types it learned. When an
export changes (a column dropped or renamed, a new event-type vocabulary, an empty events table)
the features quietly become "missing" and every score moves with no error. So scoring compares
the data with the model's spec and with a reference taken from the training data:

Refused (:func:`check_layout` returns them as *problems*)
    a fit column absent from the leads table (with the likely new name when one close match is
    among the unknown columns); an empty events table, or none of the model's event types among
    the events before ``as_of``, when the model counts events.
Suspicious (*warnings*)
    a fit column whose missing share, or a categorical whose share of values outside the trained
    levels, moved by more than ``shift`` (absolute) from the training reference; and the share of
    events whose type the model does not know, likewise. Shares are printed, old and new.

The reference (:func:`layout_reference`) is computed at training time on the training data and
stored in the model's metadata (``metadata["layout"]``); models without one get only the
refusals.
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np
import pandas as pd

from leadml.data.contracts import CRMData
from leadml.data.features import FeatureSpec

__all__ = ["LayoutWarning", "check_layout", "layout_reference"]


class LayoutWarning(UserWarning):
    """The data to score differs from the training data more than it should (see module docs)."""


def _outside(s: pd.Series, allowed: list[str], rows: np.ndarray | None = None) -> float:
    """Share of the non-missing values of ``s`` (of its ``rows``, a boolean mask, if given)
    whose text is not in ``allowed``: per category, not per row, for categoricals, and without
    copying the table (events tables hold tens of millions of rows)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        inside_cat = s.cat.categories.astype(str).isin(allowed)
        codes = s.cat.codes.to_numpy()
        if rows is not None:
            codes = codes[rows]
        codes = codes[codes >= 0]
        return float(1 - inside_cat[codes].mean()) if len(codes) else 0.0
    known = (s if rows is None else s[rows]).dropna().astype(str)
    return float(1 - known.isin(allowed).mean()) if len(known) else 0.0


def _before(data: CRMData, as_of: Any) -> np.ndarray:
    """Which events happened before ``as_of`` (a mask: no copy of the events table)."""
    when = data.events[data.columns.occurred_at].to_numpy(dtype="datetime64[ns]")
    return when < np.datetime64(pd.Timestamp(as_of).as_unit("ns").to_datetime64())


def _shares(data: CRMData, spec: FeatureSpec, as_of: Any = None) -> dict[str, Any]:
    c = data.columns
    leads, events = data.leads, data.events
    rows = None
    if as_of is not None:
        leads = leads.loc[leads[c.created_at] < as_of]
        rows = _before(data, as_of)
    columns: dict[str, dict[str, float]] = {}
    for col in spec.fit_columns:
        if col not in leads.columns or len(leads) == 0:
            continue
        s = leads[col]
        entry = {"missing": float(s.isna().mean())}
        levels = spec.levels.get(col)
        if levels is not None:
            entry["outside_levels"] = _outside(s, [lv for lv in levels if lv != "other"])
        columns[col] = entry
    out: dict[str, Any] = {"columns": columns}
    n_events = len(events) if rows is None else int(rows.sum())
    if spec.event_types and n_events:
        out["unknown_event_types"] = _outside(events[c.event_type], list(spec.event_types), rows)
    return out


def layout_reference(data: CRMData, spec: FeatureSpec) -> dict[str, Any]:
    """Missing and outside-level shares of the fit columns and the unknown-event-type share,
    on the training data (JSON-able; stored in the model's metadata as ``"layout"``)."""
    return _shares(data, spec)


def check_layout(
    data: CRMData,
    spec: FeatureSpec,
    as_of: Any,
    reference: dict[str, Any] | None = None,
    *,
    shift: float = 0.25,
    what: str = "the model",
) -> tuple[list[str], list[str]]:
    """(problems, warnings) of scoring ``data`` at ``as_of`` with ``spec`` (module docs)."""
    c = data.columns
    problems: list[str] = []
    warnings: list[str] = []
    leads = data.leads
    known = {c.lead_id, c.created_at, *spec.fit_columns, *spec.excluded_columns}
    unknown = [col for col in leads.columns if col not in known]
    missing = [col for col in spec.fit_columns if col not in leads.columns]
    for col in missing:
        guess = difflib.get_close_matches(col, unknown, n=1, cutoff=0.5)
        hint = f" (renamed to {guess[0]!r}?)" if guess else ""
        problems.append(f"leads table: column {col!r}, a feature of {what}, is missing{hint}")
    if spec.event_types:
        events = data.events
        if len(events) == 0:
            problems.append(
                f"events table: it has no rows, but {what} learned from {len(spec.event_types)} "
                "event types; export the events again"
            )
        else:
            rows = _before(data, as_of)
            types = events[c.event_type]
            if rows.any() and _outside(types, list(spec.event_types), rows) == 1.0:
                found = types[rows].astype(str).unique()
                seen = ", ".join(repr(str(v)) for v in sorted(found)[:5])
                expected = ", ".join(repr(v) for v in spec.event_types[:5])
                problems.append(
                    f"events table: column {c.event_type!r} holds none of the event types "
                    f"{what} learned (found {seen}; expected e.g. {expected}): map the new "
                    "names back or retrain"
                )
    if reference:
        now = _shares(data, spec, as_of)
        for col, ref in reference.get("columns", {}).items():
            cur = now["columns"].get(col)
            if cur is None:
                continue
            for key, label in (("missing", "missing"), ("outside_levels", "outside the levels")):
                if key in ref and key in cur and abs(cur[key] - ref[key]) > shift:
                    warnings.append(
                        f"leads table: column {col!r} is {label} in {cur[key]:.0%} of the leads, "
                        f"against {ref[key]:.0%} in training"
                    )
        ref_u, cur_u = reference.get("unknown_event_types"), now.get("unknown_event_types")
        if ref_u is not None and cur_u is not None and abs(cur_u - ref_u) > shift:
            warnings.append(
                f"events table: {cur_u:.0%} of the events have a type {what} never saw, against "
                f"{ref_u:.0%} in training"
            )
    return problems, warnings
