"""HubSpot: import a contacts export and an activities (engagements) export, or write them.

The folder holds the contacts export (a CSV whose name contains ``contact``, e.g. HubSpot's
``hubspot-crm-exports-all-contacts-2024-03-01.csv``) and optionally the activities export (a CSV
whose name contains ``engagement`` or ``activit``). Headers may be the labels HubSpot writes
(``Record ID``, ``Create Date``) or the internal property names (``hs_object_id``,
``createdate``). The shared rules are in :mod:`leadml.datasets._crm_import`.

==========================================  ==================================================
HubSpot (label / internal name)             leadml
==========================================  ==================================================
Record ID / hs_object_id                    ``lead_id``
Create Date / createdate                    ``created_at`` and the ``lead`` stage change
Original Source / hs_analytics_source       ``lead_source``
Industry, Country/Region, Job Title         ``industry``, ``country``, ``job_title``
Number of Employees, Annual Revenue         ``number_of_employees``, ``annual_revenue``
First Name + Last Name                      ``name``, display only
Company Name / company                      ``company``, display only
Contact owner / hubspot_owner_id            ``owner``, display only
Email, Phone Number, address, notes...      not imported (personal data), nor any other column
Became a <stage> Date /                     a stage change at that time, the stage through
hs_lifecyclestage_<stage>_date              ``lifecycle_stages`` (below)
Lifecycle Stage / lifecyclestage            counted in the report; a stage no date gives is
                                            stamped at Last Modified Date (approximate)
Lead Status / hs_lead_status                through ``lead_status``: Unqualified is
                                            ``disqualified``, at Last Modified Date
                                            (approximate: HubSpot keeps no date for it)
Activities: Contact ID, Activity date,      an event per contact (several ids split on ``;``),
Activity type (or contact id, timestamp,    ``event_type`` = the type in snake_case (EMAIL ->
type), Create Date (optional)               ``email``, renamable); never the subject or body;
                                            at the later of Activity date and Create Date
==========================================  ==================================================

Default ``lifecycle_stages``: subscriber, lead and marketing qualified lead are ``lead``;
sales qualified lead is ``prospect``; opportunity is ``opportunity``; customer and evangelist
(a customer who advocates) are ``customer``; ``other`` is ignored (it says nothing about the
funnel). An MQL is still a lead in leadml's vocabulary: marketing's threshold, usually a score
rule itself, is not the sales-accepted interest that ``prospect`` means, and learning it would
teach the model HubSpot's own scoring rule. A subscriber is scored as a lead from its creation.

HubSpot keeps the first date of each lifecycle stage, so a recycle or a lost deal is not in a
contacts export: an imported HubSpot funnel only goes forward (plus the disqualification).

Examples
--------
>>> from leadml.datasets import make_crm
>>> import tempfile
>>> out = to_hubspot(make_crm(n_leads=50, seed=1), tempfile.mkdtemp())
>>> len(import_hubspot(out).data.leads)
50
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
    empty_events,
    map_values,
    read_export,
    to_number,
    to_utc,
)

__all__ = ["HUBSPOT_DEFAULT_MAPPING", "import_hubspot", "to_hubspot"]

HUBSPOT_DEFAULT_MAPPING: dict[str, dict[str, str | None]] = {
    "lifecycle_stages": {
        "subscriber": "lead",
        "lead": "lead",
        "marketingqualifiedlead": "lead",
        "salesqualifiedlead": "prospect",
        "opportunity": "opportunity",
        "customer": "customer",
        "evangelist": "customer",
        "other": None,
    },
    "lead_status": {
        "new": None,
        "open": None,
        "in_progress": None,
        "open_deal": None,
        "attempted_to_contact": None,
        "connected": None,
        "bad_timing": None,
        "unqualified": "disqualified",
    },
}

#: Lifecycle stage (internal value) -> the label in "Became a ... Date".
_LIFECYCLE_LABELS = {
    "subscriber": "a Subscriber",
    "lead": "a Lead",
    "marketingqualifiedlead": "a Marketing Qualified Lead",
    "salesqualifiedlead": "a Sales Qualified Lead",
    "opportunity": "an Opportunity",
    "customer": "a Customer",
    "evangelist": "an Evangelist",
    "other": "an Other Lifecycle",
}
_STAGE_LABELS = {
    "lead": "Lead",
    "prospect": "Sales Qualified Lead",
    "opportunity": "Opportunity",
    "customer": "Customer",
}

#: The lifecycle stage :func:`to_hubspot` writes for each leadml funnel stage.
_LIFECYCLE_KEY = {
    "lead": "lead",
    "prospect": "salesqualifiedlead",
    "opportunity": "opportunity",
    "customer": "customer",
}

_CONTACT_COLUMNS: tuple[Column, ...] = (
    Column("id", ("Record ID", "hs_object_id", "Contact ID", "vid"), True, "the contact's id"),
    Column("created", ("Create Date", "createdate"), True, "when the contact was created"),
    Column("lifecycle", ("Lifecycle Stage", "lifecyclestage")),
    Column("lead_status", ("Lead Status", "hs_lead_status")),
    Column("modified", ("Last Modified Date", "lastmodifieddate")),
    Column("first_name", ("First Name", "firstname")),
    Column("last_name", ("Last Name", "lastname")),
    Column("company", ("Company Name", "company")),
    Column("owner", ("Contact owner", "hubspot_owner_id")),
    Column("lead_source", ("Original Source", "hs_analytics_source")),
    Column("industry", ("Industry", "industry")),
    Column("number_of_employees", ("Number of Employees", "numemployees")),
    Column("annual_revenue", ("Annual Revenue", "annualrevenue")),
    Column("country", ("Country/Region", "country")),
    Column("job_title", ("Job Title", "jobtitle")),
    *(
        Column(f"became_{k}", (f"Became {label} Date", f"hs_lifecyclestage_{k}_date"))
        for k, label in _LIFECYCLE_LABELS.items()
    ),
)
_ACTIVITY_COLUMNS: tuple[Column, ...] = (
    Column(
        "contact",
        ("Contact ID", "contact_id", "Associated Contact ID", "Associated Contact IDs"),
        True,
        "the contact the activity belongs to",
    ),
    Column(
        "at",
        ("Activity date", "timestamp", "hs_timestamp"),
        True,
        "when the activity happened",
    ),
    Column(
        "type",
        ("Activity type", "type", "hs_engagement_type", "Engagement type"),
        True,
        "what kind of activity (EMAIL, CALL, MEETING, ...)",
    ),
    Column("created", ("Create Date", "hs_createdate", "createdate")),
)
_EXPECTED = (
    "Expected HubSpot's contacts export (labels such as 'Record ID', 'Create Date' or internal "
    "names such as hs_object_id, createdate) and, optionally, an activities export ('Contact "
    "ID', 'Activity date', 'Activity type')."
)


def _find(
    directory: Path, words: tuple[str, ...], problems: list[Problem], obj: str
) -> Path | None:
    hits = sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and p.suffix.lower() == ".csv" and any(w in p.name.casefold() for w in words)
    )
    if len(hits) > 1:
        problems.append(
            Problem(
                obj,
                None,
                f"{len(hits)} files could be the {obj} export ({', '.join(p.name for p in hits)})",
                fix="Keep one of them in the folder.",
            )
        )
        return None
    return hits[0] if hits else None


def import_hubspot(
    in_dir: str | os.PathLike[str], mapping: str | os.PathLike[str] | dict[str, Any] | None = None
) -> ImportResult:
    """Read a HubSpot contacts (and activities) export folder into leadml's three tables.

    Parameters
    ----------
    in_dir : path
        Folder with the contacts export and optionally the activities export.
    mapping : path or dict, optional
        Overrides of :data:`HUBSPOT_DEFAULT_MAPPING` (sections ``lifecycle_stages``,
        ``lead_status``), ``activity_types`` renames and ``timezone`` (HubSpot writes times
        without an offset, in the account's time zone; default UTC).

    Returns
    -------
    ImportResult

    Raises
    ------
    DataContractError
        Every missing file or column and unreadable value at once, or the tables' contract
        problems.
    """
    d = Path(in_dir)
    if not d.is_dir():
        raise DataContractError(
            [
                Problem(
                    "contacts", None, f"directory {str(d)!r} does not exist", fix="Pass --in DIR."
                )
            ]
        )
    spec = MappingSpec.load(
        dict(mapping) if isinstance(mapping, dict) else mapping, HUBSPOT_DEFAULT_MAPPING, "HubSpot"
    )
    report = ImportReport("HubSpot")
    problems: list[Problem] = []
    contacts_path = _find(d, ("contact",), problems, "contacts")
    activities_path = _find(d, ("engagement", "activit"), problems, "activities")
    if contacts_path is None and not problems:
        problems.append(
            Problem(
                "contacts",
                None,
                f"no contacts export in {str(d)!r} (a .csv whose name contains 'contact')",
                fix="Export the contacts (Contacts > Export) into that folder.",
            )
        )
    if problems:
        raise DataContractError(problems)
    assert contacts_path is not None
    contacts, skipped = read_export(
        contacts_path, "contacts", _CONTACT_COLUMNS, problems, _EXPECTED
    )
    report.rows_read[contacts_path.name] = len(contacts)
    report.skipped_columns[contacts_path.name] = skipped
    activities = None
    if activities_path is not None:
        activities, _ = read_export(
            activities_path, "activities", _ACTIVITY_COLUMNS, problems, _EXPECTED
        )
        report.rows_read[activities_path.name] = len(activities)
    if problems:
        raise DataContractError(problems)

    tz = spec.timezone
    ids = contacts["id"].astype("string")
    created = to_utc(contacts["created"], "contacts", "Create Date", tz, problems)
    modified = (
        to_utc(contacts["modified"], "contacts", "Last Modified Date", tz, problems)
        if "modified" in contacts.columns
        else pd.Series(pd.NaT, index=contacts.index, dtype="datetime64[ns]")
    )
    leads = pd.DataFrame({"lead_id": ids, "created_at": created})
    names = [contacts[c].fillna("") for c in ("first_name", "last_name") if c in contacts.columns]
    if names:
        joined = names[0].str.cat(names[1:], sep=" ") if len(names) > 1 else names[0]
        leads["name"] = joined.str.strip().replace("", pd.NA).astype("string")
    for col in ("company", "owner", "lead_source", "industry", "country", "job_title"):
        if col in contacts.columns:
            leads[col] = contacts[col].astype("string")
    for col, header in (
        ("number_of_employees", "Number of Employees"),
        ("annual_revenue", "Annual Revenue"),
    ):
        if col in contacts.columns:
            leads[col] = to_number(contacts[col], "contacts", header, problems)

    stamps = [s.max() for s in (created, modified) if s.notna().any()]
    changes = []
    for key, label in _LIFECYCLE_LABELS.items():
        col = f"became_{key}"
        if col not in contacts.columns:
            continue
        at = to_utc(contacts[col], "contacts", f"Became {label} Date", tz, problems)
        has = at.notna()
        if has.any():
            stamps.append(at.max())
        stage = map_values(
            pd.Series(key, index=contacts.index)[has],
            spec.tables["lifecycle_stages"],
            f"Became {label} Date",
            report,
        )
        keep = stage.notna()
        idx = keep[keep].index
        changes.append(changes_frame(ids[idx], stage[idx], at[idx], f"Became {label} Date"))
    so_far = pd.concat(changes, ignore_index=True) if changes else changes_frame([], [], [], [])
    if "lifecycle" in contacts.columns:
        now = map_values(
            contacts["lifecycle"], spec.tables["lifecycle_stages"], "Lifecycle Stage", report
        )
        changes.append(current_stage(ids, now, modified, so_far, report, "contacts"))
    if "lead_status" in contacts.columns:
        status = map_values(
            contacts["lead_status"], spec.tables["lead_status"], "Lead Status", report
        )
        changes.append(current_stage(ids, status, modified, so_far, report, "contacts"))
    if problems:
        raise DataContractError(problems)

    events = empty_events()
    if activities is not None:
        events = _activities(activities, spec, problems, stamps)
    if problems:
        raise DataContractError(problems)
    if "lead_id" in events.columns and len(events):
        events["lead_id"] = events["lead_id"].astype("string")
    report.identifier_columns = tuple(c for c in DISPLAY_IDENTIFIERS if c in leads.columns)
    export_at = pd.Timestamp(max(stamps)) if stamps else None
    st = pd.concat(changes, ignore_index=True) if changes else so_far
    data = assemble(leads, events, st, export_at, report)
    return ImportResult(data=data, report=report)


def _activities(
    df: pd.DataFrame, spec: MappingSpec, problems: list[Problem], stamps: list[pd.Timestamp]
) -> pd.DataFrame:
    """Events at the activity date, or at the activity record's creation when it was logged
    later (what the CRM knew then); record creations also bound the export instant."""
    at = to_utc(df["at"], "activities", "Activity date", spec.timezone, problems)
    if "created" in df.columns:
        logged = to_utc(df["created"], "activities", "Create Date", spec.timezone, problems)
        if logged.notna().any():
            stamps.append(pd.Timestamp(logged.max()))
        at = at.where(logged.isna() | (at >= logged), logged)
    out = pd.DataFrame(
        {
            "lead_id": df["contact"].astype("string").str.split(";"),
            "event_type": spec.event_type(df["type"]),
            "occurred_at": at,
            "value": np.nan,
            "object": "activities",
        }
    ).explode("lead_id")
    out["lead_id"] = out["lead_id"].astype("string").str.strip().replace("", pd.NA)
    return out.reset_index(drop=True)


def _hs_time(s: pd.Series) -> pd.Series:
    return s.dt.strftime("%Y-%m-%d %H:%M:%S")


def to_hubspot(crm: CRMData, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``crm`` as HubSpot exports: ``contacts.csv`` (labels as headers) and
    ``engagements.csv``.

    Lifecycle dates are the first time each funnel stage was reached (``prospect`` is a sales
    qualified lead; the MQL date is left empty). A contact whose last stage is
    ``disqualified`` gets Lead Status ``Unqualified`` and that change's time as its Last
    Modified Date; recycles and lost deals are not written (a contacts export has no place for
    them). Events become activities whose type is the event type in capitals (``EMAIL_OPEN``).
    Times are written as ``YYYY-MM-DD HH:MM:SS`` in UTC.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    c = crm.columns
    leads = crm.leads
    st = crm.stage_changes.sort_values([c.lead_id, c.changed_at], kind="stable")
    first = st.groupby([c.lead_id, c.stage])[c.changed_at].min().unstack()
    last = st.groupby(c.lead_id).last()
    ids = leads[c.lead_id]

    def col(name: str) -> Any:
        return leads[name] if name in leads.columns else pd.Series(pd.NA, index=leads.index)

    reached = [s for s in _STAGE_LABELS if s in first.columns]
    furthest = first[reached].notna().iloc[:, ::-1].idxmax(axis=1).map(_STAGE_LABELS)
    final = ids.map(last[c.stage])
    status = final.map(
        {"disqualified": "Unqualified", "lead": "New", "prospect": "In Progress"}
    ).fillna("Open Deal")
    names = col("name").astype("string").str.split(" ")
    contacts = pd.DataFrame(
        {
            "Record ID": ids,
            "First Name": names.str[0],
            "Last Name": names.str[1:].str.join(" "),
            "Email": col("email"),
            "Phone Number": col("phone"),
            "Company Name": col("company"),
            "Job Title": col("job_title"),
            "Industry": col("industry"),
            "Country/Region": col("country"),
            "Original Source": col("lead_source"),
            "Contact owner": col("owner"),
            "Create Date": _hs_time(leads[c.created_at]),
            "Last Modified Date": _hs_time(ids.map(last[c.changed_at])),
            "Lifecycle Stage": ids.map(furthest),
            "Lead Status": status,
        }
    )
    for stage in _STAGE_LABELS:
        label = _LIFECYCLE_LABELS[_LIFECYCLE_KEY[stage]]
        if stage in first.columns:
            when = pd.to_datetime(ids.map(first[stage]))
        else:
            when = pd.Series(pd.NaT, index=ids.index, dtype="datetime64[ns]")
        contacts[f"Became {label} Date"] = _hs_time(when)
        if stage == "prospect":
            contacts["Became a Marketing Qualified Lead Date"] = ""
    contacts.to_csv(out / "contacts.csv", index=False)

    ev = crm.events
    pd.DataFrame(
        {
            "Activity ID": np.arange(1, len(ev) + 1),
            "Contact ID": ev[c.lead_id],
            "Activity type": ev[c.event_type].astype("string").str.upper(),
            "Activity date": _hs_time(ev[c.occurred_at]),
            "Create Date": _hs_time(ev[c.occurred_at]),
            "Subject": "Re: " + ev[c.event_type].astype("string") + ", follow-up",
        }
    ).to_csv(out / "engagements.csv", index=False)
    return out
