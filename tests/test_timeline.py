"""Hand-computed expectations for stage-at-time, observation points and label defaults.

The label window edges, gaps, recycling and censoring are in ``test_leakage.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadml.data.contracts import validate
from leadml.data.timeline import (
    build_labels,
    build_observation_points,
    first_promotion,
    label_name,
    stage_at,
)


def _data(
    changes: list[tuple[int, str, str]], created: dict[int, str], end_event: str = "2024-12-31"
):
    # Lead 999, created at ``end_event``, fixes the data's end (events never move it); it is
    # created at the end, so it has no observation point.
    created = {**created, 999: end_event}
    leads = pd.DataFrame({"lead_id": list(created), "created_at": list(created.values())})
    events = pd.DataFrame(
        {"lead_id": [next(iter(created))], "event_type": ["web_visit"], "occurred_at": [end_event]}
    )
    sc = pd.DataFrame(
        [*changes, (999, "lead", end_event)], columns=["lead_id", "stage", "changed_at"]
    )
    return validate(leads, events, sc)


def _days(points: pd.DataFrame) -> list[str]:
    return points["as_of"].dt.strftime("%m-%d").tolist()


def test_stage_at_uses_last_change_at_or_before() -> None:
    d = _data(
        [(1, "lead", "2024-01-01"), (1, "disqualified", "2024-02-01"), (1, "lead", "2024-03-01")],
        {1: "2024-01-01"},
    )
    t = pd.to_datetime(["2023-12-31", "2024-01-31", "2024-02-01", "2024-02-15", "2024-03-02"])
    got = stage_at(d, [1] * 5, t).tolist()
    assert pd.isna(got[0])  # not created yet
    assert got[1:] == ["lead", "disqualified", "disqualified", "lead"]


def test_stage_at_before_any_change_is_lead_and_broadcasts_one_instant() -> None:
    d = _data(
        [(1, "lead", "2024-01-01"), (2, "prospect", "2024-01-20")],
        {1: "2024-01-01", 2: "2024-01-05"},
    )
    assert stage_at(d, [2, 1], "2024-01-10").tolist() == ["lead", "lead"]
    assert stage_at(d, np.array([2, 1, 7]), pd.Timestamp("2024-01-20")).tolist()[:2] == [
        "prospect",
        "lead",
    ]
    assert pd.isna(stage_at(d, [7], "2024-01-20").iloc[0])  # unknown lead
    with pytest.raises(ValueError, match="one instant per lead"):
        stage_at(d, [1, 2], pd.to_datetime(["2024-01-10"]))


def test_first_promotion_counts_later_stages() -> None:
    d = _data(
        [(1, "lead", "2024-01-01"), (1, "opportunity", "2024-02-01"), (2, "lead", "2024-01-01")],
        {1: "2024-01-01", 2: "2024-01-01"},
    )
    first = first_promotion(d, "prospect")
    assert first.loc[1] == pd.Timestamp("2024-02-01") and pd.isna(first.loc[2])
    assert label_name("opportunity") == "promoted_to_opportunity"


def test_points_on_grid_after_creation_and_stop_after_promotion() -> None:
    d = _data([(1, "lead", "2024-01-03"), (1, "prospect", "2024-01-22")], {1: "2024-01-03"})
    pts = build_observation_points(d, "prospect", "2024-01-01", "2024-03-01", cadence_days=7)
    # Grid: Jan 1, 8, 15, 22, 29... Created Jan 3 -> first point Jan 8; promoted Jan 22 -> the
    # point at Jan 22 itself is already a prospect and nothing after it.
    assert _days(pts) == ["01-08", "01-15"]
    assert pts["as_of"].dtype == "datetime64[ns]"


def test_no_point_exactly_at_creation() -> None:
    d = _data([(1, "lead", "2024-01-08")], {1: "2024-01-08"})
    pts = build_observation_points(d, "prospect", "2024-01-01", "2024-01-20", cadence_days=7)
    assert _days(pts) == ["01-15"]


def test_grid_is_anchored_at_start_and_shared_by_all_leads() -> None:
    d = _data(
        [(1, "lead", "2024-01-02"), (2, "lead", "2024-01-10T13:00")],
        {1: "2024-01-02", 2: "2024-01-10T13:00"},
    )
    pts = build_observation_points(d, "prospect", "2024-01-01", "2024-01-31", cadence_days=10)
    assert pts["lead_id"].tolist() == [1, 1, 1, 2, 2, 2]
    # end is inclusive when it falls on the grid
    assert _days(pts) == ["01-11", "01-21", "01-31"] * 2


def test_opportunity_points_include_prospects() -> None:
    d = _data(
        [
            (1, "lead", "2024-01-01"),
            (1, "prospect", "2024-01-10"),
            (1, "opportunity", "2024-01-20"),
        ],
        {1: "2024-01-01"},
    )
    pts = build_observation_points(d, "opportunity", "2024-01-01", "2024-03-01", cadence_days=7)
    assert _days(pts) == ["01-08", "01-15"]
    assert _days(build_observation_points(d, "prospect", "2024-01-01", "2024-03-01")) == ["01-08"]


def test_recycled_lead_gets_points_again_but_disqualified_time_does_not() -> None:
    d = _data(
        [(1, "lead", "2024-01-01"), (1, "disqualified", "2024-01-10"), (1, "lead", "2024-01-25")],
        {1: "2024-01-01"},
    )
    pts = build_observation_points(d, "prospect", "2024-01-01", "2024-02-06", cadence_days=7)
    assert _days(pts) == ["01-08", "01-29", "02-05"]


def test_horizon_keeps_only_observable_points() -> None:
    d = _data([(1, "lead", "2024-01-01")], {1: "2024-01-01"}, end_event="2024-03-01")
    pts = build_observation_points(
        d, "prospect", "2024-01-01", "2024-03-01", horizon_days=30, gap_days=3
    )
    # Data end Mar 1: as_of + 3 + 30 days <= Mar 1 up to Jan 28; the grid's last is Jan 22.
    assert _days(pts) == ["01-08", "01-15", "01-22"]
    lab = build_labels(d, pts, "prospect", horizon_days=30, gap_days=3)
    assert not lab["censored"].any()
    assert build_observation_points(
        d, "prospect", "2024-02-20", "2024-03-01", horizon_days=30
    ).empty


def test_label_defaults_come_from_the_timeline_config() -> None:
    d = _data(
        [
            (1, "lead", "2024-01-01"),
            (1, "prospect", "2024-02-10"),
            (1, "opportunity", "2024-03-25"),
        ],
        {1: "2024-01-01"},
    )
    pts = pd.DataFrame({"lead_id": [1], "as_of": pd.to_datetime(["2024-01-29"])})
    # prospect: 30 days -> Feb 28 covers Feb 10; opportunity: 60 days -> Mar 29 covers Mar 25.
    assert build_labels(d, pts, "prospect")["promoted_to_prospect"].tolist() == [1]
    assert build_labels(d, pts, "opportunity")["promoted_to_opportunity"].tolist() == [1]
    assert build_labels(d, pts, "opportunity", 30)["promoted_to_opportunity"].tolist() == [0]


def test_clear_errors() -> None:
    d = _data([(1, "lead", "2024-01-01")], {1: "2024-01-01"})
    with pytest.raises(ValueError, match="unknown transition 'customer'"):
        build_observation_points(d, "customer", "2024-01-01", "2024-02-01")
    with pytest.raises(ValueError, match="is before start"):
        build_observation_points(d, "prospect", "2024-02-01", "2024-01-01")
    with pytest.raises(ValueError, match="cadence_days must be at least 1"):
        build_observation_points(d, "prospect", "2024-01-01", "2024-02-01", cadence_days=0)
    with pytest.raises(ValueError, match="not in the leads table"):
        build_labels(
            d, pd.DataFrame({"lead_id": [5], "as_of": [pd.Timestamp("2024-02-01")]}), "prospect"
        )
