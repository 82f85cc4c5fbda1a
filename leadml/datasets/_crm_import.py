"""What the Salesforce and HubSpot importers share: reading exports, mapping values, the report.

An importer turns one CRM's export into leadml's three tables (design.md §1) and a
:class:`ImportReport` that says what it did: rows read per object, rows left out and why, each
status or stage value and the leadml stage it became, and every value it did not know. The rules
below hold for both CRMs; the field tables are in :mod:`leadml.datasets._salesforce` and
:mod:`leadml.datasets._hubspot`.

Reading
    Every cell is read as text (ids keep their case and zeros; Salesforce ids are 15 or 18
    characters), headers are stripped of a byte-order mark and spaces, empty strings are nulls.
    Timestamps may carry ``Z``, ``+0000`` or ``+00:00`` (Salesforce writes
    ``2024-03-01T09:30:00.000+0000``) or none (HubSpot writes ``2024-03-01 09:30`` in the
    account's time zone: set ``timezone`` in the mapping when it is not UTC). Booleans are
    ``true`` / ``false`` in any case (also ``1`` / ``0``, ``yes`` / ``no``). Missing required
    columns in any file are reported together in one :class:`DataContractError`.

Point in time
    A row becomes an event or a stage change at the first instant the CRM knew it. A date without
    a time (an activity's planned date, a close date) counts from the end of that day, unless a
    timestamp of the same record falls on that day. Anything dated after the export (the newest
    creation or modification timestamp in the files) is a planned activity, not an occurrence:
    it is left out and counted in the report.

Mapping
    Status and stage values are matched ignoring case, spaces and punctuation (``Closed -
    Converted`` = ``closed converted``). A value mapped to ``null`` is known and ignored; a value
    not in the mapping is *unmapped*: its rows are left out and it is listed with its count, so
    nothing disappears silently. Override the defaults with a YAML, TOML or JSON file or a dict,
    e.g. ``{"lead_status": {"Hot Prospect": "prospect"}, "activity_types": {"Call": "call"}}``.

Stage changes
    Every lead gets a ``lead`` row at its creation; a change stamped before the creation (clocks
    a second apart) is moved to it. Each lead's changes are sorted by time (ties in funnel
    order), exact duplicates are dropped, and a change to the stage the lead is already in is
    dropped (an MQL date after the lead date is no change in leadml's vocabulary). A lead whose
    stages go back down the funnel (other than a recycle from ``disqualified`` or ``lost`` to
    ``lead``) is listed in the report, not refused.

Personal data
    Names, e-mail addresses, phone numbers, addresses and free text (subjects, descriptions) are
    never imported, with three exceptions kept for the rep's report only: ``name``, ``company``
    and ``owner`` (leadml's display columns, which its identifier detection never lets become
    features; the report lists them for ``features.identifier_columns``).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadml.data.contracts import CRMData, DataContractError, Problem, validate
from leadml.funnel import FUNNEL, NEGATIVE_STAGES, STAGES

__all__ = ["DISPLAY_IDENTIFIERS", "Column", "ImportReport", "ImportResult", "MappingSpec"]

#: Columns kept for display only (the rep's report); never features.
DISPLAY_IDENTIFIERS: tuple[str, ...] = ("name", "company", "owner")

# Tie order of changes stamped at the same instant: along the funnel, an exit after its stage.
_TIE_RANK = {
    "lead": 0,
    "prospect": 1,
    "disqualified": 2,
    "opportunity": 3,
    "lost": 4,
    "customer": 5,
}
_FUNNEL_RANK = {s: i for i, s in enumerate(FUNNEL)}
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})
_MAX_SHOWN = 5


def norm_key(value: object) -> str:
    """A value as a mapping key: lower case, letters and digits only.

    >>> norm_key("Closed - Converted"), norm_key(" marketing_qualified lead ")
    ('closedconverted', 'marketingqualifiedlead')
    """
    return re.sub(r"[^0-9a-z]", "", str(value).casefold())


def snake(label: object) -> str:
    """An activity type as an event type: ``Email Open`` -> ``email_open``.

    >>> snake("Email Open"), snake("INCOMING_EMAIL"), snake("Proposal/Price Quote")
    ('email_open', 'incoming_email', 'proposal_price_quote')
    """
    return re.sub(r"[^0-9a-z]+", "_", str(label).casefold()).strip("_")


# --- the report -------------------------------------------------------------------------------


@dataclass
class ImportReport:
    """What an import read, mapped, left out and noticed. ``text()`` prints it for the CLI."""

    source: str
    rows_read: dict[str, int] = field(default_factory=dict)
    #: (field, CRM value, leadml stage or "(ignored)") -> rows
    mapped: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    #: (field, CRM value) -> rows left out because the value is not in the mapping
    unmapped: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: (object, why) -> rows left out
    dropped: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: (object, what) -> rows adjusted but kept
    adjusted: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: leads columns kept for display only (never features)
    identifier_columns: tuple[str, ...] = ()
    #: export columns not imported (personal data, free text, unknown fields)
    skipped_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: lead id -> its stage sequence, for leads that go back down the funnel
    out_of_order: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def drop(self, obj: str, why: str, rows: Any) -> None:
        """Count rows left out (``rows``: a count or a boolean mask)."""
        n = _count(rows)
        if n:
            self.dropped[(obj, why)] += n

    def adjust(self, obj: str, what: str, rows: Any) -> None:
        """Count rows changed but kept (``rows``: a count or a boolean mask)."""
        n = _count(rows)
        if n:
            self.adjusted[(obj, what)] += n

    def text(self) -> str:
        """The report as lines for a terminal."""
        lines = [f"{self.source} import"]
        if self.rows_read:
            lines.append("read: " + ", ".join(f"{k} {v:,} rows" for k, v in self.rows_read.items()))
        if self.mapped:
            lines.append("values mapped:")
            for (fld, value, stage), n in sorted(self.mapped.items()):
                lines.append(f"  {fld} {value!r} -> {stage} ({n:,})")
        if self.unmapped:
            lines.append("unmapped values (rows left out; map them in a --mapping file):")
            for (fld, value), n in sorted(self.unmapped.items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"  {fld} {value!r} ({n:,})")
        if self.dropped:
            lines.append("rows left out:")
            for (obj, why), n in sorted(self.dropped.items()):
                lines.append(f"  {obj}: {n:,} {why}")
        if self.adjusted:
            lines.append("rows adjusted:")
            for (obj, what), n in sorted(self.adjusted.items()):
                lines.append(f"  {obj}: {n:,} {what}")
        if self.out_of_order:
            n = len(self.out_of_order)
            lines.append(
                f"stages out of funnel order (kept; leadml handles recycling): {n:,} "
                f"lead{'s' if n != 1 else ''}"
            )
            for lead, seq in list(self.out_of_order.items())[:_MAX_SHOWN]:
                lines.append(f"  {lead}: {seq}")
            if n > _MAX_SHOWN:
                lines.append(f"  ... and {n - _MAX_SHOWN:,} more")
        for obj, cols in self.skipped_columns.items():
            if cols:
                lines.append(f"not imported from {obj}: {', '.join(cols)}")
        if self.identifier_columns:
            lines.append(
                "display only, never features: "
                + ", ".join(self.identifier_columns)
                + " (features.identifier_columns: ["
                + ", ".join(self.identifier_columns)
                + "])"
            )
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()


def _count(rows: Any) -> int:
    if isinstance(rows, pd.Series | np.ndarray):
        return int(np.asarray(rows, dtype=bool).sum())
    return int(rows)


@dataclass(frozen=True)
class ImportResult:
    """An imported CRM: the validated tables and the report of how they were made."""

    data: CRMData
    report: ImportReport

    def __str__(self) -> str:
        return self.report.text()


# --- the mapping ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappingSpec:
    """Value tables (section -> normalised CRM value -> leadml stage or None), activity-type
    renames (normalised CRM type -> event type or None to leave out) and the time zone of
    timestamps written without an offset."""

    tables: dict[str, dict[str, str | None]]
    activity_types: dict[str, str | None]
    timezone: str = "UTC"

    @classmethod
    def load(
        cls,
        mapping: str | os.PathLike[str] | Mapping[str, Any] | None,
        defaults: Mapping[str, Mapping[str, str | None]],
        source: str,
    ) -> MappingSpec:
        """Defaults overridden by ``mapping`` (a dict or a .yaml/.yml/.toml/.json path)."""
        given: Mapping[str, Any]
        if mapping is None:
            given = {}
        elif isinstance(mapping, Mapping):
            given = mapping
        else:
            given = _read_mapping_file(Path(os.fspath(mapping)))
        allowed = {*defaults, "activity_types", "timezone"}
        unknown = sorted(set(given) - allowed)
        if unknown:
            raise ValueError(
                f"{source} mapping: unknown key(s) {', '.join(map(repr, unknown))}; expected "
                f"some of {', '.join(sorted(allowed))}"
            )
        tables: dict[str, dict[str, str | None]] = {}
        for section, table in defaults.items():
            merged = {norm_key(k): v for k, v in table.items()}
            merged.update(_section(given.get(section), section, source, stages=True))
            tables[section] = merged
        activity = _section(given.get("activity_types"), "activity_types", source, stages=False)
        tz = given.get("timezone", "UTC")
        try:
            pd.Timestamp("2024-01-01").tz_localize(tz)
        except (TypeError, ValueError, KeyError) as e:
            raise ValueError(
                f"{source} mapping: timezone {tz!r} is not a time zone (e.g. 'UTC', "
                "'Europe/Berlin')"
            ) from e
        return cls(tables=tables, activity_types=activity, timezone=str(tz))

    def event_type(self, raw: pd.Series) -> pd.Series:
        """Activity types as event types: renamed when the mapping says so, else snake_case;
        NA where the mapping leaves the type out (or there is none)."""

        def one(v: object) -> object:
            if pd.isna(v):
                return pd.NA
            key = norm_key(v)
            if key in self.activity_types:
                renamed = self.activity_types[key]
                return pd.NA if renamed is None else renamed
            return snake(v)

        out = raw.map(one)
        return out.where(out.notna() & (out != ""), pd.NA).astype("string")


def _read_mapping_file(p: Path) -> Mapping[str, Any]:
    if not p.is_file():
        raise FileNotFoundError(f"mapping file {str(p)!r} does not exist")
    text = p.read_text(encoding="utf-8")
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            raw: Any = tomllib.loads(text)
        elif suffix in {".yaml", ".yml"}:
            import yaml

            raw = yaml.safe_load(text) or {}
        elif suffix == ".json":
            raw = json.loads(text)
        else:
            raise ValueError("expected a .yaml, .yml, .toml or .json file")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, ValueError) as e:
        raise ValueError(f"mapping file {str(p)!r}: {e}") from e
    if not isinstance(raw, Mapping):
        raise ValueError(f"mapping file {str(p)!r}: expected a table of sections at the top level")
    return raw


def _section(value: Any, section: str, source: str, *, stages: bool) -> dict[str, str | None]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{source} mapping: {section} must be a table of value -> name")
    out: dict[str, str | None] = {}
    bad = []
    for k, v in value.items():
        target = None if v is None or str(v).strip() == "" else str(v).strip()
        if stages and target is not None:
            target = target.lower()
            if target not in STAGES:
                bad.append(f"{k!r}: {v!r}")
        if not stages and target is not None:
            target = snake(target)
        out[norm_key(k)] = target
    if bad:
        raise ValueError(
            f"{source} mapping: {section} maps to unknown stage(s) ({', '.join(bad)}); expected "
            f"one of {', '.join(STAGES)}, or null to ignore the value"
        )
    return out


def map_values(
    values: pd.Series, table: Mapping[str, str | None], label: str, report: ImportReport
) -> pd.Series:
    """Each value's leadml stage (NA when ignored, unmapped or empty); counts go to ``report``."""
    present = values.dropna()
    keys = present.map(norm_key)
    known = keys.isin(list(table))
    for (value, key, ok), n in (
        pd.DataFrame({"v": present, "k": keys, "ok": known}).value_counts(sort=False).items()
    ):
        if ok:
            report.mapped[(label, str(value), table[str(key)] or "(ignored)")] += int(n)
        else:
            report.unmapped[(label, str(value))] += int(n)
    out = pd.Series(pd.NA, index=values.index, dtype="string")
    out.loc[present.index] = keys.map(lambda k: table.get(k)).astype("string")
    return out


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One export column: its leadml name, the headers a CRM writes for it, and why it is
    needed (for the error when it is missing)."""

    name: str
    headers: tuple[str, ...]
    required: bool = False
    what: str = ""


def read_export(
    path: Path, obj: str, fields: Iterable[Column], problems: list[Problem], expected: str
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """One export file as text, its known columns renamed to the fields' names; missing
    required columns are appended to ``problems``. Also returns the headers not imported."""
    try:
        raw = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding="utf-8-sig",
            skipinitialspace=False,
        )
    except UnicodeDecodeError:
        raise DataContractError(
            [
                Problem(
                    obj,
                    None,
                    f"{path.name} is not UTF-8 text",
                    fix="Export it as UTF-8 (Data Loader: Settings > Read/write all CSVs with "
                    "UTF-8 encoding).",
                )
            ]
        ) from None
    except pd.errors.EmptyDataError:
        raise DataContractError(
            [Problem(obj, None, f"{path.name} is empty", fix="Export it again with its header.")]
        ) from None
    raw.columns = [str(c).strip().lstrip("\ufeff") for c in raw.columns]
    by_key: dict[str, str] = {}
    for c in raw.columns:
        by_key.setdefault(norm_key(c), c)
    rename: dict[str, str] = {}
    for f in fields:
        hit = next((by_key[norm_key(h)] for h in f.headers if norm_key(h) in by_key), None)
        if hit is not None:
            rename[hit] = f.name
        elif f.required:
            have = ", ".join(map(repr, list(raw.columns)[:10]))
            more = ", ..." if len(raw.columns) > 10 else ""
            problems.append(
                Problem(
                    obj,
                    f.headers[0],
                    f"missing required column {f.headers[0]!r} in {path.name} ({f.what}; "
                    f"found: {have}{more})",
                    fix=expected,
                )
            )
    skipped = tuple(c for c in raw.columns if c not in rename)
    df = raw[list(rename)].rename(columns=rename)
    for col in df.columns:
        df[col] = df[col].str.strip().replace("", pd.NA)
    return df.reset_index(drop=True), skipped


def to_utc(values: pd.Series, obj: str, col: str, tz: str, problems: list[Problem]) -> pd.Series:
    """Timestamps as naive UTC ``datetime64[ns]``: offsets honoured, naive values read in ``tz``,
    date-only values at midnight; unparseable values are problems."""
    text = values.astype("string").str.strip()
    present = text.notna() & (text != "")
    # Salesforce's +0000 is ISO-8601's basic form; pandas reads +00:00 everywhere.
    text = text.str.replace(r"([+-]\d\d)(\d\d)$", r"\1:\2", regex=True)
    aware = text.str.contains(r"(?:[zZ]|[+-]\d\d:\d\d)$", regex=True, na=False) & present
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    if bool(aware.any()):
        parsed = pd.to_datetime(text[aware], errors="coerce", utc=True, format="ISO8601")
        out[aware] = parsed.dt.tz_localize(None).astype("datetime64[ns]")
    naive = present & ~aware
    if bool(naive.any()):
        parsed = pd.to_datetime(text[naive], errors="coerce", format="ISO8601")
        if tz != "UTC":
            parsed = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="shift_forward")
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        out[naive] = parsed.astype("datetime64[ns]")
    bad = present & out.isna()
    if bool(bad.any()):
        rows = tuple(int(i) for i in np.flatnonzero(bad.to_numpy())[:6])
        problems.append(
            Problem(
                obj,
                col,
                f"{int(bad.sum())} value(s) could not be read as a timestamp",
                rows,
                tuple(str(v) for v in values[bad].head(3)),
                "Expected ISO-8601 such as 2024-03-01T09:30:00.000+0000, 2024-03-01T09:30:00Z "
                "or 2024-03-01 09:30.",
            )
        )
    return out


def to_bool(values: pd.Series, obj: str, col: str, problems: list[Problem]) -> pd.Series:
    """``true`` / ``false`` in any case (and 1/0, yes/no) as booleans; empty is False."""
    key = values.astype("string").str.strip().str.casefold()
    bad = key.notna() & ~key.isin([*_TRUE, *_FALSE])
    if bool(bad.any()):
        problems.append(
            Problem(
                obj,
                col,
                f"{int(bad.sum())} value(s) are not true/false",
                tuple(int(i) for i in np.flatnonzero(bad.to_numpy())[:6]),
                tuple(str(v) for v in values[bad].head(3)),
                "Expected true or false.",
            )
        )
    return key.isin(list(_TRUE)).fillna(False).astype(bool)


def to_number(values: pd.Series, obj: str, col: str, problems: list[Problem]) -> pd.Series:
    """Numbers (a thousands separator ``,`` is tolerated); empty is NaN."""
    text = values.astype("string").str.replace(",", "", regex=False).str.strip()
    num = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = text.notna() & num.isna()
    if bool(bad.any()):
        problems.append(
            Problem(
                obj,
                col,
                f"{int(bad.sum())} value(s) are not numbers",
                tuple(int(i) for i in np.flatnonzero(bad.to_numpy())[:6]),
                tuple(str(v) for v in values[bad].head(3)),
                "Expected numbers such as 250 or 1200000.50.",
            )
        )
    return num


def end_of_day_unless_same_day(day: pd.Series, stamp: pd.Series) -> pd.Series:
    """When a date-only value became known: ``stamp`` (a timestamp of the same record) when it
    falls on that day or later, else the end of that day (the next midnight)."""
    day = day.dt.normalize()
    known = stamp.where(stamp.notna() & (stamp.dt.normalize() >= day))
    return known.fillna(day + pd.Timedelta(days=1))


# --- rows and assembling the tables --------------------------------------------------------------------


def empty_changes() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": pd.Series([], dtype="string"),
            "stage": pd.Series([], dtype="string"),
            "changed_at": pd.Series([], dtype="datetime64[ns]"),
            "reason": pd.Series([], dtype="string"),
        }
    )


def empty_events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": pd.Series([], dtype="string"),
            "event_type": pd.Series([], dtype="string"),
            "occurred_at": pd.Series([], dtype="datetime64[ns]"),
            "value": pd.Series([], dtype="float64"),
        }
    )


def changes_frame(lead_id: Any, stage: Any, at: Any, reason: Any) -> pd.DataFrame:
    return pd.DataFrame(
        {"lead_id": lead_id, "stage": stage, "changed_at": at, "reason": reason}
    ).astype({"lead_id": "string", "stage": "string", "reason": "string"})


def current_stage(
    ids: pd.Series,
    current: pd.Series,
    modified: pd.Series,
    so_far: pd.DataFrame,
    report: ImportReport,
    obj: str,
) -> pd.DataFrame:
    """A lead's current stage when no dated change ever reaches it: stamped at the record's
    last modification (approximate; the report says how many), else left out."""
    reached = set(zip(so_far["lead_id"].astype(str), so_far["stage"].astype(str), strict=True))
    pairs = zip(ids.astype(str), current.fillna("lead").astype(str), strict=True)
    need = pd.Series([(i, s) not in reached for i, s in pairs], index=ids.index, dtype=bool)
    need &= (current.notna() & current.ne("lead")).fillna(False).astype(bool)
    report.drop(
        obj, "current stage without a dated change or last-modified date", need & modified.isna()
    )
    need &= modified.notna()
    report.adjust(obj, "current stage stamped at the last modification (approximate)", need.sum())
    return changes_frame(ids[need], current[need], modified[need], f"{obj}: current stage")


def assemble(
    leads: pd.DataFrame,
    events: pd.DataFrame,
    changes: pd.DataFrame,
    export_at: pd.Timestamp | None,
    report: ImportReport,
) -> CRMData:
    """Leads, events and stage changes (``lead_id``, ``stage``, ``changed_at``, ``reason``) made
    consistent (the rules in the module docstring) and validated."""
    created = leads.set_index("lead_id")["created_at"]

    # Events: known leads, a time, an event type, and not after the export.
    ev = events.copy()
    obj = ev.pop("object") if "object" in ev.columns else pd.Series("events", index=ev.index)
    for test, why in (
        (lambda e: e["occurred_at"].isna(), "without a date"),
        (lambda e: ~e["lead_id"].isin(created.index), "for a lead not in the leads export"),
        (lambda e: e["event_type"].isna(), "with an activity type the mapping leaves out"),
    ):
        mask = test(ev).fillna(True).astype(bool)
        for o, n in obj[mask].value_counts().items():
            report.drop(str(o), why, n)
        ev, obj = ev[~mask], obj[~mask]
    if export_at is not None:
        late = ev["occurred_at"] > export_at
        for o, n in obj[late].value_counts().items():
            report.drop(str(o), f"dated after the export ({export_at}): planned, not done", n)
        ev = ev[~late]
    early = ev["occurred_at"] < ev["lead_id"].map(created)
    # Activity logged before the lead record existed (a contact merged in later): kept, as
    # features only count events before each as_of anyway.
    report.adjust("events", "dated before their lead's creation (kept)", early.sum())

    st = changes.copy()
    st = st[st["lead_id"].isin(created.index) & st["stage"].notna()]
    no_time = st["changed_at"].isna()
    report.drop("stage changes", "without a date", no_time.sum())
    st = st[~no_time]
    if export_at is not None:
        late = st["changed_at"] > export_at
        report.adjust("stage changes", f"dated after the export, moved to {export_at}", late.sum())
        st.loc[late, "changed_at"] = export_at
    at_creation = pd.DataFrame(
        {
            "lead_id": created.index,
            "stage": "lead",
            "changed_at": created.to_numpy(),
            "reason": "created",
        }
    )
    st = pd.concat([at_creation, st], ignore_index=True)
    birth = st["lead_id"].map(created)
    before = st["changed_at"] < birth
    report.adjust("stage changes", "stamped before the lead's creation, moved to it", before.sum())
    st.loc[before, "changed_at"] = birth[before]
    st["_rank"] = st["stage"].map(_TIE_RANK)
    st = st.sort_values(["lead_id", "changed_at", "_rank"], kind="stable")
    dup = st.duplicated(["lead_id", "stage", "changed_at"])
    # A CRM's own creation record duplicates the lead row every lead gets: not worth a line.
    expected = (st["stage"] == "lead") & (st["changed_at"] == st["lead_id"].map(created))
    report.adjust("stage changes", "exact duplicates dropped", int((dup & ~expected).sum()))
    st = st[~dup]
    # Comparisons with the first row's missing predecessor are NA: they mean "not the same".
    same = (st["lead_id"] == st["lead_id"].shift()) & (st["stage"] == st["stage"].shift())
    same = same.fillna(False).astype(bool)
    report.adjust("stage changes", "to the stage the lead was already in, dropped", int(same.sum()))
    st = st[~same].drop(columns="_rank").reset_index(drop=True)
    report.out_of_order = _out_of_order(st)

    data = validate(leads, ev.reset_index(drop=True), st)
    report.counts = {
        "leads": len(data.leads),
        "events": len(data.events),
        "stage_changes": len(data.stage_changes),
    }
    return data


def _out_of_order(st: pd.DataFrame) -> dict[str, str]:
    """Leads whose stages go back down the funnel, other than a recycle to ``lead``."""
    prev = st["stage"].shift()
    same_lead = (st["lead_id"] == st["lead_id"].shift()).fillna(False).astype(bool)
    rank, prev_rank = st["stage"].map(_FUNNEL_RANK), prev.map(_FUNNEL_RANK)
    backwards = same_lead & rank.notna() & prev_rank.notna() & (rank < prev_rank)
    out_of_negative = same_lead & prev.isin(list(NEGATIVE_STAGES)) & ~st["stage"].isin(["lead"])
    odd = st.loc[(backwards | out_of_negative).fillna(False).astype(bool), "lead_id"].unique()
    seqs = st[st["lead_id"].isin(odd)].groupby("lead_id", sort=True)["stage"]
    return {str(k): " -> ".join(v) for k, v in seqs}
