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

from collections.abc import Iterator
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
    _find_table,
    lead_positions,
    parquet_dataset,
    parquet_frame,
    read_table,
    validate,
)
from leadml.data.sql import is_database_url

__all__ = ["LeadRanges", "open_lead_ranges"]


@dataclass
class LeadRanges:
    """A CRM's leads and stage changes, validated, and its events read one range of ``size``
    leads at a time (:meth:`parts`). Build with :func:`open_lead_ranges`."""

    leads: pd.DataFrame
    stage_changes: pd.DataFrame
    columns: ColumnsConfig
    events: Any  # a pyarrow dataset, or None: no events table (no engagement yet)
    empty_events: pd.DataFrame
    size: int
    now: str | pd.Timestamp | None = None

    @property
    def whole(self) -> CRMData:
        """Everything but the events (an empty events table with their columns): the data
        end and start, the leads' layout, the stage of every lead."""
        return CRMData(self.leads, self.empty_events, self.stage_changes, self.columns)

    def __len__(self) -> int:
        return max(1, -(-len(self.leads) // self.size))

    def _where(self, i: int) -> Any:
        """The dataset filter of range ``i``: ids after the previous range's last id, up to its
        own last id; the first range is open below (and takes null ids), the last open above,
        so every event row falls in exactly one range (unknown ids are found there)."""
        import pyarrow.dataset as ds

        ids = self.leads[self.columns.lead_id]
        field = ds.field(self.columns.lead_id)
        where = None
        if i > 0:
            where = field > _scalar(ids.iloc[i * self.size - 1])
        if i < len(self) - 1:
            upper = field <= _scalar(ids.iloc[min((i + 1) * self.size, len(ids)) - 1])
            where = upper if where is None else where & upper
        if i == 0 and where is not None:
            where = where | field.is_null()
        return where

    def parts(self) -> Iterator[CRMData]:
        """The validated tables of each range of leads, in lead order. Problems of any range
        are raised, all together, once every range has been checked; no range is yielded
        after the first one with a problem."""
        c = self.columns
        problems: list[Problem] = []
        s_pos = lead_positions(pd.Index(self.leads[c.lead_id]), self.stage_changes[c.lead_id])
        for i in range(len(self)):
            a, b = i * self.size, min((i + 1) * self.size, len(self.leads))
            with stage("read"):
                events = (
                    self.empty_events
                    if self.events is None
                    else parquet_frame(self.events, self._where(i))
                )
            sa, sb = np.searchsorted(s_pos, [a, b])
            try:
                with stage("validate"):
                    part = validate(
                        self.leads.iloc[a:b],
                        events,
                        self.stage_changes.iloc[sa:sb],
                        columns=c,
                        now=self.now,
                        part=True,
                    )
            except DataContractError as e:
                ids = self.leads[c.lead_id]
                problems += [_in_range(p, ids.iloc[a], ids.iloc[b - 1]) for p in e.problems]
                continue
            del events
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
    size: int,
    columns: ColumnsConfig | None = None,
    *,
    now: str | pd.Timestamp | None = None,
) -> LeadRanges:
    """Read and validate the leads and stage changes of ``directory`` and open its events
    (module docs) to be read ``size`` leads at a time.

    Raises
    ------
    DataContractError
        Every problem of the leads and stage changes, missing event columns, events that are
        not Parquet, and lead ids of different kinds in the two tables.
    """
    c = columns or ColumnsConfig()
    if size < 1:
        raise ValueError(f"size must be at least 1 lead, got {size}")
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
    if not d.is_dir():
        raise DataContractError(
            [Problem("data", None, f"directory {str(d)!r} does not exist", fix="Pass --data DIR.")]
        )
    problems: list[Problem] = []
    frames: dict[str, pd.DataFrame] = {}
    for name in ("leads", "stage_changes"):
        path = _find_table(d, name)
        if path is None:
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
                frames[name] = read_table(path, text_columns=[c.lead_id])
        except DataContractError as e:
            problems.extend(e.problems)
        except (OSError, ValueError) as e:
            problems.append(Problem(name, None, f"could not read {path.name}: {e}"))
    events_path = _find_table(d, "events")
    dataset = None
    if events_path is None:
        empty = pd.DataFrame(
            {
                c.lead_id: pd.Series([], dtype="int64"),
                c.event_type: pd.Series([], dtype=object),
                c.occurred_at: pd.Series([], dtype="datetime64[ns]"),
            }
        )
    elif events_path.is_dir() or events_path.suffix.lower() in (".parquet", ".pq"):
        dataset = parquet_dataset(events_path, [c.event_type])
        empty = dataset.schema.empty_table().to_pandas()
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
    if dataset is not None and c.lead_id in empty.columns:
        _check_id_kinds(whole.leads[c.lead_id], dataset.schema.field(c.lead_id).type)
    return LeadRanges(whole.leads, whole.stage_changes, c, dataset, whole.events, size, now=now)


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
