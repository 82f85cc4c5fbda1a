"""Training and scoring sets on synthetic data agree with the raw stage changes, read the slow,
obvious way."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadml.config import LeadMLConfig
from leadml.data.contracts import FUNNEL, validate
from leadml.data.features import build_features, make_feature_spec
from leadml.data.trainset import build_scoring_set, build_training_set, default_window

SOURCE = {"prospect": ("lead",), "opportunity": ("lead", "prospect")}


def _truth(crm, transition: str, start, end, horizon: int, cadence: int = 7):
    """Every observation point and its label, from the raw tables, one lead and instant at a time.

    Returns {(lead_id, as_of_ns): label or None when censored}.
    """
    day = 86_400 * 10**9
    reached = set(FUNNEL[FUNNEL.index(transition) :])
    grid = range(pd.Timestamp(start).value, pd.Timestamp(end).value + 1, cadence * day)
    data_end = crm.end.value
    changes: dict[int, list[tuple[int, str]]] = {}
    for lead, stage, at in zip(
        crm.stage_changes["lead_id"].tolist(),
        crm.stage_changes["stage"].tolist(),
        crm.stage_changes["changed_at"].astype("int64").tolist(),
        strict=True,
    ):
        changes.setdefault(lead, []).append((at, stage))
    out: dict[tuple[int, int], int | None] = {}
    for lead, created in zip(
        crm.leads["lead_id"].tolist(), crm.leads["created_at"].astype("int64").tolist(), strict=True
    ):
        rows = sorted(changes.get(lead, []), key=lambda r: r[0])
        promotions = [at for at, stage in rows if stage in reached]
        first = min(promotions) if promotions else None
        for t in grid:
            if created >= t:
                continue
            stage = "lead"
            for at, s in rows:
                if at <= t:
                    stage = s
            if stage not in SOURCE[transition] or (first is not None and first <= t):
                continue
            close = t + horizon * day
            if close > data_end:
                out[(lead, t)] = None
            else:
                out[(lead, t)] = int(first is not None and t < first <= close)
    return out


@pytest.mark.parametrize(("transition", "horizon"), [("prospect", 30), ("opportunity", 60)])
def test_points_labels_and_censoring_match_the_raw_stage_changes(crm, transition, horizon) -> None:
    start, end = crm.start.floor("D"), crm.end
    ts = build_training_set(crm, transition, start, end)
    truth = _truth(crm, transition, start, end, horizon)
    s = ts.summary
    censored = sum(v is None for v in truth.values())
    assert s["points_generated"] == len(truth)
    assert s["censored"] == censored > 0
    assert s["kept"] == len(ts.frame) == len(truth) - censored
    got = dict(
        zip(
            zip(
                ts.frame["lead_id"].tolist(),
                ts.frame["as_of"].astype("int64").tolist(),
                strict=True,
            ),
            ts.frame[ts.label].tolist(),
            strict=True,
        )
    )
    assert got == {k: v for k, v in truth.items() if v is not None}
    positives = sum(v == 1 for v in truth.values())
    assert s["positives"] == positives
    # Weekly hazard of promotion: a few percent per point.
    assert 0.005 < s["positive_rate"] < 0.08


def test_default_window_observes_every_label(crm) -> None:
    ts = build_training_set(crm, "prospect")
    start, end = default_window(crm, "prospect")
    assert ts.summary["censored"] == 0
    assert ts.summary["start"] == str(start) and start == crm.start.floor("D")
    assert end == crm.end - pd.Timedelta(days=30)
    assert ts.frame["as_of"].max() <= end
    per_month = ts.per_month()
    assert per_month["points"].sum() == ts.summary["kept"]
    assert per_month["positives"].sum() == ts.summary["positives"]
    assert per_month["month"].is_monotonic_increasing
    gap = build_training_set(
        crm, "prospect", config=LeadMLConfig().with_overrides({"timeline": {"gap_days": 5}})
    )
    assert gap.summary["censored"] == 0 and gap.summary["gap_days"] == 5


def test_frame_layout(crm) -> None:
    ts = build_training_set(crm, "opportunity")
    assert list(ts.frame.columns) == ["lead_id", "as_of", *ts.spec.names, "promoted_to_opportunity"]
    assert ts.label == "promoted_to_opportunity" and ts.transition == "opportunity"
    assert ts.frame[ts.label].dtype == np.int8
    assert set(ts.frame["current_stage"].dropna()) <= {"lead", "prospect", "disqualified"}
    keys = ts.frame[["lead_id", "as_of"]]
    assert keys.equals(keys.sort_values(["lead_id", "as_of"]).reset_index(drop=True))
    assert not keys.duplicated().any()


def test_training_set_is_deterministic(crm, tmp_path) -> None:
    a = build_training_set(crm, "prospect").frame
    b = build_training_set(crm, "prospect").frame
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    a.to_parquet(tmp_path / "a.parquet")
    b.to_parquet(tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_scoring_set_has_every_eligible_lead_and_nobody_else(crm) -> None:
    as_of = pd.Timestamp("2025-01-15")
    frame = build_scoring_set(crm, as_of)
    sc = crm.stage_changes.loc[crm.stage_changes["changed_at"] <= as_of]
    last = sc.groupby("lead_id")["stage"].last()
    created = crm.leads.set_index("lead_id")["created_at"]
    expected = sorted(
        i for i in created.index[created < as_of] if last.get(i, "lead") in ("lead", "prospect")
    )
    assert frame["lead_id"].tolist() == expected
    assert frame["stage"].tolist() == [last.get(i, "lead") for i in expected]
    assert np.all(frame["as_of"] == as_of)
    assert list(frame.columns[:3]) == ["lead_id", "as_of", "stage"]
    again = build_scoring_set(crm, as_of)
    pd.testing.assert_frame_equal(frame, again, check_exact=True)


def test_scoring_set_includes_leads_without_events_and_uses_the_training_spec(crm) -> None:
    spec = build_training_set(crm, "prospect").spec
    quiet = crm.leads["lead_id"].iloc[-5:]
    data = validate(
        crm.leads,
        crm.events.loc[~crm.events["lead_id"].isin(quiet)],
        crm.stage_changes,
    )
    as_of = crm.end
    frame = build_scoring_set(data, as_of, spec=spec).set_index("lead_id")
    eligible = [i for i in quiet if i in frame.index]
    assert eligible
    rows = frame.loc[eligible]
    assert (rows[[f"n_{t}_7d" for t in spec.event_types]] == 0).all().all()
    assert rows[[f"days_since_last_{t}" for t in spec.event_types]].isna().all().all()
    assert list(frame.columns[2:]) == list(spec.names)


def test_scoring_set_is_build_features_of_its_points_to_the_bit(crm) -> None:
    # The scoring set builds the events' timeline in a thread before its points are known; it
    # must key it exactly as build_features keys those points, including events more than 68
    # years before as_of (keys then start 2**31 seconds before it).
    events = crm.events.copy()
    old = events["lead_id"].isin(events["lead_id"].unique()[:3])
    events.loc[old, "occurred_at"] = pd.Timestamp("1971-01-01")
    data = validate(crm.leads, events, crm.stage_changes)
    spec = make_feature_spec(data)
    as_of = pd.Timestamp("2040-01-15")
    frame = build_scoring_set(data, as_of, spec=spec)
    assert len(frame) > 100
    again = build_features(
        data.leads, data.events, data.stage_changes, frame[["lead_id", "as_of"]], spec=spec
    )
    pd.testing.assert_frame_equal(frame.drop(columns="stage"), again, check_exact=True)
    recency = [c for c in frame.columns if c.startswith("days_since_last_")]
    since = frame.loc[frame["lead_id"].isin(events.loc[old, "lead_id"]), recency].to_numpy()
    since = since[~np.isnan(since)]
    assert len(since) and (since == 2**31 / 86_400).all()  # clipped to the keys' second 0


def test_scoring_set_stages_are_stage_at_ties_bounds_and_table_order_included(crm) -> None:
    """The scoring set looks stages up with one sort instead of stage_at's as-of join: the
    same stage for every lead, with changes at as_of itself (they count), simultaneous
    changes (the later row wins) and the table in no particular order."""
    from leadml.data.timeline import stage_at
    from leadml.data.trainset import _stages_at

    as_of = pd.Timestamp("2025-01-15")
    sc = crm.stage_changes.sample(frac=1.0, random_state=3).reset_index(drop=True)
    some = crm.leads["lead_id"].iloc[:40].to_numpy()
    extra = pd.DataFrame(
        {
            "lead_id": np.concatenate([some[:20], some[:20], some[20:]]),
            "stage": ["prospect"] * 20 + ["disqualified"] * 20 + ["prospect"] * 20,
            "changed_at": [as_of] * 40 + [as_of + pd.Timedelta(seconds=1)] * 20,
        }
    )
    data = validate(crm.leads, crm.events, pd.concat([sc, extra], ignore_index=True))
    alive = np.sort(data.leads.loc[data.leads["created_at"] < as_of, "lead_id"].to_numpy())
    got = _stages_at(data, alive, as_of)
    want = stage_at(data, alive, as_of).to_numpy()
    assert (got == want).all()
    at_as_of = np.isin(alive, some[:20])
    assert at_as_of.any() and (got[at_as_of] == "disqualified").all()


def test_a_wide_feature_spec_builds_without_pandas_fragmentation_warnings(crm) -> None:
    """Features frames keep their columns as separate arrays, but a wide spec (here 100+
    features) must not leave pandas warning about a fragmented frame on every insert."""
    import warnings

    from leadml.config import FeaturesConfig

    spec = make_feature_spec(crm, FeaturesConfig(windows_days=tuple(range(1, 13))))
    assert len(spec.names) > 100
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.PerformanceWarning)
        frame = build_scoring_set(crm, pd.Timestamp("2025-01-15"), spec=spec)
        build_training_set(crm, "prospect", config=LeadMLConfig(), spec=spec)
    assert list(frame.columns[3:]) == list(spec.names)
