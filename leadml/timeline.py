"""Stage at time, observation points and labels (design.md §2).

Rules, exactly:

- A lead's stage at instant *t* is the stage of its last stage change with ``changed_at <= t``;
  before its first change it is ``lead``. A lead created at or after *t* does not exist at *t*.
- Observation points for a transition sit on a fixed grid ``start + k * cadence`` (so reruns and
  different leads share the same instants) and are kept for leads created strictly before the point,
  in the transition's source stage at the point (``prospect``: stage ``lead``; ``opportunity``:
  ``lead`` or ``prospect``), and not yet promoted: once a lead has first reached the target stage
  or a later funnel stage, it gets no further points for that transition, even if later recycled.
- The label is 1 when the lead first reaches the target stage or later inside
  ``(as_of + gap, as_of + gap + horizon]``. A promotion during the gap gives 0 (sales could not
  have acted on the score in time).
- Censoring: a point whose label window ends after the data's end has an unknown label. It is
  dropped from training and counted, never treated as a negative.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from leadml.contracts import FUNNEL, CRMData

__all__ = [
    "SOURCE_STAGES",
    "TARGET_STAGE",
    "build_labels",
    "build_observation_points",
    "first_promotion",
    "label_name",
    "stage_at",
]

Transition = Literal["prospect", "opportunity"]
SOURCE_STAGES: dict[str, tuple[str, ...]] = {
    "prospect": ("lead",),
    "opportunity": ("lead", "prospect"),
}
TARGET_STAGE: dict[str, str] = {"prospect": "prospect", "opportunity": "opportunity"}
_DAY = pd.Timedelta(days=1)


def label_name(transition: str) -> str:
    """Name of the label column for a transition, e.g. ``promoted_to_prospect``."""
    _check_transition(transition)
    return f"promoted_to_{TARGET_STAGE[transition]}"


def _check_transition(transition: str) -> None:
    if transition not in SOURCE_STAGES:
        raise ValueError(
            f"unknown transition {transition!r}; expected one of {', '.join(SOURCE_STAGES)}"
        )


def stage_at(
    data: CRMData, lead_ids: pd.Series | np.ndarray, instants: pd.Series | np.ndarray
) -> pd.Series:
    """Stage of each (lead, instant) pair, vectorised; NaN where the lead does not exist yet.

    Examples
    --------
    >>> import pandas as pd
    >>> from leadml.contracts import validate
    >>> data = validate(
    ...     pd.DataFrame({"lead_id": [1], "created_at": ["2024-01-01"]}),
    ...     pd.DataFrame({"lead_id": [], "event_type": [], "occurred_at": []}),
    ...     pd.DataFrame({"lead_id": [1, 1], "stage": ["lead", "prospect"],
    ...                   "changed_at": ["2024-01-01", "2024-02-01"]}))
    >>> stage_at(data, [1, 1, 1], pd.to_datetime(["2023-12-31", "2024-01-15", "2024-02-01"])).tolist()
    [nan, 'lead', 'prospect']
    """
    c = data.columns
    q = pd.DataFrame(
        {
            "_lead": np.asarray(lead_ids),
            "_t": pd.to_datetime(np.asarray(instants)).astype("datetime64[ns]"),
            "_row": np.arange(len(lead_ids)),
        }
    )
    q["_lead"] = q["_lead"].astype(data.leads[c.lead_id].dtype)
    sc = data.stage_changes[[c.lead_id, c.stage, c.changed_at]].rename(
        columns={c.lead_id: "_lead", c.stage: "_stage", c.changed_at: "_t"}
    )
    merged = pd.merge_asof(
        q.sort_values("_t", kind="stable"),
        sc.sort_values("_t", kind="stable"),
        on="_t",
        by="_lead",
        direction="backward",
        allow_exact_matches=True,
    ).sort_values("_row")
    created = q["_lead"].map(data.leads.set_index(c.lead_id)[c.created_at])
    stage = merged["_stage"].to_numpy(dtype=object)
    stage = np.where(pd.isna(stage), "lead", stage)
    exists = (created.to_numpy() <= q["_t"].to_numpy()) & created.notna().to_numpy()
    return pd.Series(np.where(exists, stage, np.nan), index=np.arange(len(q)), dtype=object)


def first_promotion(data: CRMData, transition: str) -> pd.Series:
    """First time each lead reached the transition's target stage or later (NaT if never)."""
    _check_transition(transition)
    c = data.columns
    rank = FUNNEL.index(TARGET_STAGE[transition])
    reached = data.stage_changes[c.stage].isin(FUNNEL[rank:])
    first = (
        data.stage_changes.loc[reached]
        .groupby(c.lead_id, sort=True, observed=True)[c.changed_at]
        .min()
    )
    return first.reindex(data.leads[c.lead_id]).rename("first_promotion")


def _grid(start: pd.Timestamp, end: pd.Timestamp, cadence_days: int) -> pd.DatetimeIndex:
    if end < start:
        raise ValueError(f"end {end} is before start {start}: no observation points possible")
    return pd.date_range(start, end, freq=pd.Timedelta(days=cadence_days)).astype("datetime64[ns]")


def build_observation_points(
    data: CRMData,
    transition: str,
    start: pd.Timestamp | str,
    end: pd.Timestamp | str,
    *,
    cadence_days: int = 7,
) -> pd.DataFrame:
    """Observation points ``(lead_id, as_of)`` for a transition, sorted by lead then time.

    Cost grows with leads × grid instants in their eligible span, never with events.
    """
    _check_transition(transition)
    c = data.columns
    grid = _grid(pd.Timestamp(start), pd.Timestamp(end), cadence_days)
    g = grid.asi8
    leads = data.leads[[c.lead_id, c.created_at]]
    promoted = first_promotion(data, transition).to_numpy(dtype="datetime64[ns]").astype("int64")
    never = np.isnat(first_promotion(data, transition).to_numpy(dtype="datetime64[ns]"))
    created = leads[c.created_at].to_numpy(dtype="datetime64[ns]").astype("int64")
    # First grid index strictly after creation; last grid index strictly before first promotion.
    lo = np.searchsorted(g, created, side="right")
    hi = np.where(never, len(g), np.searchsorted(g, promoted, side="left"))
    n = np.maximum(hi - lo, 0)
    lead_idx = np.repeat(np.arange(len(leads)), n)
    offsets = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    as_of = g[np.repeat(lo, n) + offsets]
    points = pd.DataFrame(
        {
            c.lead_id: leads[c.lead_id].to_numpy()[lead_idx],
            "as_of": as_of.astype("datetime64[ns]"),
        }
    )
    points[c.lead_id] = points[c.lead_id].astype(leads[c.lead_id].dtype)
    stage = stage_at(data, points[c.lead_id], points["as_of"])
    keep = stage.isin(SOURCE_STAGES[transition]).to_numpy()
    return points.loc[keep].reset_index(drop=True)


def build_labels(
    data: CRMData,
    points: pd.DataFrame,
    transition: str,
    *,
    horizon_days: int,
    gap_days: int = 0,
    data_end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Label each point; returns ``points`` plus the label column and a boolean ``censored``.

    Censored rows keep a missing label (``<NA>``) so callers can count them before dropping.
    """
    c = data.columns
    name = label_name(transition)
    end = pd.Timestamp(data_end) if data_end is not None else data.end
    first = first_promotion(data, transition)
    first_by_lead = pd.Series(first.to_numpy(), index=data.leads[c.lead_id].to_numpy())
    f = points[c.lead_id].map(first_by_lead).to_numpy(dtype="datetime64[ns]")
    as_of = points["as_of"].to_numpy(dtype="datetime64[ns]")
    open_ = as_of + np.timedelta64(gap_days, "D")
    close = open_ + np.timedelta64(horizon_days, "D")
    hit = ~np.isnat(f) & (f > open_) & (f <= close)
    censored = close > np.datetime64(end.to_datetime64(), "ns")
    out = points.copy()
    out[name] = pd.array(np.where(censored, pd.NA, hit.astype("int8")), dtype="Int8")
    out["censored"] = censored
    return out
