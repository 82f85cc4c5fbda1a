"""Data contracts for the three input tables (design.md §1), validated all at once.

``validate`` coerces dtypes once (ids, timestamps, numbers) and collects **every** problem it finds
into one :class:`DataContractError`, so a user fixes an export in one pass instead of ten.

Canonical form after validation: timestamps are ``datetime64[ns]`` without a timezone, meaning UTC
(timezone-aware inputs are converted to UTC first); ``lead_id`` has the same dtype in all tables
(int64 when every id is an integer, string otherwise).

Examples
--------
>>> import pandas as pd
>>> leads = pd.DataFrame({"lead_id": [1, 1], "created_at": ["2024-01-01", "not a date"]})
>>> events = pd.DataFrame({"lead_id": [1], "event_type": ["web_visit"], "occurred_at": ["2024-01-02"]})
>>> stages = pd.DataFrame({"lead_id": [1], "stage": ["lead"], "changed_at": ["2024-01-01"]})
>>> validate(leads, events, stages)
Traceback (most recent call last):
...
leadml.data.contracts.DataContractError: 2 problems in the input data:
  - leads.lead_id: 1 duplicate lead_id (rows 1; e.g. '1'). Expected one row per lead; deduplicate the export.
  - leads.created_at: 1 value could not be parsed as a timestamp (rows 1; e.g. 'not a date'). Expected ISO-8601 timestamps such as '2024-03-01T09:30:00Z'; fix the export or pass the right column with --config columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadml._timing import stage
from leadml.config import ColumnsConfig, DatabaseConfig
from leadml.data.sql import is_database_url, open_database
from leadml.funnel import FUNNEL, NEGATIVE_STAGES, STAGES

__all__ = [
    "FUNNEL",
    "NEGATIVE_STAGES",
    "STAGES",
    "CRMData",
    "DataContractError",
    "Problem",
    "coerce_ids",
    "load_crm",
    "read_table",
    "validate",
]

TABLES: tuple[str, ...] = ("leads", "events", "stage_changes")
_MAX_EXAMPLES = 5
#: Timestamps before this are problems (a 0 or placeholder date in the export).
EPOCH = pd.Timestamp("1970-01-01")
#: How far events may trail the inferred export instant (the newest created_at / changed_at).
FUTURE_TOLERANCE = pd.Timedelta(days=7)


@dataclass(frozen=True)
class Problem:
    """One failed check: where it is, how many rows, examples, and how to fix it."""

    table: str
    column: str | None
    message: str
    rows: tuple[int, ...] = ()
    examples: tuple[str, ...] = ()
    fix: str = ""

    def __str__(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        detail = ""
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:_MAX_EXAMPLES])
            more = ", ..." if len(self.rows) > _MAX_EXAMPLES else ""
            detail = f" (rows {shown}{more}"
            if self.examples:
                detail += "; e.g. " + ", ".join(repr(e) for e in self.examples[:3])
            detail += ")"
        fix = f" {self.fix}" if self.fix else ""
        return f"{where}: {self.message}{detail}.{fix}"


class DataContractError(ValueError):
    """The input tables break the data contract; ``problems`` lists every failure found."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        n = len(self.problems)
        head = "1 problem" if n == 1 else f"{n} problems"
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{head} in the input data:\n{lines}")


@dataclass(frozen=True)
class CRMData:
    """The three validated tables. Build with :func:`validate` or :func:`load_crm`."""

    leads: pd.DataFrame
    events: pd.DataFrame
    stage_changes: pd.DataFrame
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)

    @property
    def end(self) -> pd.Timestamp:
        """The last instant the data is known to be complete: the newest ``created_at`` or
        ``changed_at``. Events never move it: an activity dated next year (a scheduled webinar,
        a typo) would otherwise make label windows without an outcome yet look observed and
        label them negative. Events after the end are never used: observation points stop at
        it, and features see only events before their point."""
        c = self.columns
        stamps = [self.leads[c.created_at].max()]
        if len(self.stage_changes):
            stamps.append(self.stage_changes[c.changed_at].max())
        return pd.Timestamp(max(stamps))

    @property
    def start(self) -> pd.Timestamp:
        """The first lead's creation time."""
        return pd.Timestamp(self.leads[self.columns.created_at].min())

    def summary(self) -> dict[str, object]:
        """Row counts and the time span, for CLI output and logs."""
        c = self.columns
        return {
            "leads": len(self.leads),
            "events": len(self.events),
            "stage_changes": len(self.stage_changes),
            "event_types": int(self.events[c.event_type].nunique()) if len(self.events) else 0,
            "start": str(self.start),
            "end": str(self.end),
        }


def _rows(mask: np.ndarray | pd.Series) -> tuple[int, ...]:
    return tuple(int(i) for i in np.flatnonzero(np.asarray(mask))[: _MAX_EXAMPLES + 1])


def _examples(values: pd.Series, mask: np.ndarray | pd.Series) -> tuple[str, ...]:
    return tuple(str(v) for v in values[np.asarray(mask)].head(3).tolist())


def _time_examples(values: pd.Series, mask: np.ndarray) -> tuple[str, ...]:
    """:func:`_examples` of a timestamp column, formatting only the rows shown (formatting a
    whole column of millions of timestamps took seconds)."""
    return tuple(str(v) for v in values[mask].head(3).astype("string").tolist())


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _coerce_timestamp(
    df: pd.DataFrame, table: str, col: str, problems: list[Problem]
) -> pd.Series | None:
    raw = df[col]
    if len(raw) == 0:
        return pd.Series([], index=raw.index, dtype="datetime64[ns]")
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return _in_range(raw.dt.tz_convert("UTC").dt.tz_localize(None), raw, table, col, problems)
    if pd.api.types.is_datetime64_dtype(raw.dtype):
        return _in_range(raw, raw, table, col, problems)
    if not (pd.api.types.is_object_dtype(raw.dtype) or pd.api.types.is_string_dtype(raw.dtype)):
        problems.append(
            Problem(
                table,
                col,
                f"has dtype {raw.dtype}, not a timestamp",
                fix="Expected ISO-8601 timestamps or a datetime column.",
            )
        )
        return None
    text = raw.astype("string")
    present = text.notna() & (text.str.strip() != "")
    # An explicit offset or Z marks a timezone-aware value; mixing both kinds is ambiguous.
    has_offset = text.str.contains(r"[+-]\d\d:?\d\d\s*$", regex=True, na=False)
    has_time = text.str.contains(r"\d[T ]\d", regex=True, na=False)
    aware = text.str.contains(r"\d[zZ]\s*$", regex=True, na=False) | (has_offset & has_time)
    if bool((aware & present).any()) and bool((~aware & present).any()):
        naive = present & ~aware
        aware = present & aware
        odd = naive if naive.sum() <= aware.sum() else aware  # show the minority
        problems.append(
            Problem(
                table,
                col,
                f"mixes timezone-aware and naive timestamps ({int(aware.sum())} aware, "
                f"{int(naive.sum())} naive; the rows shown are the "
                f"{'naive' if odd is naive else 'aware'} ones)",
                _rows(odd),
                _examples(raw, odd),
                "Give every timestamp an offset (e.g. '+00:00') or none; naive ones are read as UTC.",
            )
        )
        return None
    parsed = pd.to_datetime(text.where(present), errors="coerce", utc=True, format="ISO8601")
    bad = present & parsed.isna()
    if bool(bad.any()):
        problems.append(
            Problem(
                table,
                col,
                f"{_plural(int(bad.sum()), 'value')} could not be parsed as a timestamp",
                _rows(bad),
                _examples(raw, bad),
                "Expected ISO-8601 timestamps such as '2024-03-01T09:30:00Z'; fix the export or "
                "pass the right column with --config columns.",
            )
        )
    return _in_range(parsed.dt.tz_localize(None), raw, table, col, problems)


def _in_range(
    ts: pd.Series, raw: pd.Series, table: str, col: str, problems: list[Problem]
) -> pd.Series | None:
    """``ts`` as ``datetime64[ns]``, or a problem naming the rows outside its range (years
    before 1677 or after 2262: a placeholder such as 9999-12-31)."""
    span = _span(ts)  # rows are compared one by one only when some are outside
    if span is not None and pd.Timestamp.min <= span[0] and span[1] <= pd.Timestamp.max:
        return ts.astype("datetime64[ns]")
    outside = ((ts < pd.Timestamp.min) | (ts > pd.Timestamp.max)).to_numpy()
    if outside.any():
        problems.append(
            Problem(
                table,
                col,
                f"{_plural(int(outside.sum()), 'timestamp')} outside the years 1677-2262",
                _rows(outside),
                _examples(raw, outside),
                "Placeholder dates such as 9999-12-31 or 0001-01-01 are not times: leave the "
                "value empty or drop the rows.",
            )
        )
        return None
    return ts.astype("datetime64[ns]")


def _span(ts: pd.Series) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """Earliest and latest of a naive datetime column, or None when it is empty or has missing
    values (then the caller compares row by row). A numpy reduction: no mask, no copy."""
    v = ts.to_numpy()
    if v.dtype.kind != "M" or len(v) == 0:
        return None
    # As integers: twice as fast as datetime64's own min and max, and NaT is the smallest.
    ints = v.view(np.int64)
    lo = ints.min()
    if lo == np.iinfo(np.int64).min:  # NaT
        return None
    unit = np.datetime_data(v.dtype)[0]
    return pd.Timestamp(lo, unit=unit), pd.Timestamp(ints.max(), unit=unit)


def coerce_ids(s: pd.Series) -> pd.Series:
    """Lead ids on one dtype: int64 when every id is a plain integer that prints back the same,
    else text exactly as written (``00524`` and ``A-17`` stay text)."""
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.astype("int64")
    if pd.api.types.is_float_dtype(s.dtype):
        whole = s.dropna()
        if len(whole) and bool((whole == np.floor(whole)).all()) and not s.isna().any():
            return s.astype("int64")
    text = s.astype("string").str.strip()
    # Integers only when every id prints back the same: "00524" and "A-17" stay text, so ids
    # come out of scoring exactly as they went in.
    if text.notna().all() and bool(text.str.fullmatch(r"-?(0|[1-9]\d{0,17})").all()):
        return text.astype("int64")
    return text.astype("object").where(text.notna(), None).astype("string")


def _check_nonempty(df: pd.DataFrame, table: str, problems: list[Problem]) -> bool:
    if len(df) == 0:
        problems.append(Problem(table, None, "is empty", fix="Export at least one row."))
        return False
    return True


def _check_required(
    df: pd.DataFrame, table: str, required: Sequence[str], problems: list[Problem]
) -> bool:
    missing = [c for c in required if c not in df.columns]
    if missing:
        have = ", ".join(map(repr, list(df.columns)[:12]))
        problems.append(
            Problem(
                table,
                missing[0] if len(missing) == 1 else None,
                f"missing required column(s) {', '.join(map(repr, missing))} (found: {have})",
                fix="Rename the columns in the export or map them with the `columns` config section.",
            )
        )
        return False
    return True


def _check_nulls(
    df: pd.DataFrame, table: str, col: str, what: str, problems: list[Problem]
) -> None:
    null = df[col].isna().to_numpy()
    if null.any():
        problems.append(
            Problem(
                table,
                col,
                f"{_plural(int(null.sum()), 'null ' + what)}",
                _rows(null),
                fix=f"Every {table} row needs a {col}; drop or fill those rows.",
            )
        )


def lead_positions(index: pd.Index, ids: pd.Series) -> np.ndarray:
    """Position in ``index`` (e.g. the leads table's ids) of each id; -1 when unknown.

    Event tables hold long runs of the same lead, so each run is looked up once; dense integer
    ids (the usual CRM key) are found by one array lookup per row, without hashing.
    """
    values = ids.to_numpy()
    if len(values) > 2 * len(index):
        starts = _run_starts(values)
        if starts is not None:
            return np.repeat(_positions(index, values[starts[:-1]]), np.diff(starts))
    return _positions(index, values)


def lead_runs(index: pd.Index, ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """:func:`lead_positions` as runs: ``(starts, positions)``, rows
    ``starts[r]:starts[r + 1]`` all at ``positions[r]`` (one row per run when ids do not run)."""
    values = ids.to_numpy()
    starts = _run_starts(values)
    if starts is None:
        return np.arange(len(values) + 1, dtype=np.int64), _positions(index, values)
    return starts, _positions(index, values[starts[:-1]])


def _run_starts(values: np.ndarray) -> np.ndarray | None:
    """Where each run of equal values starts, and ``len(values)`` last; None when the runs
    average fewer than two rows (looking runs up would not pay)."""
    n = len(values)
    if n == 0:
        return None
    change = np.empty(n, dtype=bool)
    change[0] = True
    np.not_equal(values[1:], values[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    if len(starts) >= n // 2:
        return None
    return np.append(starts, n)


def _positions(index: pd.Index, values: np.ndarray) -> np.ndarray:
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if index.dtype.kind in "iu" and values.dtype.kind in "iu" and len(index):
        lo, hi = int(index.min()), int(index.max())
        if hi - lo < 4 * len(index) + 1024:
            # Dense integer ids (the usual CRM key): one array lookup per row, no hashing.
            table = np.full(hi - lo + 1, -1, dtype=np.int64)
            table[index.to_numpy().astype(np.int64) - lo] = np.arange(len(index))
            v = values.astype(np.int64, copy=True)
            if int(v.min()) >= lo and int(v.max()) <= hi:
                v -= lo
                return table[v]
            out = np.full(n, -1, dtype=np.int64)
            ok = (v >= lo) & (v <= hi)
            out[ok] = table[v[ok] - lo]
            return out
    return index.get_indexer(values).astype(np.int64)


def _copy_on_write() -> bool:
    """Is pandas' copy-on-write in force (pandas >= 3, or switched on in pandas 2)?"""
    if int(pd.__version__.split(".")[0]) >= 3:
        return True
    return bool(pd.get_option("mode.copy_on_write") is True)


def _in_lead_time_order(
    df: pd.DataFrame, leads: pd.Index, lead_col: str, time_col: str
) -> pd.DataFrame:
    """``df`` in (lead, time) order, ties in input order: pandas' stable
    ``sort_values([lead_col, time_col])`` for ``leads`` sorted, in one pass plus a per-lead sort
    only where a lead's rows are out of time order (a CRM export is usually in time order), and
    no copy at all when ``df`` is in that order already (an export sorted by lead and time)."""
    from leadml._kernels import in_lead_order, lead_key_order

    starts, run_pos = lead_runs(leads, df[lead_col])
    t = df[time_col].to_numpy(dtype="datetime64[ns]").view(np.int64)
    if in_lead_order(starts, run_pos, t):
        return df.reset_index(drop=True)
    pos = np.repeat(run_pos, np.diff(starts))
    return df.take(np.asarray(lead_key_order(pos, t))).reset_index(drop=True)


def validate(
    leads: pd.DataFrame,
    events: pd.DataFrame,
    stage_changes: pd.DataFrame,
    columns: ColumnsConfig | None = None,
    *,
    now: str | pd.Timestamp | None = None,
    strict_future: bool = False,
    part: bool = False,
) -> CRMData:
    """Check the three tables against the contract and return them coerced.

    Parameters
    ----------
    leads, events, stage_changes : DataFrame
        Raw tables, e.g. from :func:`read_table`.
    columns : ColumnsConfig, optional
        Column names, when the export does not use the defaults.
    now : str or Timestamp, optional
        When the export was taken (UTC if naive). Default: inferred (see Notes).
    strict_future : bool
        Events dated well after the inferred export time are problems (``leadml validate``).
    part : bool
        The tables are one lead range of a larger CRM whose leads were validated whole
        (:mod:`leadml.data.partitions`): their ids keep their type, and a range without stage
        changes is not an empty table.

    Returns
    -------
    CRMData
        Copies with canonical dtypes, sorted by lead and time.

    Raises
    ------
    DataContractError
        With every problem found (missing columns, unparseable or mixed-timezone timestamps,
        null or duplicate ids, unknown leads, unknown stages, stage changes before creation,
        empty tables, timestamps before 1970 or after the export).

    Notes
    -----
    Time sanity: a row dated after the export is a scheduled activity or a typo, and it would
    move the data end and label every week without an outcome yet as a negative. Rows dated
    before 1970, after the clock of this machine (plus a day for time zones), or after ``now``
    when it is given, are problems in any table. Without ``now`` the export instant is inferred
    as the newest ``created_at`` / ``changed_at`` (:attr:`CRMData.end`); with
    ``strict_future`` (``leadml validate``) events more than ``FUTURE_TOLERANCE`` after it are
    problems (engagement keeps arriving between the last new lead and the export, hence the
    slack). Elsewhere they are accepted: an export of "leads created in 2023 with all their
    activity since" is legitimate, and :attr:`CRMData.end` never lets events move the data end
    or open label windows, whatever their dates.
    """
    c = columns or ColumnsConfig()
    problems: list[Problem] = []
    # With copy-on-write (always on from pandas 3) a shallow copy suffices: a column set here
    # never reaches the caller's frames, and 50M events are not held twice while checked.
    deep = not _copy_on_write()
    leads, events = leads.copy(deep=deep), events.copy(deep=deep)
    stage_changes = stage_changes.copy(deep=deep)

    ok_leads = _check_nonempty(leads, "leads", problems)
    ok_leads &= _check_required(leads, "leads", [c.lead_id, c.created_at], problems)
    ok_events = _check_required(
        events, "events", [c.lead_id, c.event_type, c.occurred_at], problems
    )
    ok_stages = part or _check_nonempty(stage_changes, "stage_changes", problems)
    ok_stages &= _check_required(
        stage_changes, "stage_changes", [c.lead_id, c.stage, c.changed_at], problems
    )

    if ok_leads:
        _check_nulls(leads, "leads", c.lead_id, c.lead_id, problems)
        dup = leads[c.lead_id].notna() & leads[c.lead_id].duplicated(keep="first")
        if bool(dup.any()):
            problems.append(
                Problem(
                    "leads",
                    c.lead_id,
                    f"{_plural(int(dup.sum()), 'duplicate lead_id')}",
                    _rows(dup),
                    _examples(leads[c.lead_id], dup),
                    "Expected one row per lead; deduplicate the export.",
                )
            )
        _check_nulls(leads, "leads", c.created_at, c.created_at, problems)
        created = _coerce_timestamp(leads, "leads", c.created_at, problems)
        if created is not None:
            leads[c.created_at] = created
    if ok_events:
        _check_nulls(events, "events", c.lead_id, c.lead_id, problems)
        _check_nulls(events, "events", c.event_type, c.event_type, problems)
        _check_nulls(events, "events", c.occurred_at, c.occurred_at, problems)
        occurred = _coerce_timestamp(events, "events", c.occurred_at, problems)
        if occurred is not None:
            events[c.occurred_at] = occurred
        if c.value in events.columns:
            raw = events[c.value]
            floats = raw.dtype == np.float64  # Parquet's doubles: nothing to convert or refuse
            num = raw if floats else pd.to_numeric(raw, errors="coerce")
            bad = None if floats else raw.notna() & num.isna()
            infinite = np.isinf(num.to_numpy(dtype="float64", na_value=np.nan))
            if infinite.any():
                problems.append(
                    Problem(
                        "events",
                        c.value,
                        f"{_plural(int(infinite.sum()), 'value')} infinite or too large for a "
                        "number (inf, 1e400)",
                        _rows(infinite),
                        _examples(events[c.value], infinite),
                        "Expected finite numbers (e.g. seconds on page) or empty.",
                    )
                )
            if bad is not None and bool(bad.any()):
                problems.append(
                    Problem(
                        "events",
                        c.value,
                        f"{_plural(int(bad.sum()), 'value')} not numeric",
                        _rows(bad),
                        _examples(events[c.value], bad),
                        "Expected numbers (e.g. seconds on page) or empty.",
                    )
                )
            else:
                events[c.value] = num.astype("float64")
    if ok_stages:
        _check_nulls(stage_changes, "stage_changes", c.lead_id, c.lead_id, problems)
        _check_nulls(stage_changes, "stage_changes", c.changed_at, c.changed_at, problems)
        changed = _coerce_timestamp(stage_changes, "stage_changes", c.changed_at, problems)
        if changed is not None:
            stage_changes[c.changed_at] = changed
        stage = stage_changes[c.stage].astype("string").str.strip().str.lower()
        unknown = stage.notna() & ~stage.isin(STAGES)
        if bool(unknown.any()):
            problems.append(
                Problem(
                    "stage_changes",
                    c.stage,
                    f"{_plural(int(unknown.sum()), 'unknown stage name')} "
                    f"({', '.join(sorted(map(repr, set(stage[unknown].dropna()))))[:200]})",
                    _rows(unknown),
                    _examples(stage_changes[c.stage], unknown),
                    f"Expected one of {', '.join(STAGES)}; map your CRM's stage names onto these.",
                )
            )
        _check_nulls(stage_changes, "stage_changes", c.stage, c.stage, problems)
        stage_changes[c.stage] = stage.astype("object").where(stage.notna(), None)

    # Cross-table checks need clean ids; compare on a common dtype.
    if ok_leads and not leads[c.lead_id].isna().any():
        if not part:  # a part's ids are the whole table's, already coerced
            leads[c.lead_id] = coerce_ids(leads[c.lead_id])
        as_int = pd.api.types.is_integer_dtype(leads[c.lead_id].dtype)
        known = pd.Index(leads[c.lead_id])
        for table, df, ok in (
            ("events", events, ok_events),
            ("stage_changes", stage_changes, ok_stages),
        ):
            if not ok or df[c.lead_id].isna().any():
                continue
            ids = coerce_ids(df[c.lead_id])
            if as_int and not pd.api.types.is_integer_dtype(ids.dtype):
                ids = ids.astype("string")
                known_cmp = pd.Index(known.astype("string"))
            else:
                known_cmp = known
                if not as_int:
                    ids = ids.astype("string")
            if known_cmp.is_unique:  # looked up by runs of ids, without hashing dense ints
                starts, run_pos = lead_runs(known_cmp, ids)
                orphan = np.zeros(len(ids), dtype=bool)
                if (run_pos < 0).any():
                    orphan = np.repeat(run_pos < 0, np.diff(starts))
            else:
                orphan = ~ids.isin(known_cmp).to_numpy()
            if orphan.any():
                problems.append(
                    Problem(
                        table,
                        c.lead_id,
                        f"{_plural(int(orphan.sum()), 'row')} for "
                        f"{_plural(int(pd.Series(ids[orphan]).nunique()), 'unknown lead')}",
                        _rows(orphan),
                        _examples(df[c.lead_id], orphan),
                        "Every lead_id must exist in the leads table; export the missing leads or "
                        "drop these rows.",
                    )
                )
            else:
                df[c.lead_id] = ids.astype(leads[c.lead_id].dtype)

        if (
            ok_stages
            and pd.api.types.is_datetime64_dtype(stage_changes[c.changed_at].dtype)
            and pd.api.types.is_datetime64_dtype(leads[c.created_at].dtype)
            and stage_changes[c.lead_id].dtype == leads[c.lead_id].dtype
        ):
            created_by_id = leads.drop_duplicates(c.lead_id).set_index(c.lead_id)[c.created_at]
            created = stage_changes[c.lead_id].map(created_by_id)
            early = (stage_changes[c.changed_at] < created).to_numpy()
            if early.any():
                problems.append(
                    Problem(
                        "stage_changes",
                        c.changed_at,
                        f"{_plural(int(early.sum()), 'stage change')} before the lead's created_at",
                        _rows(early),
                        _examples(stage_changes[c.changed_at].astype("string"), early),
                        "A lead cannot change stage before it exists; fix created_at or the "
                        "stage change timestamps.",
                    )
                )

    _check_time_sanity(leads, events, stage_changes, c, now, strict_future, problems)
    if problems:
        raise DataContractError(problems)

    leads = leads.sort_values(c.lead_id, kind="stable").reset_index(drop=True)
    known = pd.Index(leads[c.lead_id])
    events = _in_lead_time_order(events, known, c.lead_id, c.occurred_at)
    stage_changes = _in_lead_time_order(stage_changes, known, c.lead_id, c.changed_at)
    # Categorical event types: one byte per event at 50M events, and a fixed vocabulary order.
    if not isinstance(events[c.event_type].dtype, pd.CategoricalDtype):
        events[c.event_type] = events[c.event_type].astype("string").astype("category")
    return CRMData(leads=leads, events=events, stage_changes=stage_changes, columns=c)


def _check_time_sanity(
    leads: pd.DataFrame,
    events: pd.DataFrame,
    stage_changes: pd.DataFrame,
    c: ColumnsConfig,
    now: str | pd.Timestamp | None,
    strict: bool,
    problems: list[Problem],
) -> None:
    """Timestamps before 1970 or after the export (see :func:`validate`, Notes)."""
    stamped = [
        ("leads", leads, c.created_at),
        ("stage_changes", stage_changes, c.changed_at),
        ("events", events, c.occurred_at),
    ]
    cols = {
        t: df[col]
        for t, df, col in stamped
        if col in df.columns and df[col].dtype == "datetime64[ns]"  # coerced without problems
    }
    clock = pd.Timestamp.now(tz="UTC").tz_localize(None) + pd.Timedelta(days=1)
    export: pd.Timestamp | None = None
    if now is not None:
        given = pd.Timestamp(now)
        export = given.tz_convert("UTC").tz_localize(None) if given.tzinfo else given
    limit, after = clock, "this machine's clock"
    if export is not None and export < clock:
        limit, after = export, f"--now {export}"
    for t, _, col in stamped:
        if t not in cols:
            continue
        ts = cols[t]
        span = _span(ts)  # rows are compared one by one only when some are out
        if span is not None and span[0] >= EPOCH and span[1] <= limit:
            continue
        for mask, what, fix in (
            (
                (ts < EPOCH).to_numpy(),
                "dated before 1970",
                "A CRM has no activity before 1970: fix or drop these rows (a 0 or a placeholder "
                "date in the export).",
            ),
            (
                (ts > limit).to_numpy(),
                f"dated after the export ({after})",
                "Future-dated rows (scheduled activities, typos) would extend the data end and "
                "label weeks without an outcome yet as negatives: drop them.",
            ),
        ):
            if mask.any():
                problems.append(
                    Problem(
                        t,
                        col,
                        f"{_plural(int(mask.sum()), 'row')} {what}",
                        _rows(mask),
                        _time_examples(ts, mask),
                        fix,
                    )
                )
    if strict and now is None and "events" in cols and len(cols["events"]):
        ends = [cols[t].max() for t in ("leads", "stage_changes") if t in cols and len(cols[t])]
        if ends:
            inferred = max(ends)
            late = (cols["events"] > inferred + FUTURE_TOLERANCE).to_numpy()
            if late.any():
                problems.append(
                    Problem(
                        "events",
                        c.occurred_at,
                        f"{_plural(int(late.sum()), 'row')} dated more than "
                        f"{FUTURE_TOLERANCE.days} days after the newest created_at / changed_at "
                        f"({inferred}), the inferred export time",
                        _rows(late),
                        _time_examples(cols["events"], late),
                        "Drop scheduled or future-dated activities, or pass --now with the "
                        "export time if the export is that much newer. (Training and scoring "
                        "never let such rows move the data end.)",
                    )
                )


def read_table(
    path: str | Path,
    *,
    text_columns: Sequence[str] = (),
    category_columns: Sequence[str] = (),
    skip_columns: Sequence[str] = (),
) -> pd.DataFrame:
    """Read one CSV or Parquet file (by extension), or a directory of Parquet files (a
    partitioned dataset); in a CSV, ``text_columns`` (those present) are read as text, exactly
    as written (ids such as ``00000524`` keep their zeros). Parquet string ``category_columns``
    (those present) come as pandas categoricals straight from the file's dictionary: 50M event
    types are then one byte each, never 50M strings. ``skip_columns`` are not read."""
    p = Path(path)
    suffix = "".join(p.suffixes[-2:]).lower() if p.suffix.lower() == ".gz" else p.suffix.lower()
    table = p.name.split(".")[0]
    if p.is_file() and p.stat().st_size == 0:
        raise DataContractError(
            [
                Problem(
                    table,
                    None,
                    f"{p.name} is empty (0 bytes)",
                    fix="Export the table again; a table without rows still needs its header line.",
                )
            ]
        )
    if p.is_dir() or suffix in {".parquet", ".pq"}:
        dataset = parquet_dataset(p, category_columns)
        kept = [f.name for f in dataset.schema if f.name not in skip_columns]
        return parquet_frame(dataset, columns=None if len(kept) == len(dataset.schema) else kept)
    if suffix in {".csv", ".csv.gz"}:
        sep = _separator(p)
        try:
            header = pd.read_csv(p, nrows=0, sep=sep).columns
            text = {col: str for col in text_columns if col in header}
            use = [col for col in header if col not in skip_columns]
            return pd.read_csv(
                p,
                low_memory=False,
                dtype=text or None,
                sep=sep,
                usecols=use if len(use) < len(header) else None,
            )
        except UnicodeDecodeError:
            raise DataContractError([_not_utf8(p, table)]) from None
    raise DataContractError(
        [Problem(p.stem, None, f"unsupported file type {p.name!r}", fix="Use .csv or .parquet.")]
    )


def parquet_dataset(path: str | Path, category_columns: Sequence[str] = ()) -> Any:
    """A Parquet file or directory as a ``pyarrow.dataset.Dataset`` whose string
    ``category_columns`` (those present) read as dictionaries (see :func:`read_table`)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    p = Path(path)
    found = ds.dataset(p, format="parquet", partitioning="hive")
    strings = [
        f.name
        for f in found.schema
        if f.name in category_columns
        and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
    ]
    if not strings:
        return found
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=strings))
    return ds.dataset(p, format=fmt, partitioning="hive")


def parquet_frame(
    dataset: Any, where: Any = None, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """The rows of a :func:`parquet_dataset` (those matching the ``where`` expression) as a
    DataFrame, in file order; only ``columns``, when given."""
    import pyarrow as pa

    schema = dataset.schema
    if columns is not None:
        schema = pa.schema([schema.field(name) for name in columns])
    if _numbers_only(schema):
        return _frame_by_batches(dataset, where, schema)
    table = dataset.to_table(columns=None if columns is None else list(columns), filter=where)
    if _copy_on_write():  # pandas >= 3: Arrow buffers freed column by column as converted
        return table.to_pandas(self_destruct=True, split_blocks=True)
    return table.to_pandas()


def _numbers_only(schema: Any) -> bool:
    """Only integers, floats, naive nanosecond timestamps and dictionary-encoded strings
    (category columns): what :func:`_frame_by_batches` reads as ``to_pandas`` would."""
    import pyarrow as pa

    def plain(t: Any) -> bool:
        if pa.types.is_dictionary(t):
            return pa.types.is_integer(t.index_type) and (
                pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)
            )
        if pa.types.is_timestamp(t):
            return t.unit == "ns" and t.tz is None
        return pa.types.is_integer(t) or pa.types.is_floating(t)

    return len(schema) > 0 and all(plain(f.type) for f in schema)


def _frame_by_batches(dataset: Any, where: Any = None, schema: Any = None) -> pd.DataFrame:
    """:func:`parquet_frame` of a table of numbers (:func:`_numbers_only`), without holding it
    twice: each batch is copied into arrays sized by counting the rows first (from the file
    metadata; with ``where``, by reading the filter's columns), and its Arrow memory is reused
    by the next one (a 50M-row events table is 1.3 GB once, not twice). The result equals
    ``to_table(filter=where).to_pandas()``: integer columns with missing values become float64
    with NaN, dictionary columns categoricals with their values in order of first appearance.
    ``schema``: the columns to read (default: all)."""
    import pyarrow as pa

    schema = dataset.schema if schema is None else schema
    n = dataset.count_rows(filter=where)
    out: dict[str, np.ndarray] = {}
    levels: dict[str, dict[str, int]] = {}
    for f in schema:
        if pa.types.is_dictionary(f.type):  # codes: int16 until more levels than that holds
            out[f.name], levels[f.name] = np.empty(n, dtype=np.int16), {}
        else:
            out[f.name] = np.empty(n, dtype=f.type.to_pandas_dtype())
    at = 0
    names = [f.name for f in schema]
    batches = dataset.to_batches(
        columns=names, filter=where, batch_readahead=4, fragment_readahead=1
    )
    for batch in batches:
        k = batch.num_rows
        if at + k > n:  # the files changed while being read: reported below
            at = n + 1
            break
        for i, f in enumerate(schema):
            col, dest = batch.column(i), out[f.name]
            if f.name in levels:
                seen = levels[f.name]
                values = col.dictionary.to_pylist()
                lookup = np.array([seen.setdefault(v, len(seen)) for v in values] + [-1])
                if len(seen) > np.iinfo(dest.dtype).max:
                    out[f.name] = dest = dest.astype(np.int32)
                idx = col.indices.fill_null(-1) if col.null_count else col.indices
                if np.array_equal(lookup[:-1], np.arange(len(values))):
                    dest[at : at + k] = idx.to_numpy()  # the levels so far, in their order
                else:
                    dest[at : at + k] = lookup[idx.to_numpy()]  # a missing index (-1): -1
            elif col.null_count and dest.dtype.kind in "iu":
                out[f.name] = dest = dest.astype(np.float64)  # as to_pandas: NaN needs floats
                dest[at : at + k] = col.to_numpy(zero_copy_only=False)
            else:
                dest[at : at + k] = col.to_numpy(zero_copy_only=False)
        at += k
    if at != n:  # the files changed while being read
        got = "more" if at > n else f"{at:,}"
        raise OSError(f"{n:,} rows were counted, then {got} read: the files changed; read again")
    frame: dict[str, Any] = {}
    for f in schema:
        if f.name in levels:
            frame[f.name] = pd.Categorical.from_codes(out[f.name], categories=list(levels[f.name]))
        else:
            frame[f.name] = out[f.name]
    return pd.DataFrame(frame, copy=False)


def _open_text(p: Path, errors: str = "strict") -> Any:
    import gzip

    if p.suffix.lower() == ".gz":
        return gzip.open(p, "rt", encoding="utf-8", errors=errors, newline="")
    return p.open(encoding="utf-8", errors=errors, newline="")


def _separator(p: Path) -> str:
    """The CSV separator, from the header line: the most frequent of comma, semicolon and tab
    (European spreadsheets write ``;``; some CRMs export tab-separated ``.csv``)."""
    with _open_text(p, errors="replace") as f:
        first = f.readline()
    counts = {sep: first.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=lambda k: counts[k])
    return best if counts[best] > counts[","] else ","


def _not_utf8(p: Path, table: str) -> Problem:
    """Where the first non-UTF-8 byte is, as a line number (the header is line 1)."""
    import gzip

    raw = gzip.decompress(p.read_bytes()) if p.suffix.lower() == ".gz" else p.read_bytes()
    try:
        raw.decode("utf-8")
        where = ""
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        where = f" (line {line}, data row {line - 1}: byte 0x{raw[e.start]:02x})"
    return Problem(
        table,
        None,
        f"{p.name} is not UTF-8 text{where}",
        fix="Export it as UTF-8, or convert it first, e.g. "
        f"`iconv -f latin1 -t utf-8 {p.name} > utf8/{p.name}` (Latin-1 / Windows-1252 exports).",
    )


def _find_table(directory: Path, name: str) -> Path | None:
    """``<name>.parquet`` (a file, or a directory of Parquet files), ``<name>.pq``,
    ``<name>.csv``, ``<name>.csv.gz``, or a directory ``<name>`` of Parquet files."""
    for ext in (".parquet", ".pq", ".csv", ".csv.gz"):
        candidate = directory / f"{name}{ext}"
        if candidate.is_file() or (ext == ".parquet" and _parquet_dir(candidate)):
            return candidate
    bare = directory / name
    return bare if _parquet_dir(bare) else None


def _parquet_dir(p: Path) -> bool:
    return p.is_dir() and any(p.rglob("*.parquet"))


def _empty_events(c: ColumnsConfig) -> pd.DataFrame:
    """No ``events`` table: no engagement yet."""
    return pd.DataFrame(
        {
            c.lead_id: pd.Series([], dtype="int64"),
            c.event_type: pd.Series([], dtype=object),
            c.occurred_at: pd.Series([], dtype="datetime64[ns]"),
        }
    )


def _read_database(
    url: str, tables: DatabaseConfig, c: ColumnsConfig
) -> tuple[dict[str, pd.DataFrame], list[Problem]]:
    """The three tables from a database (:mod:`leadml.data.sql`): by name, or by the query
    configured for them. A missing ``events`` table under its default name is no engagement
    yet, as a missing ``events`` file is; a table named in the config must exist."""
    problems: list[Problem] = []
    frames: dict[str, pd.DataFrame] = {}
    with open_database(url) as db, db.connect() as conn:
        for name in TABLES:
            query = getattr(tables, f"{name}_query")
            table = getattr(tables, name)
            if query is None and not db.has_table(conn, table):
                if name == "events" and table == "events":
                    frames[name] = _empty_events(c)
                    continue
                problems.append(
                    Problem(
                        name,
                        None,
                        f"no table {table!r} in {db.shown}",
                        fix=f"Create it, or name the right one with database.{name} (or "
                        f"database.{name}_query) in the config.",
                    )
                )
                continue
            sql = query if query is not None else f"SELECT * FROM {db.quote(table)}"
            try:
                frames[name] = db.read(conn, sql)
            except ValueError as e:  # the database refused the query
                what = f"the query database.{name}_query" if query else f"reading {table!r}"
                problems.append(
                    Problem(
                        name,
                        None,
                        f"{what} failed in {db.shown}: {e}",
                        fix="Run the query in the database's own shell to see what is wrong.",
                    )
                )
    return frames, problems


def _read_directory(
    d: Path, c: ColumnsConfig, tables: Sequence[str] = TABLES, *, event_values: bool = True
) -> tuple[dict[str, pd.DataFrame], list[Problem]]:
    """The three tables (or the ``tables`` named) from a folder of CSV or Parquet files
    (``event_values=False``: without the events' value column)."""
    if not d.is_dir():
        raise DataContractError(
            [Problem("data", None, f"directory {str(d)!r} does not exist", fix="Pass --data DIR.")]
        )
    problems: list[Problem] = []
    frames: dict[str, pd.DataFrame] = {}
    for name in tables:
        path = _find_table(d, name)
        if path is None:
            if name == "events":
                frames[name] = _empty_events(c)
                continue
            problems.append(
                Problem(
                    name,
                    None,
                    f"no {name}.parquet or {name}.csv in {str(d)!r}",
                    fix="Write the table there (see `leadml synth` for the layout).",
                )
            )
            continue
        try:
            with stage("read"):
                events = name == "events"
                frames[name] = read_table(
                    path,
                    text_columns=[c.lead_id],
                    category_columns=[c.event_type] if events else [],
                    skip_columns=[c.value] if events and not event_values else [],
                )
        except DataContractError as e:
            problems.extend(e.problems)
        except (OSError, ValueError) as e:
            problems.append(Problem(name, None, f"could not read {path.name}: {e}"))
    return frames, problems


def load_crm(
    directory: str | Path,
    columns: ColumnsConfig | None = None,
    *,
    now: str | pd.Timestamp | None = None,
    strict_future: bool = False,
    database: DatabaseConfig | None = None,
    after_read: Callable[[], None] | None = None,
    event_values: bool = True,
) -> CRMData:
    """Read ``leads``, ``events`` and ``stage_changes`` and validate them (``now`` and
    ``strict_future``: see :func:`validate`). ``after_read`` is called once the tables are
    read, before they are validated (a job starts work there that would slow the read).
    ``event_values=False``: the events' ``value`` column is neither read nor checked (the
    scoring job, when no model sums values: 50M values are 400 MB).

    ``directory`` is a folder of CSV or Parquet files, or a database URL
    (``duckdb:///crm.duckdb``, ``postgresql://user@host/db``; :mod:`leadml.data.sql`) whose
    tables or queries ``database`` names (default: tables ``leads``, ``events`` and
    ``stage_changes``). A missing ``events`` table means no engagement yet (an empty table).
    """
    c = columns or ColumnsConfig()
    if is_database_url(directory):
        with stage("read"):
            frames, problems = _read_database(str(directory), database or DatabaseConfig(), c)
        if not event_values and "events" in frames:
            frames["events"] = frames["events"].drop(columns=[c.value], errors="ignore")
    else:
        frames, problems = _read_directory(Path(directory), c, event_values=event_values)
    if problems:
        raise DataContractError(problems)
    if after_read is not None:
        after_read()
    with stage("validate"):
        return validate(
            frames["leads"],
            frames["events"],
            frames["stage_changes"],
            columns=c,
            now=now,
            strict_future=strict_future,
        )
