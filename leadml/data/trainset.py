"""Training and scoring sets: observation points -> labels -> features, through one feature path.

The same :func:`leadml.data.features.build_features` builds a training set and a scoring set; the only
difference is that scoring rows have no label. Both are deterministic: identical inputs give
identical frames (and byte-identical Parquet files).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from leadml.config import LeadMLConfig
from leadml.data.contracts import CRMData, lead_positions
from leadml.data.features import (
    FeatureSpec,
    _EventsAhead,
    _features,
    build_features,
    make_feature_spec,
)
from leadml.data.timeline import (
    SOURCE_STAGES,
    build_labels,
    build_observation_points,
    label_name,
)
from leadml.funnel import to_as_of

__all__ = ["TrainingSet", "build_scoring_set", "build_training_set", "default_window"]

#: Stages a lead can be scored in (the source stages of either transition).
SCORABLE_STAGES: tuple[str, ...] = SOURCE_STAGES["opportunity"]


@dataclass(frozen=True)
class TrainingSet:
    """A labelled, point-in-time training set and how it was made.

    Attributes
    ----------
    frame : DataFrame
        ``lead_id``, ``as_of``, the features in ``spec.names`` order, then the label column
        (int8), one row per uncensored observation point, sorted by ``lead_id`` then ``as_of``.
    spec : FeatureSpec
        The spec that built the features (stored with the model).
    label : str
        Name of the label column, e.g. ``promoted_to_prospect``.
    transition : str
        ``prospect`` or ``opportunity``.
    summary : dict
        JSON-ready counts: ``points_generated``, ``censored``, ``kept``, ``positives``,
        ``positive_rate``, ``leads``, the window and settings, and ``per_month`` (one record per
        as_of month with points, positives and positive_rate).
    """

    frame: pd.DataFrame
    spec: FeatureSpec
    label: str
    transition: str
    summary: dict[str, Any] = field(default_factory=dict)

    def per_month(self) -> pd.DataFrame:
        """The summary's per-month counts as a small DataFrame."""
        return pd.DataFrame(self.summary.get("per_month", []))


def default_window(
    data: CRMData, transition: str, config: LeadMLConfig | None = None
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Default first and last observation instants for a transition.

    ``start`` is the first lead's creation day (midnight UTC), so the weekly grid is anchored on
    the data and the same on every run. ``end`` is the data's end minus the horizon and the gap:
    the last instant whose label window is fully observed, so by default nothing is censored.
    Pass a later ``end`` to :func:`build_training_set` to see censoring counted in the summary.
    """
    cfg = config or LeadMLConfig()
    tl = cfg.timeline
    horizon = tl.horizon_days[transition]  # type: ignore[index]
    start = data.start.floor("D")
    end = data.end - pd.Timedelta(days=horizon + tl.gap_days)
    return start, max(end, start)


def build_training_set(
    data: CRMData,
    transition: str,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
    config: LeadMLConfig | None = None,
    *,
    spec: FeatureSpec | None = None,
) -> TrainingSet:
    """Build a point-in-time-correct training set for ``transition``.

    Parameters
    ----------
    data : CRMData
        Validated tables.
    transition : {"prospect", "opportunity"}
        Which promotion to model.
    start, end : timestamp, optional
        First and last observation instants (see :func:`default_window` for the defaults).
    config : LeadMLConfig, optional
        Uses its ``timeline`` (cadence, horizon, gap) and ``features`` sections.
    spec : FeatureSpec, optional
        Reuse a spec (e.g. to build a second set with the same columns); by default one is
        inferred from ``data``.

    Returns
    -------
    TrainingSet
        Censored points (label window past the data's end) are dropped and counted.
    """
    cfg = config or LeadMLConfig()
    tl = cfg.timeline
    name = label_name(transition)
    horizon = tl.horizon_days[transition]  # type: ignore[index]
    d_start, d_end = default_window(data, transition, cfg)
    start_ts = pd.Timestamp(start) if start is not None else d_start
    end_ts = pd.Timestamp(end) if end is not None else d_end
    points = build_observation_points(
        data, transition, start_ts, end_ts, cadence_days=tl.cadence_days
    )
    labelled = build_labels(
        data, points, transition, horizon_days=horizon, gap_days=tl.gap_days, data_end=data.end
    )
    kept = labelled.loc[~labelled["censored"].to_numpy()].reset_index(drop=True)
    if spec is None:
        spec = make_feature_spec(data, cfg.features)
    c = data.columns
    feats = build_features(
        data.leads,
        data.events,
        data.stage_changes,
        kept[[c.lead_id, "as_of"]],
        columns=c,
        spec=spec,
    )
    feats[name] = kept[name].to_numpy(dtype="int8")
    # Points come sorted by lead then as_of already; the stable sort only guarantees it.
    feats = feats.sort_values([c.lead_id, "as_of"], kind="stable").reset_index(drop=True)

    y = kept[name].to_numpy(dtype="int64")
    month = kept["as_of"].dt.strftime("%Y-%m").to_numpy()
    per_month = (
        pd.DataFrame({"month": month, "y": y})
        .groupby("month", sort=True)["y"]
        .agg(points="size", positives="sum")
        .reset_index()
    )
    per_month["positive_rate"] = per_month["positives"] / per_month["points"]
    summary = {
        "transition": transition,
        "label": name,
        "start": str(start_ts),
        "end": str(end_ts),
        "data_end": str(data.end),
        "cadence_days": tl.cadence_days,
        "horizon_days": horizon,
        "gap_days": tl.gap_days,
        "points_generated": int(len(points)),
        "censored": int(labelled["censored"].sum()),
        "kept": int(len(kept)),
        "positives": int(y.sum()),
        "positive_rate": float(y.mean()) if len(y) else float("nan"),
        "leads": int(kept[c.lead_id].nunique()),
        "per_month": [
            {
                "month": str(r.month),
                "points": int(r.points),
                "positives": int(r.positives),
                "positive_rate": float(r.positive_rate),
            }
            for r in per_month.itertuples()
        ],
    }
    return TrainingSet(frame=feats, spec=spec, label=name, transition=transition, summary=summary)


def _stages_at(data: CRMData, alive: np.ndarray, ts: pd.Timestamp) -> np.ndarray:
    """``stage_at(data, alive, ts)`` for leads ``alive`` (sorted ids, all created before
    ``ts``), as an object array: the stage of each one's last change at or before ``ts`` (the
    later in the table among simultaneous ones), ``"lead"`` before any. One compiled stable
    sort of the changes by (lead, time) instead of an as-of join."""
    from leadml._kernels import lead_key_order

    c = data.columns
    sc = data.stage_changes
    pos = lead_positions(pd.Index(alive), sc[c.lead_id])
    at = sc[c.changed_at].to_numpy(dtype="datetime64[ns]").view(np.int64)
    rows = np.flatnonzero((pos >= 0) & (at <= ts.as_unit("ns").value))
    rows = rows[lead_key_order(pos[rows], at[rows])]  # by lead, then time, then table order
    p = pos[rows]
    last = np.ones(len(rows), dtype=bool)
    last[:-1] = p[1:] != p[:-1]
    stage = np.full(len(alive), "lead", dtype=object)
    stage[p[last]] = sc[c.stage].to_numpy(dtype=object)[rows[last]]
    return stage


def build_scoring_set(
    data: CRMData,
    as_of: pd.Timestamp | str,
    config: LeadMLConfig | None = None,
    spec: FeatureSpec | None = None,
) -> pd.DataFrame:
    """Features at ``as_of`` for every lead eligible then, sorted by ``lead_id``.

    Eligible: created strictly before ``as_of`` and in stage ``lead`` or ``prospect`` at
    ``as_of`` (leads without any events included: zero counts, missing recencies). Columns:
    ``lead_id``, ``as_of``, ``stage`` (at ``as_of``, which picks the lead's next-stage model),
    then ``spec.names``. Pass the training ``spec`` so the columns match the model.
    ``attrs["stage_counts"]`` counts every lead created before ``as_of`` by its stage then, so a
    scorer can say whom it skipped without walking the stage changes again.
    """
    cfg = config or LeadMLConfig()
    c = data.columns
    ts = to_as_of(as_of, what="as_of")
    if spec is None:
        spec = make_feature_spec(data, cfg.features)
    # The events' timeline does not depend on who is eligible: a thread builds it while the
    # stage of every lead is looked up.
    with ThreadPoolExecutor(1, thread_name_prefix="leadml-events") as pool:
        ahead = _EventsAhead(pool, data, ts, spec)
        alive = data.leads.loc[(data.leads[c.created_at] < ts).to_numpy(), c.lead_id].to_numpy()
        if not pd.Index(alive).is_monotonic_increasing:
            alive = np.sort(alive, kind="stable")
        stage = _stages_at(data, alive, ts)
        eligible = np.isin(stage, SCORABLE_STAGES)
        points = pd.DataFrame(
            {
                c.lead_id: pd.Series(alive[eligible]).astype(data.leads[c.lead_id].dtype),
                "as_of": pd.Series(np.full(int(eligible.sum()), ts.to_datetime64())).astype(
                    "datetime64[ns]"
                ),
            }
        )
        feats = _features(data.leads, data.events, data.stage_changes, points, c, spec, ahead=ahead)
    feats.insert(2, "stage", stage[eligible].astype(object))
    feats.attrs["stage_counts"] = {
        str(k): int(v) for k, v in pd.Series(stage, dtype=object).value_counts().items()
    }
    return feats
