"""Training and scoring sets: observation points -> labels -> features, through one feature path.

The same :func:`leadml.features.build_features` builds a training set and a scoring set; the only
difference is that scoring rows have no label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from leadml.config import LeadMLConfig
from leadml.contracts import CRMData
from leadml.features import (
    FeatureSpec,
    build_features,
    make_feature_spec,
)
from leadml.timeline import build_labels, build_observation_points, label_name, stage_at

__all__ = ["TrainingSet", "build_scoring_set", "build_training_set", "default_window"]


@dataclass(frozen=True)
class TrainingSet:
    """Features + label + as_of, the spec that built them, and what happened on the way."""

    frame: pd.DataFrame
    spec: FeatureSpec
    label: str
    transition: str
    summary: dict[str, Any] = field(default_factory=dict)


def default_window(
    data: CRMData, transition: str, config: LeadMLConfig
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Default first and last observation instants: from the first lead's creation day to the
    data's end. Points whose label window runs past the end are censored and counted."""
    start = data.start.floor("D")
    return start, data.end


def build_training_set(
    data: CRMData,
    transition: str,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
    config: LeadMLConfig | None = None,
    *,
    spec: FeatureSpec | None = None,
) -> TrainingSet:
    """Build a point-in-time-correct training set for ``transition`` (prospect | opportunity).

    Returns one row per uncensored observation point, sorted by lead then as_of, with the
    features, the label (``promoted_to_<stage>``, int8) and a summary with points generated,
    censored, kept, positives and the positive rate per as_of month.
    """
    cfg = config or LeadMLConfig()
    tl = cfg.timeline
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
    kept = labelled.loc[~labelled["censored"]].reset_index(drop=True)
    if spec is None:
        spec = make_feature_spec(data, cfg.features)
    name = label_name(transition)
    c = data.columns
    feats = build_features(
        data.leads,
        data.events,
        data.stage_changes,
        kept[[c.lead_id, "as_of"]],
        columns=c,
        config=cfg.features,
        spec=spec,
    )
    feats[name] = kept[name].astype("int8").to_numpy()
    feats = feats.sort_values([c.lead_id, "as_of"], kind="stable").reset_index(drop=True)

    month = kept["as_of"].dt.to_period("M").astype(str)
    per_month = (
        kept.assign(month=month)
        .groupby("month", sort=True)[name]
        .agg(points="size", positives="sum")
        .assign(positive_rate=lambda m: m["positives"] / m["points"])
    )
    summary = {
        "transition": transition,
        "start": str(start_ts),
        "end": str(end_ts),
        "points_generated": int(len(points)),
        "censored": int(labelled["censored"].sum()),
        "kept": int(len(kept)),
        "positives": int(kept[name].sum()),
        "positive_rate": float(kept[name].mean()) if len(kept) else float("nan"),
        "leads": int(kept[c.lead_id].nunique()),
        "per_month": per_month.reset_index().to_dict(orient="records"),
    }
    return TrainingSet(frame=feats, spec=spec, label=name, transition=transition, summary=summary)


def build_scoring_set(
    data: CRMData,
    as_of: pd.Timestamp | str,
    config: LeadMLConfig | None = None,
    spec: FeatureSpec | None = None,
) -> pd.DataFrame:
    """Features at ``as_of`` for every lead eligible then (created before, stage lead or prospect),
    with a ``stage`` column. Sorted by lead_id."""
    cfg = config or LeadMLConfig()
    c = data.columns
    ts = pd.Timestamp(as_of)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    ts = ts.floor("s")
    created = data.leads[c.created_at]
    alive = data.leads.loc[(created < ts).to_numpy(), c.lead_id]
    stage = stage_at(data, alive.to_numpy(), np.full(len(alive), ts.to_datetime64()))
    eligible = stage.isin(["lead", "prospect"]).to_numpy()
    points = pd.DataFrame({c.lead_id: alive.to_numpy()[eligible], "as_of": ts})
    points[c.lead_id] = points[c.lead_id].astype(data.leads[c.lead_id].dtype)
    points["as_of"] = points["as_of"].astype("datetime64[ns]")
    if spec is None:
        spec = make_feature_spec(data, cfg.features)
    feats = build_features(
        data.leads,
        data.events,
        data.stage_changes,
        points,
        columns=c,
        config=cfg.features,
        spec=spec,
    )
    feats.insert(2, "stage", stage.to_numpy()[eligible].astype(object))
    return feats
