"""Stage at time, observation points and labels (design.md §2).

Rules, exactly:

- A lead's stage at instant *t* is the stage of its last stage change with ``changed_at <= t``;
  before its first change it is ``lead``. A lead created after *t* does not exist at *t*
  (:func:`stage_at` gives a missing value).
- Observation points for a transition sit on a fixed grid ``start + k * cadence`` (so reruns and
  different leads share the same instants). A lead gets a point at grid instant *t* when it was
  created strictly before *t*, is in the transition's source stage at *t* (``prospect``: stage
  ``lead``; ``opportunity``: ``lead`` or ``prospect``) and has never been promoted: once a lead
  first reaches the target stage or a later funnel stage, it gets no further points for that
  transition, **even if it is later disqualified and recycled**. A recycled lead's second journey
  would otherwise be learnt as if the first had not happened, and each lead contributes at most
  one positive.
- The label is 1 when the lead's **first** promotion (to the target stage or a later funnel
  stage, so skipping a stage counts) falls inside ``(as_of + gap, as_of + gap + horizon]``. A
  promotion during the gap gives 0: sales could not have acted on the score in time. A promotion
  exactly at ``as_of`` is not in the window; such a lead is no longer in the source stage at
  ``as_of``, so it has no point there anyway.
- Censoring: a point whose label window ends after the data's end has an unknown label. It is
  kept with a missing label and ``censored=True`` so callers can count it; training drops it and
  never treats it as a negative.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from leadml.config import TimelineConfig
from leadml.data.contracts import CRMData
from leadml.funnel import FUNNEL

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


def label_name(transition: str) -> str:
    """Name of the label column for a transition, e.g. ``promoted_to_prospect``."""
    _check_transition(transition)
    return f"promoted_to_{TARGET_STAGE[transition]}"


def _check_transition(transition: str) -> None:
    if transition not in SOURCE_STAGES:
        raise ValueError(
            f"unknown transition {transition!r}; expected one of {', '.join(SOURCE_STAGES)}"
        )


def _timestamps(values: Any, n: int) -> np.ndarray:
    """Instants as tz-naive UTC ``datetime64[ns]``; a single instant is repeated ``n`` times."""
    if isinstance(values, str | pd.Timestamp | np.datetime64):
        ts = pd.Timestamp(values)
        if ts.tzinfo is not None:
            ts = ts.tz_convert("UTC").tz_localize(None)
        return np.full(n, ts.to_datetime64(), dtype="datetime64[ns]")
    idx = pd.DatetimeIndex(pd.to_datetime(np.asarray(values)))
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx.to_numpy(dtype="datetime64[ns]")


def stage_at(data: CRMData, lead_ids: Any, instants: Any) -> pd.Series:
    """Stage of each (lead, instant) pair, vectorised; missing where the lead does not exist yet.

    Parameters
    ----------
    data : CRMData
        Validated tables.
    lead_ids : array-like
        Lead ids (any order, repeats allowed).
    instants : array-like or a single timestamp
        One instant per lead id, or one for all.

    Returns
    -------
    Series
        Object dtype, positional index ``0..n-1``: the stage of the last change with
        ``changed_at <= t``, ``"lead"`` before the first change, missing when the lead was
        created after ``t`` or is unknown.

    Examples
    --------
    >>> import pandas as pd
    >>> from leadml.data.contracts import validate
    >>> data = validate(
    ...     pd.DataFrame({"lead_id": [1], "created_at": ["2024-01-01"]}),
    ...     pd.DataFrame({"lead_id": [], "event_type": [], "occurred_at": []}),
    ...     pd.DataFrame({"lead_id": [1, 1], "stage": ["lead", "prospect"],
    ...                   "changed_at": ["2024-01-01", "2024-02-01"]}))
    >>> stage_at(data, [1, 1, 1], pd.to_datetime(["2023-12-31", "2024-01-15", "2024-02-01"])).tolist()
    [nan, 'lead', 'prospect']
    """
    c = data.columns
    ids = np.asarray(lead_ids)
    t = _timestamps(instants, len(ids))
    if len(t) != len(ids):
        raise ValueError(
            f"stage_at: got {len(ids)} lead ids but {len(t)} instants; pass one instant per lead "
            "or a single instant for all"
        )
    q = pd.DataFrame({"_lead": ids, "_t": t, "_row": np.arange(len(ids))})
    q["_lead"] = q["_lead"].astype(data.leads[c.lead_id].dtype)
    sc = data.stage_changes[[c.lead_id, c.stage, c.changed_at]].rename(
        columns={c.lead_id: "_lead", c.stage: "_stage", c.changed_at: "_t"}
    )
    # merge_asof needs both sides sorted on the time key; ties keep table order (stable).
    merged = pd.merge_asof(
        q.sort_values("_t", kind="stable"),
        sc.sort_values("_t", kind="stable"),
        on="_t",
        by="_lead",
        direction="backward",
        allow_exact_matches=True,
    ).sort_values("_row")
    pos = pd.Index(data.leads[c.lead_id]).get_indexer(q["_lead"])
    created_at = data.leads[c.created_at].to_numpy(dtype="datetime64[ns]")
    exists = pos >= 0
    exists[exists] = created_at[pos[exists]] <= t[exists]
    stage = merged["_stage"].to_numpy(dtype=object)
    stage = np.where(pd.isna(stage), "lead", stage)
    return pd.Series(np.where(exists, stage, np.nan), index=np.arange(len(q)), dtype=object)


def first_promotion(data: CRMData, transition: str) -> pd.Series:
    """First time each lead reached the transition's target stage or later (NaT if never).

    Indexed by ``lead_id`` in the order of ``data.leads``.
    """
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


def _grid(start: pd.Timestamp, end: pd.Timestamp, cadence_days: int) -> np.ndarray:
    if cadence_days < 1:
        raise ValueError(f"cadence_days must be at least 1, got {cadence_days}")
    if end < start:
        raise ValueError(f"end {end} is before start {start}: no observation points possible")
    step = np.timedelta64(cadence_days * 86_400, "s").astype("timedelta64[ns]")
    n = int((end - start) // pd.Timedelta(step)) + 1
    return start.to_datetime64().astype("datetime64[ns]") + step * np.arange(n)


def _naive(ts: pd.Timestamp | str) -> pd.Timestamp:
    t = pd.Timestamp(ts)
    return t.tz_convert("UTC").tz_localize(None) if t.tzinfo is not None else t


def build_observation_points(
    data: CRMData,
    transition: str,
    start: pd.Timestamp | str,
    end: pd.Timestamp | str,
    *,
    cadence_days: int = 7,
    horizon_days: int | None = None,
    gap_days: int = 0,
) -> pd.DataFrame:
    """Observation points ``(lead_id, as_of)`` for a transition, sorted by lead then as_of.

    Parameters
    ----------
    data : CRMData
        Validated tables.
    transition : {"prospect", "opportunity"}
        Which promotion the points are for (decides the source stages).
    start, end : timestamp
        The grid is ``start, start + cadence, ...`` up to and including ``end``; anchoring at
        ``start`` makes the instants deterministic and shared by all leads.
    cadence_days : int
        Days between grid instants.
    horizon_days : int, optional
        When given, only points whose label window ``as_of + gap + horizon`` ends by the data's
        end are returned (no censored points). When None, censoring is left to
        :func:`build_labels`, which flags rather than drops.
    gap_days : int
        Gap before the label window; only used with ``horizon_days``.

    Returns
    -------
    DataFrame
        ``lead_id`` and ``as_of`` (``datetime64[ns]``), one row per eligible (lead, instant).

    Notes
    -----
    Cost grows with leads × grid instants in their live span (plus one ``merge_asof`` over the
    stage changes), never with events.
    """
    _check_transition(transition)
    c = data.columns
    start_ts, end_ts = _naive(start), _naive(end)
    if horizon_days is not None:
        end_ts = min(end_ts, data.end - pd.Timedelta(days=horizon_days + gap_days))
    if end_ts < start_ts and horizon_days is not None:
        return _empty_points(data)
    g = _grid(start_ts, end_ts, cadence_days).astype("int64")
    leads = data.leads[[c.lead_id, c.created_at]]
    first = first_promotion(data, transition).to_numpy(dtype="datetime64[ns]")
    never = np.isnat(first)
    created = leads[c.created_at].to_numpy(dtype="datetime64[ns]").astype("int64")
    # First grid index strictly after creation; last grid index strictly before first promotion
    # (at the promotion instant itself the lead is no longer in the source stage).
    lo = np.searchsorted(g, created, side="right")
    hi = np.where(never, len(g), np.searchsorted(g, first.astype("int64"), side="left"))
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
    # Not promoted yet, but possibly disqualified (or a prospect, for the prospect model).
    stage = stage_at(data, points[c.lead_id].to_numpy(), points["as_of"].to_numpy())
    keep = stage.isin(SOURCE_STAGES[transition]).to_numpy()
    return points.loc[keep].reset_index(drop=True)


def _empty_points(data: CRMData) -> pd.DataFrame:
    c = data.columns
    return pd.DataFrame(
        {
            c.lead_id: pd.Series([], dtype=data.leads[c.lead_id].dtype),
            "as_of": pd.Series([], dtype="datetime64[ns]"),
        }
    )


def build_labels(
    data: CRMData,
    points: pd.DataFrame,
    transition: str,
    horizon_days: int | None = None,
    gap_days: int | None = None,
    data_end: pd.Timestamp | str | None = None,
) -> pd.DataFrame:
    """Label each observation point and flag censored ones.

    Parameters
    ----------
    data : CRMData
        Validated tables.
    points : DataFrame
        ``lead_id`` and ``as_of``.
    transition : {"prospect", "opportunity"}
        Which promotion to label.
    horizon_days, gap_days : int, optional
        Label window ``(as_of + gap, as_of + gap + horizon]``; defaults from
        :class:`~leadml.config.TimelineConfig` (30 days for prospect, 60 for opportunity, no gap).
    data_end : timestamp, optional
        The last instant the data knows about (default ``data.end``).

    Returns
    -------
    DataFrame
        ``points`` plus the label column (nullable ``Int8``: missing when censored) and a boolean
        ``censored``.

    Examples
    --------
    >>> import pandas as pd
    >>> from leadml.data.contracts import validate
    >>> data = validate(  # lead 2, created on June 1, marks the data's end
    ...     pd.DataFrame({"lead_id": [1, 2], "created_at": ["2024-01-01", "2024-06-01"]}),
    ...     pd.DataFrame({"lead_id": [1], "event_type": ["web_visit"], "occurred_at": ["2024-02-01"]}),
    ...     pd.DataFrame({"lead_id": [1, 1], "stage": ["lead", "prospect"],
    ...                   "changed_at": ["2024-01-01", "2024-03-15"]}))
    >>> pts = pd.DataFrame({"lead_id": [1, 1, 1],
    ...                     "as_of": pd.to_datetime(["2024-02-01", "2024-03-01", "2024-05-20"])})
    >>> build_labels(data, pts, "prospect", horizon_days=30)[["promoted_to_prospect", "censored"]]
       promoted_to_prospect  censored
    0                     0     False
    1                     1     False
    2                  <NA>      True
    """
    c = data.columns
    name = label_name(transition)
    tl = TimelineConfig()
    horizon = tl.horizon_days[transition] if horizon_days is None else int(horizon_days)  # type: ignore[index]
    gap = tl.gap_days if gap_days is None else int(gap_days)
    if horizon < 1 or gap < 0:
        raise ValueError(f"horizon_days must be >= 1 and gap_days >= 0, got {horizon} and {gap}")
    end = _naive(data_end) if data_end is not None else data.end
    first = first_promotion(data, transition)
    pos = pd.Index(data.leads[c.lead_id]).get_indexer(points[c.lead_id])
    if (pos < 0).any():
        raise ValueError(
            f"points.{c.lead_id}: {int((pos < 0).sum())} points for leads not in the leads table "
            f"(e.g. {points.loc[pos < 0, c.lead_id].head(3).tolist()}); build points from the "
            "same data"
        )
    f = first.to_numpy(dtype="datetime64[ns]")[pos]
    as_of = _timestamps(points["as_of"], len(points))
    open_ = as_of + np.timedelta64(gap * 86_400, "s")
    close = open_ + np.timedelta64(horizon * 86_400, "s")
    hit = ~np.isnat(f) & (f > open_) & (f <= close)
    censored = close > end.to_datetime64()
    out = points.copy()
    out[name] = pd.array(np.where(censored, pd.NA, hit.astype("int8")), dtype="Int8")
    out["censored"] = censored
    return out
