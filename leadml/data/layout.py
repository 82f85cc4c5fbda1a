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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from leadml.data.contracts import CRMData
from leadml.data.features import FeatureSpec

__all__ = ["EventCounts", "LayoutWarning", "check_layout", "layout_reference"]


class LayoutWarning(UserWarning):
    """The data to score differs from the training data more than it should (see module docs)."""


def _outside(s: pd.Series, allowed: list[str]) -> float:
    """Share of the non-missing values of ``s`` whose text is not in ``allowed``: per category,
    not per row, for categoricals."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        inside_cat = s.cat.categories.astype(str).isin(allowed)
        codes = s.cat.codes.to_numpy()
        codes = codes[codes >= 0]
        return float(1 - inside_cat[codes].mean()) if len(codes) else 0.0
    known = s.dropna().astype(str)
    return float(1 - known.isin(allowed).mean()) if len(known) else 0.0


@dataclass(frozen=True)
class EventCounts:
    """What the layout check needs of the events table: its row count and, per event type, the
    events before ``as_of`` (all of them without one). Counts of parts add up
    (:meth:`__add__`), so data read one lead range at a time is checked exactly as a whole."""

    rows: int
    types: dict[str, int]

    @classmethod
    def of(cls, data: CRMData, as_of: Any = None) -> EventCounts:
        """Count ``data``'s events (before ``as_of``) by type, without copying the table."""
        c = data.columns
        ev = data.events
        et = ev[c.event_type]
        if not isinstance(et.dtype, pd.CategoricalDtype):
            et = et.astype("string").astype("category")
        codes = et.cat.codes.to_numpy()
        if as_of is None:
            counts = np.bincount(codes[codes >= 0], minlength=len(et.cat.categories))
        else:
            from leadml._kernels import count_before

            ns = ev[c.occurred_at].to_numpy(dtype="datetime64[ns]").view(np.int64)
            limit = pd.Timestamp(as_of).as_unit("ns").value
            counts = count_before(codes, ns, limit, len(et.cat.categories))
        names = et.cat.categories.astype(str)
        types: dict[str, int] = {}
        for name, n in zip(names, counts.tolist(), strict=True):
            if n:
                types[name] = types.get(name, 0) + n
        return cls(len(ev), types)

    def __add__(self, other: EventCounts) -> EventCounts:
        types = dict(self.types)
        for k, v in other.types.items():
            types[k] = types.get(k, 0) + v
        return EventCounts(self.rows + other.rows, types)

    def outside(self, allowed: list[str]) -> float:
        """Share of the counted events whose type is not in ``allowed``."""
        known = set(allowed)
        total = sum(self.types.values())
        inside = sum(n for k, n in self.types.items() if k in known)
        return float(1 - inside / total) if total else 0.0


def _shares(
    data: CRMData, spec: FeatureSpec, as_of: Any = None, events: EventCounts | None = None
) -> dict[str, Any]:
    c = data.columns
    leads = data.leads
    # Only the fit columns are taken: a copy of the whole table would copy its text (names,
    # e-mails) for nothing, at a million leads a few tenths of a second per model.
    keep = None if as_of is None else (leads[c.created_at] < as_of).to_numpy()
    n = len(leads) if keep is None else int(keep.sum())
    columns: dict[str, dict[str, float]] = {}
    for col in spec.fit_columns:
        if col not in leads.columns or n == 0:
            continue
        s = leads[col] if keep is None else leads[col][keep]
        entry = {"missing": float(s.isna().mean())}
        levels = spec.levels.get(col)
        if levels is not None:
            entry["outside_levels"] = _outside(s, [lv for lv in levels if lv != "other"])
        columns[col] = entry
    out: dict[str, Any] = {"columns": columns}
    counted = events if events is not None else EventCounts.of(data, as_of)
    if spec.event_types and sum(counted.types.values()):
        out["unknown_event_types"] = counted.outside(list(spec.event_types))
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
    events: EventCounts | None = None,
    tables: tuple[str, ...] = ("leads", "events"),
) -> tuple[list[str], list[str]]:
    """(problems, warnings) of scoring ``data`` at ``as_of`` with ``spec`` (module docs), for
    the ``tables`` named. ``events``: the events' counts at ``as_of`` when ``data`` does not
    hold the events (a CRM read one range of leads at a time); by default they are counted in
    ``data``."""
    c = data.columns
    problems: list[str] = []
    warnings: list[str] = []
    leads = data.leads
    if "leads" in tables:
        known = {c.lead_id, c.created_at, *spec.fit_columns, *spec.excluded_columns}
        unknown = [col for col in leads.columns if col not in known]
        for col in [col for col in spec.fit_columns if col not in leads.columns]:
            guess = difflib.get_close_matches(col, unknown, n=1, cutoff=0.5)
            hint = f" (renamed to {guess[0]!r}?)" if guess else ""
            problems.append(f"leads table: column {col!r}, a feature of {what}, is missing{hint}")
    counted = None
    if "events" in tables:
        counted = events if events is not None else EventCounts.of(data, as_of)
    if counted is not None and spec.event_types:
        if counted.rows == 0:
            problems.append(
                f"events table: it has no rows, but {what} learned from {len(spec.event_types)} "
                "event types; export the events again"
            )
        elif counted.types and counted.outside(list(spec.event_types)) == 1.0:
            seen = ", ".join(repr(v) for v in sorted(counted.types)[:5])
            expected = ", ".join(repr(v) for v in spec.event_types[:5])
            problems.append(
                f"events table: column {c.event_type!r} holds none of the event types "
                f"{what} learned (found {seen}; expected e.g. {expected}): map the new "
                "names back or retrain"
            )
    if not reference:
        return problems, warnings
    if "leads" in tables:
        columns = _shares(data, spec, as_of, EventCounts(0, {}))["columns"]
        for col, ref in reference.get("columns", {}).items():
            cur = columns.get(col)
            if cur is None:
                continue
            for key, label in (("missing", "missing"), ("outside_levels", "outside the levels")):
                if key in ref and key in cur and abs(cur[key] - ref[key]) > shift:
                    warnings.append(
                        f"leads table: column {col!r} is {label} in {cur[key]:.0%} of the leads, "
                        f"against {ref[key]:.0%} in training"
                    )
    if counted is not None and spec.event_types and sum(counted.types.values()):
        ref_u, cur_u = reference.get("unknown_event_types"), counted.outside(list(spec.event_types))
        if ref_u is not None and abs(cur_u - ref_u) > shift:
            warnings.append(
                f"events table: {cur_u:.0%} of the events have a type {what} never saw, against "
                f"{ref_u:.0%} in training"
            )
    return problems, warnings
