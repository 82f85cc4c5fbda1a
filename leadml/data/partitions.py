"""A CRM directory read one range of leads at a time: scoring more leads than fit in memory.

The leads and stage changes (a row or a few per lead) are read and validated whole. The events,
by far the biggest table (50 per lead is common), are read from Parquet, one file or a
directory of files (a partitioned dataset), one range of ``size`` consecutive lead ids at a
time, through a ``pyarrow.dataset`` filter on ``lead_id``. Each range is validated as
:func:`~leadml.data.contracts.validate` validates a whole CRM, so a range's tables are exactly
the rows the whole CRM holds for those leads, in the same order.

Cost
    Parquet row-group statistics let a range skip the row groups that hold none of its leads:
    events written in lead order, or partitioned by lead, are read once in all. Events in any
    other order are scanned once per range: correct, with peak memory still set by ``size``,
    but the read costs as many scans as there are ranges.

Problems
    Problems of the leads and stage changes (and missing event columns) are found before any
    range is read, with their row numbers. Problems of the events are found range by range;
    every range is still checked and all problems are raised together, each naming its range
    of lead ids and example values (row numbers inside a range are not the file's).

Lead ids must be integers in both tables, or text in both: the ranges are ranges of the leads
table's ids, and the events' ids are compared with them as stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadml._timing import stage
from leadml.config import ColumnsConfig
from leadml.data.contracts import (
    CRMData,
    DataContractError,
    Problem,
    _empty_events,
    _find_table,
    _read_directory,
    lead_positions,
    parquet_dataset,
    parquet_frame,
    validate,
)
from leadml.data.sql import is_database_url

__all__ = ["LeadRange", "LeadRanges", "open_lead_ranges"]


@dataclass
class LeadRange:
    """One range of leads: their rows of the leads and stage changes tables, and the bounds of
    their ids in the events (module docs). Small enough to send to another process."""

    index: int
    leads: pd.DataFrame
    stage_changes: pd.DataFrame
    columns: ColumnsConfig
    events_path: Path | None  # None: no events table (no engagement yet)
    empty_events: pd.DataFrame
    after: Any = None  # events with ids above this one (None: open below, null ids too)
    upto: Any = None  # ... up to and including this one (None: open above)
    now: str | pd.Timestamp | None = None
    event_values: bool = True  # False: the events' value column is not read

    def _where(self) -> Any:
        """Every event row falls in exactly one range: the first is open below (and takes the
        null ids), the last open above, so unknown ids are found in some range."""
        import pyarrow.dataset as ds

        field = ds.field(self.columns.lead_id)
        where = None if self.after is None else field > self.after
        if self.upto is not None:
            upper = field <= self.upto
            where = upper if where is None else where & upper
        if self.after is None and where is not None:
            where = where | field.is_null()
        return where

    def load(self) -> CRMData:
        """The range's validated tables.

        Raises
        ------
        DataContractError
            The range's problems, each naming the range's ids (row numbers inside a range are
            not the file's).
        """
        c = self.columns
        ids = self.leads[c.lead_id]
        with stage("read"):
            if self.events_path is None:
                events = self.empty_events
            else:
                try:
                    dataset = parquet_dataset(self.events_path, [c.event_type])
                    names = [f.name for f in dataset.schema]
                    if not self.event_values:
                        names = [n for n in names if n != c.value]
                    events = parquet_frame(dataset, self._where(), names)
                except (OSError, ValueError) as e:  # the files changed (or went) since opened
                    raise DataContractError(
                        [
                            Problem(
                                "events",
                                None,
                                f"could not read {self.events_path.name} for leads "
                                f"{ids.iloc[0]} to {ids.iloc[-1]}: {e}",
                                fix="Leave the files as they are while a job reads them, "
                                "then run it again",
                            )
                        ]
                    ) from None
        try:
            with stage("validate"):
                return validate(
                    self.leads,
                    events,
                    self.stage_changes,
                    columns=c,
                    now=self.now,
                    part=True,
                )
        except DataContractError as e:
            lo, hi = ids.iloc[0], ids.iloc[-1]
            raise DataContractError([_in_range(p, lo, hi) for p in e.problems]) from None


@dataclass
class LeadRanges:
    """A CRM's leads and stage changes, validated, and its events read one range of ``size``
    leads at a time (:meth:`ranges`, :meth:`parts`). Build with :func:`open_lead_ranges`."""

    leads: pd.DataFrame
    stage_changes: pd.DataFrame
    columns: ColumnsConfig
    events_path: Path | None  # None: no events table (no engagement yet)
    empty_events: pd.DataFrame
    size: int
    now: str | pd.Timestamp | None = None
    event_values: bool = True

    @property
    def whole(self) -> CRMData:
        """Everything but the events (an empty events table with their columns): the data
        end and start, the leads' layout, the stage of every lead."""
        return CRMData(self.leads, self.empty_events, self.stage_changes, self.columns)

    def __len__(self) -> int:
        return max(1, -(-len(self.leads) // self.size))

    def keep_only(self, columns: Iterable[str]) -> None:
        """Drop every leads column but these: what scoring does once the whole table's layout
        is checked. At millions of leads, identifiers nobody reads (e-mails, phone numbers)
        would otherwise be held to the end, and sent to every worker."""
        wanted = set(columns)
        self.leads = self.leads[[c for c in self.leads.columns if c in wanted]]

    def ranges(self) -> list[LeadRange]:
        """Every range, in lead order."""
        c = self.columns
        ids = self.leads[c.lead_id]
        s_pos = lead_positions(pd.Index(ids), self.stage_changes[c.lead_id])
        out = []
        for i in range(len(self)):
            a, b = i * self.size, min((i + 1) * self.size, len(self.leads))
            sa, sb = np.searchsorted(s_pos, [a, b])
            out.append(
                LeadRange(
                    i,
                    self.leads.iloc[a:b],
                    self.stage_changes.iloc[sa:sb],
                    c,
                    self.events_path,
                    self.empty_events,
                    after=_scalar(ids.iloc[a - 1]) if i > 0 else None,
                    upto=_scalar(ids.iloc[b - 1]) if i < len(self) - 1 else None,
                    now=self.now,
                    event_values=self.event_values,
                )
            )
        return out

    def parts(self) -> Iterator[CRMData]:
        """The validated tables of each range of leads, in lead order. Problems of any range
        are raised, all together, once every range has been checked; no range is yielded
        after the first one with a problem."""
        problems: list[Problem] = []
        for r in self.ranges():
            try:
                part = r.load()
            except DataContractError as e:
                problems += e.problems
                continue
            if not problems:
                yield part
            del part  # one range in memory at a time: not this one while the next is read
        if problems:
            raise DataContractError(problems)


def _scalar(value: Any) -> Any:
    return int(value) if isinstance(value, (int, np.integer)) else str(value)


def _in_range(p: Problem, lo: Any, hi: Any) -> Problem:
    """``p``, found in one range of leads: named by its ids, with examples instead of row
    numbers (a range's row numbers are not the file's)."""
    examples = f"; e.g. {', '.join(repr(e) for e in p.examples[:3])}" if p.examples else ""
    return Problem(
        p.table,
        p.column,
        f"{p.message} (among the rows of leads {lo} to {hi}{examples})",
        fix=p.fix,
    )


def open_lead_ranges(
    directory: str | Path,
    size: int | None,
    columns: ColumnsConfig | None = None,
    *,
    now: str | pd.Timestamp | None = None,
    parts: int = 1,
    event_values: bool = True,
) -> LeadRanges:
    """Read and validate the leads and stage changes of ``directory`` and open its events
    (module docs) to be read ``size`` leads at a time (``None``: the leads split evenly into
    ``parts`` ranges; ``event_values=False``: without their value column, as
    :func:`~leadml.data.contracts.load_crm`).

    Raises
    ------
    DataContractError
        Every problem of the leads and stage changes, missing event columns, events that are
        not Parquet, and lead ids of different kinds in the two tables.
    """
    c = columns or ColumnsConfig()
    if (size is not None and size < 1) or parts < 1:
        raise ValueError(f"size and parts must be at least 1, got {size} and {parts}")
    if is_database_url(directory):
        raise DataContractError(
            [
                Problem(
                    "data",
                    None,
                    "reading one range of leads at a time needs a directory of files, not a "
                    "database",
                    fix="Score without scoring.partition_leads (--partition-leads), or export "
                    "the events as Parquet.",
                )
            ]
        )
    d = Path(directory)
    frames, problems = _read_directory(d, c, ("leads", "stage_changes"))
    events_path = _find_table(d, "events")
    schema = None
    if events_path is None:
        empty = _empty_events(c)
    elif events_path.is_dir() or events_path.suffix.lower() in (".parquet", ".pq"):
        schema = parquet_dataset(events_path, [c.event_type]).schema
        empty = schema.empty_table().to_pandas()
        if not event_values:
            empty = empty.drop(columns=[c.value], errors="ignore")
    else:
        problems.append(
            Problem(
                "events",
                None,
                f"{events_path.name}: reading one range of leads at a time needs the events as "
                "Parquet (a file or a directory of files)",
                fix="Convert it once, e.g. pandas.read_csv(...).to_parquet('events.parquet'), or "
                "score without scoring.partition_leads (--partition-leads).",
            )
        )
    if problems:
        raise DataContractError(problems)
    with stage("validate"):
        whole = validate(frames["leads"], empty, frames["stage_changes"], columns=c, now=now)
    if schema is not None and c.lead_id in empty.columns:
        _check_id_kinds(whole.leads[c.lead_id], schema.field(c.lead_id).type)
    return LeadRanges(
        whole.leads,
        whole.stage_changes,
        c,
        events_path if schema is not None else None,
        whole.events,
        size or max(1, -(-len(whole.leads) // parts)),
        now=now,
        event_values=event_values,
    )


def _check_id_kinds(lead_ids: pd.Series, events_type: Any) -> None:
    import pyarrow as pa

    integer = pd.api.types.is_integer_dtype(lead_ids.dtype)
    events_int = pa.types.is_integer(events_type)
    events_text = pa.types.is_string(events_type) or pa.types.is_large_string(events_type)
    if (integer and events_int) or (not integer and events_text):
        return
    kind = "integers" if integer else "text"
    raise DataContractError(
        [
            Problem(
                "events",
                None,
                f"lead_id is stored as {events_type} while the leads table's ids are {kind}; "
                "reading one range of leads at a time compares them as stored",
                fix="Write lead_id with one type in both tables, or score without "
                "scoring.partition_leads (--partition-leads).",
            )
        ]
    )
