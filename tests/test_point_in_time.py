"""Time is the enemy: nothing at or after as_of may change a feature, and labels sit exactly in
their window."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadml.config import LeadMLConfig
from leadml.data.contracts import validate
from leadml.data.features import IdentifierColumnsExcluded, build_features, make_feature_spec
from leadml.data.timeline import build_labels, build_observation_points
from leadml.data.trainset import build_training_set

BASE = pd.Timestamp("2024-01-01")
TYPES = ["email_open", "pricing_page_view", "demo_request"]
CHANGE_STAGES = ["prospect", "disqualified", "lead", "opportunity"]
LEADS = (1, 2, 3)
S = pd.Timedelta(seconds=1)


LEAD_TABLE = pd.DataFrame(
    {
        "lead_id": np.array(LEADS, dtype=np.int64),
        "created_at": np.full(3, BASE.to_datetime64(), dtype="datetime64[ns]"),
        "industry": pd.Categorical(["a", "b", "a"]),
    }
)


def _ns(seconds: list[int]) -> np.ndarray:
    return BASE.to_datetime64().astype("datetime64[ns]") + np.asarray(
        seconds, dtype=np.int64
    ).astype("timedelta64[s]")


def _tables(events, changes):
    """Canonical frames (what ``validate`` returns), built directly so examples stay fast."""
    e_lead = np.array([e[0] for e in events], dtype=np.int64)
    e_time = _ns([e[2] for e in events])
    o = np.lexsort((e_time, e_lead))
    ev = pd.DataFrame(
        {
            "lead_id": e_lead[o],
            "event_type": pd.Categorical.from_codes(
                np.array([TYPES.index(e[1]) for e in events], dtype=np.int8)[o], categories=TYPES
            ),
            "occurred_at": e_time[o],
            "value": np.array([e[3] for e in events], dtype=np.float64)[o],
        }
    )
    s_lead = np.array([*LEADS, *(x[0] for x in changes)], dtype=np.int64)
    s_time = _ns([0, 0, 0, *(x[2] for x in changes)])
    o = np.lexsort((s_time, s_lead))
    sc = pd.DataFrame(
        {
            "lead_id": s_lead[o],
            "stage": pd.Series(
                np.array(["lead"] * 3 + [x[1] for x in changes], dtype=object)[o], dtype=object
            ),
            "changed_at": s_time[o],
        }
    )
    return LEAD_TABLE, ev, sc


def _spec():
    leads, ev, sc = _tables([(1, t, 10, 1.0) for t in TYPES], [])
    data = validate(leads, ev, sc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifierColumnsExcluded)
        return make_feature_spec(data)


SPEC = _spec()


def _features(events, changes, points):
    leads, ev, sc = _tables(events, changes)
    return build_features(leads, ev, sc, points, spec=SPEC)


def _points(cut: int, back_days: list[int]) -> pd.DataFrame:
    """Every lead at ``cut`` and at ``cut - d`` days for each d (kept after creation)."""
    rows = [(lead, cut - d * 86400) for lead in LEADS for d in [0, *back_days]]
    rows = [(lead, s) for lead, s in rows if s > 0]
    return pd.DataFrame(
        {
            "lead_id": np.array([r[0] for r in rows], dtype=np.int64),
            "as_of": _ns([r[1] for r in rows]),
        }
    )


DAY_S = 86400
lead_ids = st.sampled_from(LEADS)
values = st.one_of(st.none(), st.floats(0, 1e4, allow_nan=False)).map(
    lambda v: np.nan if v is None else v
)


@st.composite
def timelines(draw):
    """A cut-off instant, rows before it, and two unrelated sets of rows at or after it."""
    cut = draw(st.integers(5 * DAY_S, 120 * DAY_S))
    # Times near the cut on purpose: exactly at it, a second either side, whole days around it.
    near = st.sampled_from([0, 1, DAY_S, 7 * DAY_S, 14 * DAY_S, 30 * DAY_S])
    before = st.one_of(st.integers(1, cut - 1), near.map(lambda d: max(cut - d - 1, 1)))
    after = st.one_of(st.just(cut), st.integers(cut, cut + 90 * DAY_S), near.map(lambda d: cut + d))

    def events(times, max_size):
        return st.lists(
            st.tuples(lead_ids, st.sampled_from(TYPES), times, values), max_size=max_size
        )

    def changes(times, max_size):
        return st.lists(
            st.tuples(lead_ids, st.sampled_from(CHANGE_STAGES), times), max_size=max_size
        )

    return {
        "cut": cut,
        "past_events": draw(events(before, 15)),
        "past_changes": draw(changes(before, 4)),
        "future_a": (draw(events(after, 8)), draw(changes(after, 3))),
        "future_b": (draw(events(after, 8)), draw(changes(after, 3))),
        "back_days": draw(st.lists(st.sampled_from([1, 7, 13, 30, 45]), max_size=2, unique=True)),
    }


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timelines())
def test_rows_at_or_after_as_of_never_change_a_feature(t) -> None:
    """Adding, deleting or changing any event or stage change at or after the cut leaves every
    feature of every point at or before the cut unchanged (exactly, bit for bit)."""
    points = _points(t["cut"], t["back_days"])
    ev_a, sc_a = t["future_a"]
    ev_b, sc_b = t["future_b"]
    a = _features(t["past_events"] + ev_a, t["past_changes"] + sc_a, points)
    b = _features(t["past_events"] + ev_b, t["past_changes"] + sc_b, points)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    past=st.lists(
        st.tuples(lead_ids, st.sampled_from(TYPES), st.integers(1, 60 * DAY_S - 1), values),
        min_size=1,
        max_size=15,
    ),
    k=st.integers(0, 14),
    shift=st.integers(0, 30 * DAY_S),
)
def test_moving_a_past_event_to_or_past_as_of_is_the_same_as_deleting_it(past, k, shift) -> None:
    cut = 60 * DAY_S
    k = k % len(past)
    lead, etype, _, value = past[k]
    rest = [*past[:k], *past[k + 1 :]]
    points = _points(cut, [3])
    moved = _features([*rest, (lead, etype, cut + shift, value)], [], points)
    deleted = _features(rest, [], points)
    pd.testing.assert_frame_equal(moved, deleted, check_exact=True)


def test_event_exactly_at_as_of_is_excluded() -> None:
    cut = 60 * DAY_S
    points = _points(cut, [])
    at = _features([(1, "demo_request", cut, 5.0)], [], points)
    none = _features([], [], points)
    pd.testing.assert_frame_equal(at, none, check_exact=True)
    just_before = _features([(1, "demo_request", cut - 1, 5.0)], [], points)
    assert just_before.loc[0, "n_demo_request_7d"] == 1
    assert just_before.loc[0, "days_since_last_demo_request"] == pytest.approx(1 / DAY_S)


def test_stage_change_exactly_at_as_of_is_not_seen() -> None:
    cut = 60 * DAY_S
    points = _points(cut, [])
    before = _features([], [(1, "disqualified", 10 * DAY_S)], points)
    at = _features([], [(1, "disqualified", 10 * DAY_S), (1, "lead", cut)], points)
    pd.testing.assert_frame_equal(before, at, check_exact=True)
    assert before.loc[0, "current_stage"] == "disqualified"
    assert before.loc[0, "n_disqualifications"] == 1


def test_training_rows_do_not_change_when_the_future_is_cut_off(crm) -> None:
    """Truncating the data at day D leaves every feature of points before D unchanged."""
    cut = pd.Timestamp("2024-10-01")
    full = build_training_set(crm, "prospect", end="2024-09-30")
    e = crm.events.loc[crm.events["occurred_at"] < cut]
    s = crm.stage_changes.loc[crm.stage_changes["changed_at"] < cut]
    truncated = validate(crm.leads.loc[crm.leads["created_at"] < cut], e, s)
    points = full.frame[["lead_id", "as_of"]]
    f_full = build_features(crm.leads, crm.events, crm.stage_changes, points, spec=full.spec)
    f_cut = build_features(
        truncated.leads, truncated.events, truncated.stage_changes, points, spec=full.spec
    )
    pd.testing.assert_frame_equal(f_full, f_cut, check_exact=True)


# --- labels on hand-built timelines --------------------------------------------------------------

AS_OF = pd.Timestamp("2024-03-01")


def _data(changes, end="2024-12-31"):
    """Lead 1 created on Jan 1; lead 2, created at ``end``, fixes the data's end (events
    never move it)."""
    return validate(
        pd.DataFrame({"lead_id": [1, 2], "created_at": ["2024-01-01", end]}),
        pd.DataFrame({"lead_id": [1], "event_type": ["web_visit"], "occurred_at": ["2024-01-02"]}),
        pd.DataFrame(
            [(1, "lead", "2024-01-01"), (2, "lead", end), *changes],
            columns=["lead_id", "stage", "changed_at"],
        ),
    )


def _label(changes, *, horizon=30, gap=0, as_of=AS_OF, end="2024-12-31"):
    pts = pd.DataFrame({"lead_id": [1], "as_of": [as_of]})
    lab = build_labels(_data(changes, end), pts, "prospect", horizon_days=horizon, gap_days=gap)
    return lab["promoted_to_prospect"].iloc[0], bool(lab["censored"].iloc[0])


@pytest.mark.parametrize(
    ("promoted_at", "expected"),
    [
        (AS_OF, 0),  # at as_of: not inside (as_of, as_of + H]
        (AS_OF + S, 1),
        (AS_OF + pd.Timedelta(days=30), 1),  # exactly as_of + H
        (AS_OF + pd.Timedelta(days=30) + S, 0),  # one second past the window
        (None, 0),
    ],
)
def test_label_window_edges(promoted_at, expected: int) -> None:
    changes = [(1, "prospect", promoted_at)] if promoted_at is not None else []
    assert _label(changes) == (expected, False)


def test_promoted_exactly_at_as_of_gets_no_point() -> None:
    data = _data([(1, "prospect", "2024-03-01")])
    pts = build_observation_points(data, "prospect", "2024-02-16", "2024-03-15", cadence_days=7)
    # Grid Feb 16, 23, Mar 1, 8, 15: the lead is a prospect from Mar 1 on.
    assert pts["as_of"].dt.strftime("%m-%d").tolist() == ["02-16", "02-23"]
    lab = build_labels(data, pts, "prospect", horizon_days=7)
    assert lab["promoted_to_prospect"].tolist() == [0, 1]  # Feb 23 + 7 days = Mar 1, inclusive


def test_skipping_a_stage_counts_as_promotion() -> None:
    assert _label([(1, "opportunity", "2024-03-10")]) == (1, False)
    assert _label([(1, "customer", "2024-03-10")]) == (1, False)
    assert _label([(1, "disqualified", "2024-03-10")]) == (0, False)


def test_gap_moves_the_window() -> None:
    gap = pd.Timedelta(days=7)
    assert _label([(1, "prospect", AS_OF + gap)], gap=7) == (0, False)  # promoted during the gap
    assert _label([(1, "prospect", AS_OF + gap + S)], gap=7) == (1, False)
    h = pd.Timedelta(days=30)
    assert _label([(1, "prospect", AS_OF + gap + h)], gap=7) == (1, False)
    assert _label([(1, "prospect", AS_OF + gap + h + S)], gap=7) == (0, False)


def test_recycled_lead_is_labelled_by_its_first_promotion() -> None:
    # Disqualified in Feb, recycled in March, promoted in April.
    changes = [
        (1, "disqualified", "2024-02-01"),
        (1, "lead", "2024-03-05"),
        (1, "prospect", "2024-04-02"),
    ]
    data = _data(changes)
    pts = build_observation_points(data, "prospect", "2024-01-01", "2024-06-01", cadence_days=7)
    days = pts["as_of"].dt.strftime("%m-%d").tolist()
    # No points while disqualified (Feb 5 .. Mar 4), none at or after the promotion.
    assert days == ["01-08", "01-15", "01-22", "01-29", "03-11", "03-18", "03-25", "04-01"]
    lab = build_labels(data, pts, "prospect", horizon_days=30)
    assert lab["promoted_to_prospect"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_no_points_after_the_first_promotion_even_when_recycled() -> None:
    changes = [
        (1, "prospect", "2024-02-01"),
        (1, "disqualified", "2024-02-20"),
        (1, "lead", "2024-03-20"),
        (1, "prospect", "2024-05-01"),
    ]
    data = _data(changes)
    pts = build_observation_points(data, "prospect", "2024-01-01", "2024-06-01", cadence_days=7)
    # Recycled on Mar 20, but promoted before: no points in March or April.
    assert pts["as_of"].dt.strftime("%m-%d").tolist() == ["01-08", "01-15", "01-22", "01-29"]
    lab = build_labels(data, pts, "prospect", horizon_days=30)
    assert lab["promoted_to_prospect"].tolist() == [1, 1, 1, 1]


def test_censoring_at_the_data_end() -> None:
    end = "2024-03-31"  # the late event's instant is the data's end
    assert _label([], end=end) == (0, False)  # as_of + 30 days == end: fully observed
    assert _label([], end=end, as_of=AS_OF + S) == (pd.NA, True)
    assert _label([(1, "prospect", "2024-03-20")], end=end, as_of=AS_OF + S) == (pd.NA, True)
    assert _label([], end=end, gap=1) == (pd.NA, True)  # the gap counts too


def test_training_drops_and_counts_censored_points() -> None:
    data = _data([], end="2024-03-31")
    cfg = LeadMLConfig()
    ts = build_training_set(data, "prospect", "2024-01-01", "2024-03-31", cfg)
    # Grid Jan 8 .. Mar 25 (12 instants); as_of + 30 days <= Mar 31 holds up to Feb 26 (8).
    assert ts.summary["points_generated"] == 12
    assert ts.summary["censored"] == 4
    assert ts.summary["kept"] == len(ts.frame) == 8
    assert ts.frame["as_of"].max() == pd.Timestamp("2024-02-26")
    default = build_training_set(data, "prospect", config=cfg)
    assert default.summary["censored"] == 0
    assert default.frame["as_of"].max() <= pd.Timestamp("2024-03-01")
