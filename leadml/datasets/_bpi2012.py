"""Reader for the BPI Challenge 2012 loan-application event log, mapped onto leadml's event mode.

The log (van Dongen 2012, doi:10.4121/uuid:3926db30-f712-4394-aebc-75976070e91f) follows 13,087
applications at a Dutch financial institute through 262,200 events. An application behaves like a
lead: it arrives, is pre-screened, gets offers, and is approved, declined or cancelled.
:func:`load_bpi2012` reads the flattened CSV (one row per event with columns ``case_id, reg_date,
amount_req, event_index, activity, lifecycle, timestamp, resource``) and returns a validated
:class:`~leadml.data.contracts.CRMData`.

Mapping
-------
=====================================  ===============================================
log                                    leadml
=====================================  ===============================================
case (application)                     lead; ``lead_id`` = ``case_id``
``A_SUBMITTED``                        ``created_at`` and the ``lead`` stage change
``AMOUNT_REQ``                         fit attribute ``amount_requested``
first ``A_PREACCEPTED``                ``prospect``
first ``O_SENT`` (an offer sent)       ``opportunity``
first of ``A_APPROVED``,               ``customer`` (the four are one conversion; the
``A_REGISTERED``, ``A_ACTIVATED``,     earliest counts because ``O_ACCEPTED`` sometimes
``O_ACCEPTED``                         precedes ``A_APPROVED`` by up to an hour)
``A_DECLINED`` / ``A_CANCELLED``       ``disqualified`` (reason ``declined`` /
                                       ``cancelled``), or ``lost`` once an offer was sent
``W_*`` work items                     events ``work_<task>_<scheduled|started|completed>``
                                       (Dutch task names translated, see
                                       :data:`BPI2012_WORK_ITEMS`)
``O_SELECTED``, ``O_CREATED``,         events ``offer_selected``, ``offer_created``,
``O_SENT``, ``O_SENT_BACK``,           ``offer_sent``, ``offer_returned``,
``O_CANCELLED``, ``O_DECLINED``        ``offer_cancelled``, ``offer_declined``
``A_ACCEPTED``, ``A_FINALIZED``        events ``application_accepted``,
                                       ``application_finalized`` (they precede approval
                                       by days, so they are honest, strong signals)
=====================================  ===============================================

Not emitted as events: the label-equivalent ``A_APPROVED``, ``A_REGISTERED``, ``A_ACTIVATED``
and ``O_ACCEPTED`` (they *are* the conversion), the other stage-defining events
(``A_SUBMITTED``, ``A_PREACCEPTED``, ``A_DECLINED``, ``A_CANCELLED``) and ``A_PARTLYSUBMITTED``
(always within a second of submission, so it carries no information). Events keep the original
``activity`` and ``resource`` as extra columns.

The mess of the real log, and what is done about it:

- **Daylight saving.** Timestamps carry their offset (+02:00 in summer time, +01:00 in winter);
  they are parsed with it and converted to UTC, so the October change does not reorder events.
- **Equal timestamps.** About 14,000 adjacent pairs share a timestamp; ties are broken by the
  file order (``event_index``), so the result is deterministic and funnel-ordered.
- **Events after the outcome.** About 6,000 events (mostly closing work items) follow approval,
  decline or cancellation. They are dropped by default (``keep_after_outcome=False``); no
  observation point in the source stage can see them anyway, and they would only add noise to
  descriptive statistics.
- **Open cases.** 399 applications have no outcome when the log ends (2012-03-14). They stay in
  their last stage; label windows that run past the end of the data are censored by the
  timeline, never counted as negatives.

Examples
--------
>>> import io
>>> log = io.StringIO(
...     "case_id,event_index,activity,lifecycle,timestamp\\n"
...     "7,0,A_SUBMITTED,COMPLETE,2011-10-30T01:50:00+02:00\\n"
...     "7,1,A_PREACCEPTED,COMPLETE,2011-10-30T02:10:00+01:00\\n"
...     "7,2,W_Completeren aanvraag,START,2011-10-30T02:20:00+01:00\\n"
... )
>>> data = load_bpi2012(log)
>>> data.stage_changes[["stage", "changed_at"]].to_string(index=False)
'   stage          changed_at\\n    lead 2011-10-29 23:50:00\\nprospect 2011-10-30 01:10:00'
>>> data.events["event_type"].tolist()
['work_complete_application_started']
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from leadml.config import ColumnsConfig
from leadml.data.contracts import CRMData, DataContractError, Problem, validate

__all__ = [
    "BPI2012_EVENT_TYPES",
    "BPI2012_LABEL_EQUIVALENT",
    "BPI2012_WORK_ITEMS",
    "build_bpi2012_crm",
    "load_bpi2012",
]

BPI2012_COLUMNS: tuple[str, ...] = (
    "case_id",
    "reg_date",
    "amount_req",
    "event_index",
    "activity",
    "lifecycle",
    "timestamp",
    "resource",
)
#: Events that are the conversion itself: never features.
BPI2012_LABEL_EQUIVALENT: tuple[str, ...] = (
    "A_APPROVED",
    "A_REGISTERED",
    "A_ACTIVATED",
    "O_ACCEPTED",
)
_CUSTOMER = BPI2012_LABEL_EQUIVALENT
_PROSPECT = "A_PREACCEPTED"
_OPPORTUNITY = "O_SENT"
_NEGATIVE = {"A_DECLINED": "declined", "A_CANCELLED": "cancelled"}
_NOT_EVENTS = {*BPI2012_LABEL_EQUIVALENT, "A_SUBMITTED", "A_PREACCEPTED", "A_PARTLYSUBMITTED"}
_NOT_EVENTS |= set(_NEGATIVE)

#: Work item (``W_``) task names and their English event-type stems.
BPI2012_WORK_ITEMS: dict[str, str] = {
    "W_Completeren aanvraag": "complete_application",
    "W_Nabellen offertes": "call_about_offer",
    "W_Nabellen incomplete dossiers": "call_about_incomplete_file",
    "W_Valideren aanvraag": "validate_application",
    "W_Afhandelen leads": "handle_lead",
    "W_Beoordelen fraude": "assess_fraud",
    "W_Wijzigen contractgegevens": "change_contract",
}
#: Offer and application activities emitted as engagement events, with their event types.
BPI2012_EVENT_TYPES: dict[str, str] = {
    "O_SELECTED": "offer_selected",
    "O_CREATED": "offer_created",
    "O_SENT": "offer_sent",
    "O_SENT_BACK": "offer_returned",
    "O_CANCELLED": "offer_cancelled",
    "O_DECLINED": "offer_declined",
    "A_ACCEPTED": "application_accepted",
    "A_FINALIZED": "application_finalized",
}
_LIFECYCLE = {"SCHEDULE": "scheduled", "START": "started", "COMPLETE": "completed"}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _event_type(activity: str, lifecycle: str) -> str:
    if activity.startswith("W_"):
        stem = BPI2012_WORK_ITEMS.get(activity, _slug(activity[2:]))
        return f"work_{stem}_{_LIFECYCLE.get(lifecycle, _slug(lifecycle))}"
    # Activities outside the published log (other extracts) keep a readable slug.
    return BPI2012_EVENT_TYPES.get(activity, _slug(activity))


def _parse_utc(values: pd.Series, column: str, problems: list[Problem]) -> pd.Series:
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    bad = (values.notna() & parsed.isna()).to_numpy() | values.isna().to_numpy()
    if bad.any():
        problems.append(
            Problem(
                "bpi2012",
                column,
                f"{int(bad.sum())} timestamp(s) missing or unparseable",
                tuple(int(i) for i in np.flatnonzero(bad)[:6]),
                tuple(str(v) for v in values[bad].head(3)),
                "Expected ISO-8601 timestamps with their UTC offset, as in the XES log.",
            )
        )
    return parsed.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")


def build_bpi2012_crm(
    log: pd.DataFrame,
    *,
    keep_after_outcome: bool = False,
    columns: ColumnsConfig | None = None,
) -> CRMData:
    """Map a BPI 2012 event log (one row per event) onto leads, events and stage changes.

    Parameters
    ----------
    log : DataFrame
        Columns ``case_id, reg_date, amount_req, event_index, activity, lifecycle, timestamp,
        resource`` (``reg_date`` and ``resource`` may be absent).
    keep_after_outcome : bool
        Keep events that follow a case's outcome (approval, decline, cancellation).
    columns : ColumnsConfig, optional
        Output column names (default: leadml's defaults).

    Returns
    -------
    CRMData
        Validated by :func:`leadml.data.contracts.validate`; the mapping is in the module docstring.

    Raises
    ------
    DataContractError
        Missing columns, unparseable timestamps, or cases without ``A_SUBMITTED``.
    """
    c = columns or ColumnsConfig()
    problems: list[Problem] = []
    need = ("case_id", "event_index", "activity", "lifecycle", "timestamp")
    missing = [col for col in need if col not in log.columns]
    if missing:
        raise DataContractError(
            [
                Problem(
                    "bpi2012",
                    None,
                    f"missing column(s) {', '.join(map(repr, missing))} "
                    f"(found {', '.join(map(repr, list(log.columns)[:10]))})",
                    fix="Expected the flattened log with columns "
                    + ", ".join(BPI2012_COLUMNS)
                    + ".",
                )
            ]
        )
    ev = log.reset_index(drop=True).copy()
    ev["_at"] = _parse_utc(ev["timestamp"], "timestamp", problems)
    if problems:
        raise DataContractError(problems)
    ev["activity"] = ev["activity"].astype("string").str.strip()
    ev["lifecycle"] = ev["lifecycle"].astype("string").str.strip().str.upper()
    # File order breaks timestamp ties; it is the order the workflow system logged them in.
    ev = ev.sort_values(["case_id", "_at", "event_index"], kind="stable").reset_index(drop=True)
    ev["_seq"] = np.arange(len(ev))

    submitted = ev[ev["activity"] == "A_SUBMITTED"].groupby("case_id", sort=True)["_at"].min()
    cases = pd.Index(ev["case_id"].unique())
    orphans = cases.difference(submitted.index)
    if len(orphans):
        rows = np.flatnonzero(ev["case_id"].isin(orphans).to_numpy())
        raise DataContractError(
            [
                Problem(
                    "bpi2012",
                    "activity",
                    f"{len(orphans)} case(s) without A_SUBMITTED",
                    tuple(int(i) for i in rows[:6]),
                    tuple(str(v) for v in orphans[:3]),
                    "Every application must start with A_SUBMITTED; pass complete cases.",
                )
            ]
        )

    def first(mask: pd.Series) -> pd.DataFrame:
        hit = ev[mask].groupby("case_id", sort=True).agg(at=("_at", "first"), seq=("_seq", "first"))
        return hit

    prospect = first(ev["activity"] == _PROSPECT)
    opportunity = first((ev["activity"] == _OPPORTUNITY) & (ev["lifecycle"] == "COMPLETE"))
    customer = first(ev["activity"].isin(_CUSTOMER))
    negative = first(ev["activity"].isin(list(_NEGATIVE)))
    negative_activity = ev.loc[negative["seq"].to_numpy(), "activity"].to_numpy()
    negative["reason"] = [_NEGATIVE[a] for a in negative_activity]
    # Declined or cancelled after an offer went out is a lost opportunity, not a disqualification.
    offered_before = opportunity["seq"].reindex(negative.index) < negative["seq"]
    negative["stage"] = np.where(offered_before.to_numpy(), "lost", "disqualified")

    frames = [
        pd.DataFrame(
            {"case_id": submitted.index, "stage": "lead", "at": submitted.to_numpy(), "seq": -1}
        ),
        prospect.assign(stage="prospect").reset_index(),
        opportunity.assign(stage="opportunity").reset_index(),
        customer.assign(stage="customer").reset_index(),
        negative.reset_index(),
    ]
    stages = pd.concat(frames, ignore_index=True).sort_values(
        ["case_id", "at", "seq"], kind="stable"
    )

    # The outcome is the first terminal stage; what follows it is housekeeping.
    outcome_seq = pd.concat([customer["seq"], negative["seq"]]).groupby(level=0).min()
    is_event = ~ev["activity"].isin(list(_NOT_EVENTS))
    if not keep_after_outcome:
        limit = ev["case_id"].map(outcome_seq).fillna(np.inf)
        is_event &= ev["_seq"] < limit
    kept = ev[is_event]
    events = pd.DataFrame(
        {
            c.lead_id: kept["case_id"].to_numpy(),
            c.event_type: [
                _event_type(a, lc)
                for a, lc in zip(kept["activity"].tolist(), kept["lifecycle"].tolist(), strict=True)
            ],
            c.occurred_at: kept["_at"].to_numpy(),
            "activity": kept["activity"].astype(object).to_numpy(),
            "resource": (
                kept["resource"].astype("string").to_numpy()
                if "resource" in kept.columns
                else pd.array([pd.NA] * len(kept), dtype="string")
            ),
        }
    )
    amount = (
        ev.groupby("case_id", sort=True)["amount_req"].first().reindex(submitted.index)
        if "amount_req" in ev.columns
        else pd.Series(np.nan, index=submitted.index)
    )
    leads = pd.DataFrame(
        {
            c.lead_id: submitted.index.to_numpy(),
            c.created_at: submitted.to_numpy(),
            "amount_requested": pd.to_numeric(amount, errors="coerce").astype("float64").to_numpy(),
        }
    )
    stage_changes = pd.DataFrame(
        {
            c.lead_id: stages["case_id"].to_numpy(),
            c.stage: stages["stage"].to_numpy(),
            c.changed_at: stages["at"].to_numpy(),
            c.reason: stages["reason"]
            .astype(object)
            .where(stages["reason"].notna(), None)
            .to_numpy(),
        }
    )
    return validate(leads, events, stage_changes, columns=c)


def load_bpi2012(
    path: str | Path | IO[str],
    *,
    keep_after_outcome: bool = False,
    columns: ColumnsConfig | None = None,
) -> CRMData:
    """Read the flattened BPI Challenge 2012 log (CSV, optionally gzipped) as a CRM.

    Parameters
    ----------
    path : str, Path or text file
        ``events.csv.gz`` (or ``.csv``) with one row per event.
    keep_after_outcome, columns
        See :func:`build_bpi2012_crm`.

    Returns
    -------
    CRMData
        13,087 leads on the published log; see the module docstring for the mapping.
    """
    log = pd.read_csv(
        path,
        dtype={"activity": "string", "lifecycle": "string", "resource": "string"},
        keep_default_na=False,
        na_values={"resource": [""], "amount_req": [""], "timestamp": [""]},
        low_memory=False,
    )
    return build_bpi2012_crm(log, keep_after_outcome=keep_after_outcome, columns=columns)
