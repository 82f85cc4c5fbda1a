"""Salesforce: import a Data Loader / Bulk API export, or write one from a leadml CRM.

The export is a folder with one CSV per object, API field names as headers (``Lead.csv`` is
required; the others add events and stage changes when present). The shared rules (reading,
point in time, mapping, personal data) are in :mod:`leadml.datasets._crm_import`.

=====================================  =======================================================
Salesforce                             leadml
=====================================  =======================================================
Lead.Id                                ``lead_id`` (text, as written; matched on its first 15
                                       characters, so 15- and 18-character ids meet)
Lead.CreatedDate                       ``created_at`` and the ``lead`` stage change
Lead.LeadSource, Industry, Country     ``lead_source``, ``industry``, ``country``
Lead.Title                             ``job_title`` (leadml's name for it, a display column)
Lead.NumberOfEmployees, AnnualRevenue  ``number_of_employees``, ``annual_revenue`` (numbers)
Lead.Rating                            ``rating`` (set by reps at export time: see the note)
Lead.Name (or FirstName + LastName)    ``name``, display only
Lead.Company                           ``company``, display only
Lead.OwnerId                           ``owner``, display only (a user id, not a feature)
Lead.Email, Phone, MobilePhone,        not imported (personal data), nor any other column
Street, City, PostalCode, Website...
LeadHistory (Field = Status)           a stage change at CreatedDate: NewValue through
                                       ``lead_status`` (below); unknown values are reported
LeadHistory (Field = created)          ``lead`` at CreatedDate
LeadHistory (Field = leadConverted)    ``opportunity`` at CreatedDate
Lead.Status (the current value)        counted in the report; a stage no dated change gives is
                                       stamped at Lead.LastModifiedDate (approximate), or left
                                       out without it; an unknown value leaves the lead a lead
Lead.IsConverted, ConvertedDate,       ``opportunity`` at the Opportunity's CreatedDate, else at
ConvertedOpportunityId                 the leadConverted change, else at the end of ConvertedDate
Opportunity.IsClosed, IsWon            ``customer`` (won) or ``lost`` (closed, not won) at the
                                       last OpportunityHistory row with that outcome, else at
                                       the end of CloseDate
OpportunityHistory.StageName           through ``opportunity_stages``: open stages are
                                       ``opportunity`` (a reopened deal comes back), Closed Won
                                       ``customer``, Closed Lost ``lost``
Task / Event with WhoId a lead         an event; ``event_type`` from Type, else TaskSubtype /
(or its ConvertedContactId)            EventSubtype (snake_case, renamable); never the Subject
Task.CreatedDate, ActivityDate         ``occurred_at`` = CreatedDate, or the end of ActivityDate
                                       when that is a later day; open tasks (Status not
                                       Completed) are left out
Event.CreatedDate, ActivityDateTime    ``occurred_at`` = the later of the two
Task.CallDurationInSeconds             ``value``
CampaignMember (HasResponded true)     ``campaign_response`` at FirstRespondedDate (the member's
                                       CreatedDate when on that day, else the end of the day);
                                       members who did not respond are not events
IsDeleted = true (queryAll exports)    left out, in every object
=====================================  =======================================================

Default ``lead_status`` mapping (override any value): ``Open - Not Contacted``, ``Working -
Contacted``, ``New``, ``Open``, ``Working``, ``Contacted``, ``Nurturing`` are ``lead``;
``Qualified`` is ``prospect``; ``Closed - Converted`` and ``Converted`` are ``opportunity``;
``Closed - Not Converted``, ``Unqualified`` and ``Disqualified`` are ``disqualified``.
"Working - Contacted" stays a lead on purpose: it records that a rep reached out, not that the
lead is qualified and interested, which is what ``prospect`` means in leadml; counting the reps'
own workflow as a promotion would teach the model who the reps call.

Note: every Lead field is its value at export time. ``rating`` in particular is a rep's
judgement that may have been updated because the lead progressed; if it was, it leaks the
outcome: consider ``features.exclude_columns: [rating]``.

Examples
--------
>>> from leadml.datasets import make_crm
>>> import tempfile
>>> out = to_salesforce(make_crm(n_leads=50, seed=1), tempfile.mkdtemp())
>>> result = import_salesforce(out)
>>> len(result.data.leads), bool(result.data.leads["lead_id"].str.startswith("00Q").all())
(50, True)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadml.data.contracts import CRMData, DataContractError, Problem
from leadml.datasets._crm_import import (
    DISPLAY_IDENTIFIERS,
    Column,
    ImportReport,
    ImportResult,
    MappingSpec,
    assemble,
    changes_frame,
    current_stage,
    empty_changes,
    empty_events,
    end_of_day_unless_same_day,
    map_values,
    read_export,
    to_bool,
    to_number,
    to_utc,
)

__all__ = ["SALESFORCE_DEFAULT_MAPPING", "import_salesforce", "salesforce_id", "to_salesforce"]

SALESFORCE_DEFAULT_MAPPING: dict[str, dict[str, str | None]] = {
    "lead_status": {
        "Open - Not Contacted": "lead",
        "Working - Contacted": "lead",
        "New": "lead",
        "Open": "lead",
        "Working": "lead",
        "Contacted": "lead",
        "Nurturing": "lead",
        "Qualified": "prospect",
        "Closed - Converted": "opportunity",
        "Converted": "opportunity",
        "Closed - Not Converted": "disqualified",
        "Unqualified": "disqualified",
        "Disqualified": "disqualified",
    },
    "opportunity_stages": {
        "Prospecting": "opportunity",
        "Qualification": "opportunity",
        "Needs Analysis": "opportunity",
        "Value Proposition": "opportunity",
        "Id. Decision Makers": "opportunity",
        "Perception Analysis": "opportunity",
        "Proposal/Price Quote": "opportunity",
        "Negotiation/Review": "opportunity",
        "Closed Won": "customer",
        "Closed Lost": "lost",
    },
}

_EXPECTED = (
    "Expected a Salesforce Data Loader or Bulk API export: one CSV per object, named after it "
    "(Lead.csv, LeadHistory.csv, ...), with API field names as headers."
)


def _c(name: str, header: str, required: bool = False, what: str = "") -> Column:
    return Column(name, (header,), required, what)


_FIT = {
    "LeadSource": "lead_source",
    "Industry": "industry",
    "NumberOfEmployees": "number_of_employees",
    "AnnualRevenue": "annual_revenue",
    "Country": "country",
    "Title": "job_title",
    "Rating": "rating",
}
_OBJECTS: dict[str, tuple[Column, ...]] = {
    "Lead": (
        _c("id", "Id", True, "the lead's id"),
        _c("created", "CreatedDate", True, "when the lead was created"),
        _c("status", "Status"),
        *(_c(v, k) for k, v in _FIT.items()),
        _c("name", "Name"),
        _c("first_name", "FirstName"),
        _c("last_name", "LastName"),
        _c("company", "Company"),
        _c("owner", "OwnerId"),
        _c("is_converted", "IsConverted"),
        _c("converted_date", "ConvertedDate"),
        _c("converted_opportunity", "ConvertedOpportunityId"),
        _c("converted_contact", "ConvertedContactId"),
        _c("modified", "LastModifiedDate"),
        _c("is_deleted", "IsDeleted"),
    ),
    "LeadHistory": (
        _c("lead", "LeadId", True, "the lead the change belongs to"),
        _c("field", "Field", True, "which field changed (Status, created, leadConverted)"),
        _c("new_value", "NewValue", True, "the value after the change"),
        _c("created", "CreatedDate", True, "when the change happened"),
        _c("is_deleted", "IsDeleted"),
    ),
    "Task": (
        _c("who", "WhoId", True, "the lead or contact the task is about"),
        _c("created", "CreatedDate", True, "when the task was logged"),
        _c("activity_date", "ActivityDate"),
        _c("type", "Type"),
        _c("subtype", "TaskSubtype"),
        _c("status", "Status"),
        _c("is_closed", "IsClosed"),
        _c("value", "CallDurationInSeconds"),
        _c("is_deleted", "IsDeleted"),
    ),
    "Event": (
        _c("who", "WhoId", True, "the lead or contact the event is about"),
        _c("created", "CreatedDate", True, "when the event was logged"),
        Column("start", ("ActivityDateTime", "StartDateTime")),
        _c("activity_date", "ActivityDate"),
        _c("type", "Type"),
        _c("subtype", "EventSubtype"),
        _c("is_deleted", "IsDeleted"),
    ),
    "CampaignMember": (
        _c("lead", "LeadId", True, "the lead who is a campaign member"),
        _c("contact", "ContactId"),
        _c("responded", "HasResponded", True, "whether the member responded"),
        _c("responded_date", "FirstRespondedDate"),
        _c("created", "CreatedDate", True, "when the member was added"),
        _c("is_deleted", "IsDeleted"),
    ),
    "Opportunity": (
        _c("id", "Id", True, "the opportunity's id"),
        _c("stage", "StageName", True, "the opportunity's current stage"),
        _c("is_closed", "IsClosed"),
        _c("is_won", "IsWon"),
        _c("created", "CreatedDate", True, "when the opportunity was created"),
        _c("close_date", "CloseDate"),
        _c("is_deleted", "IsDeleted"),
    ),
    "OpportunityHistory": (
        _c("opportunity", "OpportunityId", True, "the opportunity the row belongs to"),
        _c("stage", "StageName", True, "the stage from then on"),
        _c("created", "CreatedDate", True, "when the stage was set"),
        _c("is_deleted", "IsDeleted"),
    ),
}
_STAGE_COLUMNS = ["lead_id", "stage", "changed_at", "reason"]


def _find(directory: Path, obj: str) -> Path | None:
    """``<Object>.csv`` in any letter case."""
    want = f"{obj}.csv".casefold()
    hits = [p for p in directory.iterdir() if p.is_file() and p.name.casefold() == want]
    return sorted(hits)[0] if hits else None


def _key(ids: pd.Series) -> pd.Series:
    """The case-sensitive 15-character form every Salesforce id starts with."""
    return ids.astype("string").str.slice(0, 15)


def import_salesforce(
    in_dir: str | os.PathLike[str], mapping: str | os.PathLike[str] | dict[str, Any] | None = None
) -> ImportResult:
    """Read a Salesforce export folder into leadml's three tables.

    Parameters
    ----------
    in_dir : path
        Folder with ``Lead.csv`` and optionally ``LeadHistory.csv``, ``Task.csv``, ``Event.csv``,
        ``CampaignMember.csv``, ``Opportunity.csv``, ``OpportunityHistory.csv``.
    mapping : path or dict, optional
        Overrides of :data:`SALESFORCE_DEFAULT_MAPPING` (sections ``lead_status``,
        ``opportunity_stages``), ``activity_types`` renames and ``timezone``.

    Returns
    -------
    ImportResult
        ``data`` (validated :class:`~leadml.data.contracts.CRMData`) and ``report``.

    Raises
    ------
    DataContractError
        Every missing file or column and unreadable value at once, or the tables' contract
        problems.
    """
    d = Path(in_dir)
    if not d.is_dir():
        raise DataContractError(
            [Problem("Lead", None, f"directory {str(d)!r} does not exist", fix="Pass --in DIR.")]
        )
    spec = MappingSpec.load(
        dict(mapping) if isinstance(mapping, dict) else mapping,
        SALESFORCE_DEFAULT_MAPPING,
        "Salesforce",
    )
    report = ImportReport("Salesforce")
    problems: list[Problem] = []
    frames: dict[str, pd.DataFrame] = {}
    for obj, columns in _OBJECTS.items():
        path = _find(d, obj)
        if path is None:
            if obj == "Lead":
                problems.append(
                    Problem(
                        "Lead",
                        None,
                        f"no Lead.csv in {str(d)!r}",
                        fix="Export the Lead object (Id, CreatedDate, Status, ...) into that "
                        "folder as Lead.csv.",
                    )
                )
            continue
        df, skipped = read_export(path, obj, columns, problems, _EXPECTED)
        report.rows_read[path.name] = len(df)
        if obj == "Lead":
            report.skipped_columns[path.name] = skipped
        frames[obj] = df
    if problems:
        raise DataContractError(problems)
    for obj, df in frames.items():
        if "is_deleted" in df.columns:
            deleted = to_bool(df["is_deleted"], obj, "IsDeleted", problems)
            report.drop(obj, "deleted (IsDeleted true)", deleted.sum())
            frames[obj] = df[~deleted].reset_index(drop=True)

    tz = spec.timezone
    # Record stamps (CreatedDate, LastModifiedDate) bound the export instant; planned dates
    # (ActivityDate, CloseDate) may lie beyond it and do not.
    stamps: list[pd.Timestamp] = []

    def ts(obj: str, col: str, header: str) -> pd.Series:
        df = frames[obj]
        if col not in df.columns:
            return pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns]")
        out = to_utc(df[col], obj, header, tz, problems)
        if col in ("created", "modified") and out.notna().any():
            stamps.append(pd.Timestamp(out.max()))
        return out

    lead = frames["Lead"]
    lead_created = ts("Lead", "created", "CreatedDate")
    leads = _leads_table(lead, lead_created, problems)
    lead_of = pd.Series(lead["id"].to_numpy(), index=_key(lead["id"]).to_numpy())
    lead_of = lead_of[~lead_of.index.duplicated()]
    who: pd.Series = lead_of
    if "converted_contact" in lead.columns:
        # Activities move to the contact when a lead converts; they are still the lead's.
        contacts = lead.dropna(subset=["converted_contact"])
        by_contact = pd.Series(
            contacts["id"].to_numpy(), index=_key(contacts["converted_contact"]).to_numpy()
        )
        who = pd.concat([lead_of, by_contact[~by_contact.index.duplicated()]])

    changes: list[pd.DataFrame] = []
    events: list[pd.DataFrame] = []
    if "LeadHistory" in frames:
        changes.append(_history(frames["LeadHistory"], ts, lead_of, spec, report))
    won_lost, opp_rows = _opportunities(frames, ts, lead, spec, report, problems)
    changes += opp_rows
    for obj in ("Task", "Event"):
        if obj in frames:
            events.append(_activities(obj, frames[obj], ts, who, spec, report, problems))
    if "CampaignMember" in frames:
        events.append(_campaign_members(frames["CampaignMember"], ts, who, spec, report, problems))
    if problems:
        raise DataContractError(problems)

    so_far = pd.concat(changes, ignore_index=True) if changes else empty_changes()
    changes.append(_conversions(lead, so_far, won_lost, problems, tz, report))
    so_far = pd.concat(changes, ignore_index=True)
    if "status" in lead.columns:
        current = map_values(lead["status"], spec.tables["lead_status"], "Lead.Status", report)
        modified = ts("Lead", "modified", "LastModifiedDate")
        changes.append(current_stage(lead["id"], current, modified, so_far, report, "Lead"))
    if problems:
        raise DataContractError(problems)

    export_at = pd.Timestamp(max(stamps)) if stamps else None
    ev = pd.concat(events, ignore_index=True) if events else empty_events()
    st = pd.concat(changes, ignore_index=True)
    report.identifier_columns = tuple(c for c in DISPLAY_IDENTIFIERS if c in leads.columns)
    data = assemble(leads, ev, st, export_at, report)
    return ImportResult(data=data, report=report)


def _leads_table(lead: pd.DataFrame, created: pd.Series, problems: list[Problem]) -> pd.DataFrame:
    out = pd.DataFrame({"lead_id": lead["id"].astype("string"), "created_at": created})
    if "name" in lead.columns:
        out["name"] = lead["name"].astype("string")
    elif {"first_name", "last_name"} & set(lead.columns):
        parts = [lead[c].fillna("") for c in ("first_name", "last_name") if c in lead.columns]
        joined = parts[0].str.cat(parts[1:], sep=" ").str.strip() if len(parts) > 1 else parts[0]
        out["name"] = joined.replace("", pd.NA).astype("string")
    for col in ("company", "owner"):
        if col in lead.columns:
            out[col] = lead[col].astype("string")
    for header, col in _FIT.items():
        if col not in lead.columns:
            continue
        if col in ("number_of_employees", "annual_revenue"):
            out[col] = to_number(lead[col], "Lead", header, problems)
        else:
            out[col] = lead[col].astype("string")
    return out


def _history(
    h: pd.DataFrame, ts: Any, lead_of: pd.Series, spec: MappingSpec, report: ImportReport
) -> pd.DataFrame:
    at = ts("LeadHistory", "created", "CreatedDate")
    lead_id = _key(h["lead"]).map(lead_of)
    report.drop("LeadHistory", "for a lead not in Lead.csv", lead_id.isna().sum())
    field = h["field"].astype("string").str.strip().str.casefold()
    known = lead_id.notna()
    status = known & (field == "status")
    stage = pd.Series(pd.NA, index=h.index, dtype="string")
    stage[status] = map_values(
        h.loc[status, "new_value"], spec.tables["lead_status"], "LeadHistory.Status", report
    )
    stage[known & (field == "created")] = "lead"
    converted = known & (field == "leadconverted")
    # leadConverted rows carry true as the new value; anything else is no conversion.
    truthy = h["new_value"].astype("string").str.casefold().isin(["true", "1"])
    stage[converted & (truthy | h["new_value"].isna())] = "opportunity"
    other = known & ~field.isin(["status", "created", "leadconverted"])
    report.drop("LeadHistory", "changes of other fields (not stages)", other.sum())
    reason = "LeadHistory." + h["field"].astype("string") + ": " + h["new_value"].fillna("")
    keep = stage.notna()
    return changes_frame(lead_id[keep], stage[keep], at[keep], reason[keep])


def _opportunities(
    frames: dict[str, pd.DataFrame],
    ts: Any,
    lead: pd.DataFrame,
    spec: MappingSpec,
    report: ImportReport,
    problems: list[Problem],
) -> tuple[pd.Series, list[pd.DataFrame]]:
    """Stage changes from converted leads' opportunities, and each such lead's outcome time."""
    if "Opportunity" not in frames or "converted_opportunity" not in lead.columns:
        return pd.Series(dtype="datetime64[ns]"), []
    opp = frames["Opportunity"]
    converted = lead.dropna(subset=["converted_opportunity"])
    lead_by_opp = pd.Series(
        converted["id"].to_numpy(), index=_key(converted["converted_opportunity"]).to_numpy()
    )
    lead_by_opp = lead_by_opp[~lead_by_opp.index.duplicated()]
    okey = _key(opp["id"])
    lead_id = okey.map(lead_by_opp)
    report.drop("Opportunity", "not converted from a lead in Lead.csv", lead_id.isna().sum())
    created = ts("Opportunity", "created", "CreatedDate")
    close_day = ts("Opportunity", "close_date", "CloseDate")
    stage_now = map_values(
        opp["stage"].where(lead_id.notna()),
        spec.tables["opportunity_stages"],
        "Opportunity.StageName",
        report,
    )
    is_closed = (
        to_bool(opp["is_closed"], "Opportunity", "IsClosed", problems)
        if "is_closed" in opp.columns
        else stage_now.isin(["customer", "lost"])
    )
    is_won = (
        to_bool(opp["is_won"], "Opportunity", "IsWon", problems)
        if "is_won" in opp.columns
        else stage_now.eq("customer").fillna(False)
    )
    outcome = pd.Series(pd.NA, index=opp.index, dtype="string")
    outcome[is_closed & is_won] = "customer"
    outcome[is_closed & ~is_won] = "lost"

    rows = [changes_frame(lead_id, "opportunity", created, "Opportunity created")]
    last_outcome = pd.Series(pd.NaT, index=opp.index, dtype="datetime64[ns]")
    if "OpportunityHistory" in frames:
        oh = frames["OpportunityHistory"]
        oh_at = ts("OpportunityHistory", "created", "CreatedDate")
        oh_lead = _key(oh["opportunity"]).map(lead_by_opp)
        report.drop(
            "OpportunityHistory",
            "for an opportunity not converted from a lead",
            oh_lead.isna().sum(),
        )
        oh_stage = map_values(
            oh["stage"].where(oh_lead.notna()),
            spec.tables["opportunity_stages"],
            "OpportunityHistory.StageName",
            report,
        )
        keep = oh_lead.notna() & oh_stage.notna()
        rows.append(
            changes_frame(
                oh_lead[keep],
                oh_stage[keep],
                oh_at[keep],
                "OpportunityHistory.StageName: " + oh.loc[keep, "stage"],
            )
        )
        # When the deal reached its final outcome: the last history row with that outcome.
        hist = pd.DataFrame({"opp": _key(oh["opportunity"]), "stage": oh_stage, "at": oh_at})
        last = hist.dropna().groupby(["opp", "stage"])["at"].max()
        pairs = pd.MultiIndex.from_arrays([okey, outcome.fillna("")])
        last_outcome = pd.Series(last.reindex(pairs).to_numpy(), index=opp.index)
    when = last_outcome.fillna(end_of_day_unless_same_day(close_day, created))
    has = outcome.notna() & lead_id.notna()
    report.drop("Opportunity", "closed without a CloseDate or history", (has & when.isna()).sum())
    has &= when.notna()
    rows.append(
        changes_frame(
            lead_id[has],
            outcome[has],
            when[has],
            "Opportunity: " + opp.loc[has, "stage"].fillna(""),
        )
    )
    won_lost = pd.Series(when[has].to_numpy(), index=lead_id[has].to_numpy())
    return won_lost, rows


def _conversions(
    lead: pd.DataFrame,
    so_far: pd.DataFrame,
    won_lost: pd.Series,
    problems: list[Problem],
    tz: str,
    report: ImportReport,
) -> pd.DataFrame:
    """``opportunity`` for converted leads that no history row or opportunity dates: at the end
    of ConvertedDate (a date without a time)."""
    if "is_converted" not in lead.columns:
        return empty_changes()
    converted = to_bool(lead["is_converted"], "Lead", "IsConverted", problems)
    dated = set(so_far.loc[so_far["stage"] == "opportunity", "lead_id"])
    need = converted & ~lead["id"].isin(dated)
    day = (
        to_utc(lead["converted_date"], "Lead", "ConvertedDate", tz, problems)
        if "converted_date" in lead.columns
        else pd.Series(pd.NaT, index=lead.index, dtype="datetime64[ns]")
    )
    created = to_utc(lead["created"], "Lead", "CreatedDate", tz, problems)
    when = end_of_day_unless_same_day(day, created)
    report.drop("Lead", "converted without a ConvertedDate or history", (need & day.isna()).sum())
    need &= day.notna()
    report.adjust("Lead", "converted: opportunity at the end of ConvertedDate", need.sum())
    return changes_frame(lead.loc[need, "id"], "opportunity", when[need], "Lead.IsConverted")


def _activities(
    obj: str,
    df: pd.DataFrame,
    ts: Any,
    who: pd.Series,
    spec: MappingSpec,
    report: ImportReport,
    problems: list[Problem],
) -> pd.DataFrame:
    created = ts(obj, "created", "CreatedDate")
    lead_id = _key(df["who"]).map(who)
    is_lead = df["who"].astype("string").str.startswith("00Q").fillna(False)
    report.drop(obj, "for a lead not in Lead.csv", (lead_id.isna() & is_lead).sum())
    report.drop(
        obj, "not about a lead (WhoId empty or another object)", (lead_id.isna() & ~is_lead).sum()
    )
    keep = lead_id.notna()
    day = ts(obj, "activity_date", "ActivityDate")
    occurred = created.where(day.isna(), end_of_day_unless_same_day(day, created))
    if obj == "Task":
        done = pd.Series(True, index=df.index)
        if "status" in df.columns:
            done &= df["status"].astype("string").str.casefold().eq("completed").fillna(False)
        if "is_closed" in df.columns:
            done |= to_bool(df["is_closed"], obj, "IsClosed", problems)
        if "status" in df.columns or "is_closed" in df.columns:
            report.drop(obj, "open tasks (planned, not done)", (keep & ~done).sum())
            keep &= done
    else:
        start = ts(obj, "start", "ActivityDateTime")
        occurred = occurred.where(start.isna(), np.maximum(start, created))
    raw_type = df["type"] if "type" in df.columns else pd.Series(pd.NA, index=df.index)
    if "subtype" in df.columns:
        raw_type = raw_type.fillna(df["subtype"])
    raw_type = raw_type.fillna(obj)
    value = (
        to_number(df["value"], obj, "CallDurationInSeconds", problems)
        if "value" in df.columns
        else pd.Series(np.nan, index=df.index)
    )
    return pd.DataFrame(
        {
            "lead_id": lead_id[keep].astype("string"),
            "event_type": spec.event_type(raw_type[keep]),
            "occurred_at": occurred[keep],
            "value": value[keep],
            "object": obj,
        }
    )


def _campaign_members(
    cm: pd.DataFrame,
    ts: Any,
    who: pd.Series,
    spec: MappingSpec,
    report: ImportReport,
    problems: list[Problem],
) -> pd.DataFrame:
    created = ts("CampaignMember", "created", "CreatedDate")
    lead_id = _key(cm["lead"]).map(who)
    if "contact" in cm.columns:
        lead_id = lead_id.fillna(_key(cm["contact"]).map(who))
    report.drop("CampaignMember", "for a lead not in Lead.csv", lead_id.isna().sum())
    responded = to_bool(cm["responded"], "CampaignMember", "HasResponded", problems)
    report.drop(
        "CampaignMember", "members who did not respond", (lead_id.notna() & ~responded).sum()
    )
    keep = lead_id.notna() & responded
    day = ts("CampaignMember", "responded_date", "FirstRespondedDate")
    occurred = created.where(day.isna(), end_of_day_unless_same_day(day, created))
    kind = pd.Series("campaign_response", index=cm.index, dtype="string")
    return pd.DataFrame(
        {
            "lead_id": lead_id[keep].astype("string"),
            "event_type": spec.event_type(kind[keep]),
            "occurred_at": occurred[keep],
            "value": np.nan,
            "object": "CampaignMember",
        }
    )


# --- writing an export ------------------------------------------------------------------------

_SUFFIX_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def salesforce_id(prefix: str, n: int) -> str:
    """An 18-character Salesforce-style id: key prefix, pod ``5g``, ``0``, ``n`` in base 62,
    then the case-safe suffix (one character per 5, from which of them are upper case).

    >>> salesforce_id("00Q", 1)
    '00Q5g0000000001EAA'
    >>> salesforce_id("00Q", 61)[:15], len(salesforce_id("006", 10**9))
    ('00Q5g000000000z', 18)
    """
    digits = ""
    while True:
        n, r = divmod(n, 62)
        digits = _BASE62[r] + digits
        if n == 0:
            break
    base = f"{prefix}5g0{digits.rjust(9, '0')}"
    suffix = ""
    for i in range(0, 15, 5):
        bits = sum(1 << j for j, ch in enumerate(base[i : i + 5]) if ch.isupper())
        suffix += _SUFFIX_CHARS[bits]
    return base + suffix


def _sf_time(s: pd.Series) -> pd.Series:
    return s.dt.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _sf_day(s: pd.Series) -> pd.Series:
    return s.dt.strftime("%Y-%m-%d")


def _title(event_type: pd.Series) -> pd.Series:
    return event_type.astype("string").str.replace("_", " ").str.title()


#: How :func:`to_salesforce` writes leadml stages as Lead.Status values.
_STATUS_OF = {
    "lead": "Open - Not Contacted",
    "prospect": "Qualified",
    "disqualified": "Closed - Not Converted",
}


def to_salesforce(crm: CRMData, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``crm`` as a Salesforce export (the layout :func:`import_salesforce` reads).

    Lead ids become 18-character ids ``salesforce_id("00Q", lead_id)`` (integer ids; other ids
    are numbered in order). Stage changes become LeadHistory Status changes (a recycle is
    ``Working - Contacted``); reaching ``opportunity`` converts the lead into an Opportunity
    (``customer`` closes it won, ``lost`` lost). Events become completed Tasks whose Type is the
    event type in words (``Email Open``), except ``webinar_attended`` (a responded
    CampaignMember, imported back as ``campaign_response``) and ``demo_request`` (a calendar
    Event created up to two days before it starts). Event values are not written. Personal
    columns are written as Name, Email, Phone, Company and OwnerId, as a CRM holds them.

    Returns the folder.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    c = crm.columns
    leads = crm.leads
    raw_ids = leads[c.lead_id]
    if pd.api.types.is_integer_dtype(raw_ids.dtype):
        numbers = raw_ids.astype("int64").to_numpy()
    else:
        numbers = np.arange(1, len(leads) + 1)
    sf_of = dict(
        zip(raw_ids.tolist(), (salesforce_id("00Q", int(n)) for n in numbers), strict=True)
    )
    lead_sf = raw_ids.map(sf_of)
    st = crm.stage_changes.sort_values([c.lead_id, c.changed_at], kind="stable")
    st = st.assign(sf=st[c.lead_id].map(sf_of))

    first = st.groupby("sf")[c.changed_at]
    opp_at = st[st[c.stage] == "opportunity"].groupby("sf")[c.changed_at].min()
    outcome = st[st[c.stage].isin(["customer", "lost"])].groupby("sf").last()
    final = st.groupby("sf")[c.stage].last()
    last_change = first.max()
    converted = lead_sf.isin(opp_at.index)
    opp_ids = pd.Series(
        [salesforce_id("006", i + 1) for i in range(len(opp_at))], index=opp_at.index
    )
    status_now = final.map(lambda s: _STATUS_OF.get(s, "Closed - Converted"))

    def col(name: str) -> Any:
        return leads[name] if name in leads.columns else pd.Series(pd.NA, index=leads.index)

    lead_csv = pd.DataFrame(
        {
            "Id": lead_sf,
            "FirstName": col("name").astype("string").str.split(" ").str[0],
            "LastName": col("name").astype("string").str.split(" ").str[1:].str.join(" "),
            "Company": col("company"),
            "Email": col("email"),
            "Phone": col("phone"),
            "Title": col("job_title"),
            "LeadSource": col("lead_source"),
            "Industry": col("industry"),
            "Country": col("country"),
            "NumberOfEmployees": col("company_size").map(_EMPLOYEES).astype("Int64")
            if "company_size" in leads.columns
            else pd.NA,
            "AnnualRevenue": (col("annual_revenue_musd") * 1e6).round(0).astype("Int64")
            if "annual_revenue_musd" in leads.columns
            else pd.NA,
            "Status": lead_sf.map(status_now),
            "OwnerId": col("owner").map(_user_ids(col("owner"))),
            "CreatedDate": _sf_time(leads[c.created_at]),
            "LastModifiedDate": _sf_time(lead_sf.map(last_change)),
            "IsConverted": np.where(converted, "true", "false"),
            "ConvertedDate": _sf_day(lead_sf.map(opp_at)),
            "ConvertedOpportunityId": lead_sf.map(opp_ids),
            "IsDeleted": "false",
        }
    )
    lead_csv.to_csv(out / "Lead.csv", index=False)

    # LeadHistory: the creation, each Status change and the conversion.
    funnel = st[st[c.stage].isin(["lead", "prospect", "disqualified"])]
    prev = st.groupby("sf")[c.stage].shift()
    recycle = (st[c.stage] == "lead") & prev.notna()
    created = st[(st[c.stage] == "lead") & prev.isna()]
    status_rows = funnel[~funnel.index.isin(created.index)]
    status_value = (
        status_rows[c.stage]
        .map(_STATUS_OF)
        .where(~recycle[status_rows.index], "Working - Contacted")
    )
    conv = st[st[c.stage] == "opportunity"]
    history = pd.concat(
        [
            pd.DataFrame(
                {"LeadId": created["sf"], "Field": "created", "OldValue": "", "NewValue": "",
                 "CreatedDate": created[c.changed_at]}
            ),
            pd.DataFrame(
                {"LeadId": status_rows["sf"], "Field": "Status", "OldValue": "",
                 "NewValue": status_value, "CreatedDate": status_rows[c.changed_at]}
            ),
            pd.DataFrame(
                {"LeadId": conv["sf"], "Field": "leadConverted", "OldValue": "false",
                 "NewValue": "true", "CreatedDate": conv[c.changed_at]}
            ),
            pd.DataFrame(
                {"LeadId": conv["sf"], "Field": "Status", "OldValue": "",
                 "NewValue": "Closed - Converted", "CreatedDate": conv[c.changed_at]}
            ),
        ],
        ignore_index=True,
    ).sort_values(["LeadId", "CreatedDate"], kind="stable")  # fmt: skip
    history["CreatedDate"] = _sf_time(history["CreatedDate"])
    history.to_csv(out / "LeadHistory.csv", index=False)

    # Opportunities and their history.
    won = outcome[c.stage].reindex(opp_at.index) == "customer"
    closed = outcome[c.stage].reindex(opp_at.index).notna()
    close_at = outcome[c.changed_at].reindex(opp_at.index)
    final_stage = np.where(closed, np.where(won, "Closed Won", "Closed Lost"), "Qualification")
    pd.DataFrame(
        {
            "Id": opp_ids.to_numpy(),
            "Name": "Opportunity " + opp_ids.str.slice(-6).to_numpy(),
            "StageName": final_stage,
            "IsClosed": np.where(closed, "true", "false"),
            "IsWon": np.where(won, "true", "false"),
            "CreatedDate": _sf_time(opp_at).to_numpy(),
            "CloseDate": _sf_day(close_at.fillna(opp_at + pd.Timedelta(days=90))).to_numpy(),
        }
    ).to_csv(out / "Opportunity.csv", index=False)
    oh = pd.concat(
        [
            pd.DataFrame(
                {"OpportunityId": opp_ids.to_numpy(), "StageName": "Qualification",
                 "CreatedDate": opp_at.to_numpy()}
            ),
            pd.DataFrame(
                {"OpportunityId": opp_ids[closed].to_numpy(),
                 "StageName": final_stage[closed.to_numpy()],
                 "CreatedDate": close_at[closed].to_numpy()}
            ),
        ],
        ignore_index=True,
    ).sort_values(["OpportunityId", "CreatedDate"], kind="stable")  # fmt: skip
    oh["CreatedDate"] = _sf_time(oh["CreatedDate"])
    oh.to_csv(out / "OpportunityHistory.csv", index=False)

    # Events: tasks, calendar events and campaign responses.
    ev = crm.events
    sf = ev[c.lead_id].map(sf_of)
    kind = ev[c.event_type].astype("string")
    at = ev[c.occurred_at]
    is_task = ~kind.isin(["webinar_attended", "demo_request"])
    subject = "Follow-up, re: " + kind + "\nsee notes"  # free text with a comma and a newline
    task = pd.DataFrame(
        {
            "WhoId": sf[is_task],
            "Subject": subject[is_task],
            "Type": _title(kind[is_task]),
            "TaskSubtype": np.where(kind[is_task].str.startswith("email"), "Email", "Task"),
            "Status": "Completed",
            "ActivityDate": _sf_day(at[is_task]),
            "CreatedDate": _sf_time(at[is_task]),
        }
    )
    task.to_csv(out / "Task.csv", index=False)
    demo = kind == "demo_request"
    lead_created = ev[c.lead_id].map(leads.set_index(c.lead_id)[c.created_at])
    rng = np.random.default_rng(0)
    booked = at - pd.to_timedelta(rng.integers(0, 2 * 86_400, size=len(ev)), unit="s")
    booked = booked.where(booked >= lead_created, lead_created).where(booked <= at, at)
    pd.DataFrame(
        {
            "WhoId": sf[demo],
            "Subject": "Demo",
            "Type": _title(kind[demo]),
            "EventSubtype": "Event",
            "ActivityDateTime": _sf_time(at[demo]),
            "ActivityDate": _sf_day(at[demo]),
            "CreatedDate": _sf_time(booked[demo]),
        }
    ).to_csv(out / "Event.csv", index=False)
    web = kind == "webinar_attended"
    pd.DataFrame(
        {
            "Id": [salesforce_id("00v", i + 1) for i in range(int(web.sum()))],
            "CampaignId": salesforce_id("701", 1),
            "LeadId": sf[web],
            "ContactId": "",
            "Status": "Attended",
            "HasResponded": "true",
            "FirstRespondedDate": _sf_day(at[web]),
            "CreatedDate": _sf_time(at[web]),
        }
    ).to_csv(out / "CampaignMember.csv", index=False)
    return out


def _user_ids(owners: pd.Series) -> dict[Any, str]:
    """A Salesforce user id (key prefix 005) per distinct owner, in sorted order."""
    names = sorted(owners.dropna().astype(str).unique())
    return {name: salesforce_id("005", i + 1) for i, name in enumerate(names)}


#: A representative head count for each of the synthetic CRM's company-size bands.
_EMPLOYEES = {"1-10": 5, "11-50": 30, "51-200": 120, "201-1000": 500, "1000+": 5000}
