"""Hand-computed expectations for stage-at-time, observation points, labels and censoring."""

from __future__ import annotations

import pandas as pd
import pytest

from leadml.contracts import validate
from leadml.timeline import build_labels, build_observation_points, stage_at


def _data(
    changes: list[tuple[int, str, str]], created: dict[int, str], end_event: str = "2024-12-31"
):
    leads = pd.DataFrame({"lead_id": list(created), "created_at": list(created.values())})
    # One late event fixes the data's end.
    events = pd.DataFrame(
        {"lead_id": [next(iter(created))], "event_type": ["web_visit"], "occurred_at": [end_event]}
    )
    sc = pd.DataFrame(changes, columns=["lead_id", "stage", "changed_at"])
    return validate(leads, events, sc)


def test_stage_at_uses_last_change_at_or_before() -> None:
    d = _data(
        [(1, "lead", "2024-01-01"), (1, "disqualified", "2024-02-01"), (1, "lead", "2024-03-01")],
        {1: "2024-01-01"},
    )
    t = pd.to_datetime(["2023-12-31", "2024-01-31", "2024-02-01", "2024-02-15", "2024-03-02"])
    assert stage_at(d, [1] * 5, t).tolist()[1:] == ["lead", "disqualified", "disqualified", "lead"]
    assert pd.isna(stage_at(d, [1], t[:1]).iloc[0])  # not created yet


def test_points_on_grid_after_creation_and_stop_after_promotion() -> None:
    d = _data([(1, "lead", "2024-01-03"), (1, "prospect", "2024-01-22")], {1: "2024-01-03"})
    pts = build_observation_points(d, "prospect", "2024-01-01", "2024-03-01", cadence_days=7)
    # Grid: Jan 1, 8, 15, 22, 29... Created Jan 3 -> first point Jan 8; promoted Jan 22 -> the
    # point at Jan 22 itself is already a prospect and nothing after it.
    assert pts["as_of"].dt.strftime("%m-%d").tolist() == ["01-08", "01-15"]


def test_no_point_exactly_at_creation() -> None:
    d = _data([(1, "lead", "2024-01-08")], {1: "2024-01-08"})
    pts = build_observation_points(d, "prospect", "2024-01-01", "2024-01-20", cadence_days=7)
    assert pts["as_of"].dt.strftime("%m-%d").tolist() == ["01-15"]


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
    assert pts["as_of"].dt.strftime("%m-%d").tolist() == ["01-08", "01-15"]


def test_recycled_lead_gets_points_again_but_disqualified_time_does_not() -> None:
    d = _data(
        [(1, "lead", "2024-01-01"), (1, "disqualified", "2024-01-10"), (1, "lead", "2024-01-25")],
        {1: "2024-01-01"},
    )
    pts = build_observation_points(d, "prospect", "2024-01-01", "2024-02-06", cadence_days=7)
    assert pts["as_of"].dt.strftime("%m-%d").tolist() == ["01-08", "01-29", "02-05"]


@pytest.mark.parametrize(
    ("promoted_at", "expected"),
    [
        ("2024-03-01 00:00:00", 0),  # at as_of: not inside (as_of, as_of + H]
        ("2024-03-01 00:00:01", 1),
        ("2024-03-31 00:00:00", 1),  # exactly as_of + H
        ("2024-03-31 00:00:01", 0),  # one second past the window
        (None, 0),
    ],
)
def test_label_window_edges(promoted_at: str | None, expected: int) -> None:
    changes = [(1, "lead", "2024-01-01")]
    if promoted_at:
        changes.append((1, "prospect", promoted_at))
    d = _data(changes, {1: "2024-01-01"})
    pts = pd.DataFrame({"lead_id": [1], "as_of": pd.to_datetime(["2024-03-01"])})
    lab = build_labels(d, pts, "prospect", horizon_days=30)
    assert lab["promoted_to_prospect"].tolist() == [expected]
    assert not lab["censored"].iloc[0]


def test_skipping_a_stage_counts_as_promotion() -> None:
    d = _data([(1, "lead", "2024-01-01"), (1, "opportunity", "2024-03-10")], {1: "2024-01-01"})
    pts = pd.DataFrame({"lead_id": [1], "as_of": pd.to_datetime(["2024-03-01"])})
    assert build_labels(d, pts, "prospect", horizon_days=30)["promoted_to_prospect"].tolist() == [1]


def test_gap_moves_the_window() -> None:
    d = _data([(1, "lead", "2024-01-01"), (1, "prospect", "2024-03-05")], {1: "2024-01-01"})
    pts = pd.DataFrame({"lead_id": [1], "as_of": pd.to_datetime(["2024-03-01"])})
    lab = build_labels(d, pts, "prospect", horizon_days=30, gap_days=7)
    assert lab["promoted_to_prospect"].tolist() == [0]  # promoted during the gap
    lab = build_labels(d, pts, "prospect", horizon_days=30, gap_days=2)
    assert lab["promoted_to_prospect"].tolist() == [1]


def test_censoring_at_data_end() -> None:
    d = _data([(1, "lead", "2024-01-01")], {1: "2024-01-01"}, end_event="2024-03-30")
    pts = pd.DataFrame({"lead_id": [1, 1], "as_of": pd.to_datetime(["2024-02-28", "2024-03-01"])})
    lab = build_labels(d, pts, "prospect", horizon_days=30)
    assert lab["censored"].tolist() == [False, True]
    assert lab["promoted_to_prospect"].isna().tolist() == [False, True]


def test_unknown_transition_is_a_clear_error() -> None:
    d = _data([(1, "lead", "2024-01-01")], {1: "2024-01-01"})
    with pytest.raises(ValueError, match="unknown transition 'customer'"):
        build_observation_points(d, "customer", "2024-01-01", "2024-02-01")
