"""Time is the enemy: nothing at or after as_of may change a feature of that point."""

from __future__ import annotations

import warnings

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadml.contracts import validate
from leadml.features import IdentifierColumnsExcluded, build_features, make_feature_spec
from leadml.trainset import build_training_set

BASE = pd.Timestamp("2024-01-01")
AS_OF = pd.Timestamp("2024-03-01")
TYPES = ["email_open", "pricing_page_view", "demo_request"]
STAGES = ["prospect", "disqualified", "lead", "opportunity"]

seconds = st.integers(min_value=0, max_value=120 * 86400)  # 2024-01-01 .. 2024-04-30
event = st.tuples(st.integers(1, 3), st.sampled_from(TYPES), seconds)
change = st.tuples(st.integers(1, 3), st.sampled_from(STAGES), seconds)


def _tables(events, changes):
    leads = pd.DataFrame(
        {
            "lead_id": [1, 2, 3],
            "created_at": [BASE, BASE, BASE],
            "industry": ["a", "b", "a"],
        }
    )
    ev = pd.DataFrame(
        [(i, t, BASE + pd.Timedelta(seconds=s)) for i, t, s in events],
        columns=["lead_id", "event_type", "occurred_at"],
    )
    sc = pd.DataFrame(
        [(i, "lead", BASE) for i in (1, 2, 3)]
        + [(i, s, BASE + pd.Timedelta(seconds=x + 1)) for i, s, x in changes],
        columns=["lead_id", "stage", "changed_at"],
    ).drop_duplicates(["lead_id", "changed_at"])
    return leads, ev, sc


def _features(events, changes, spec=None):
    data = validate(*_tables(events, changes))
    if spec is None:
        spec = make_feature_spec(data)
    points = pd.DataFrame({"lead_id": [1, 2, 3], "as_of": [AS_OF] * 3})
    return build_features(data.leads, data.events, data.stage_changes, points, spec=spec), spec


def _spec():
    ev = [(1, t, 10) for t in TYPES]
    data = validate(*_tables(ev, []))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifierColumnsExcluded)
        return make_feature_spec(data)


SPEC = _spec()
PAST = int((AS_OF - BASE).total_seconds())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    past_events=st.lists(event.filter(lambda e: e[2] < PAST), max_size=15),
    future_events=st.lists(
        event.map(lambda e: (e[0], e[1], PAST + e[2] % (60 * 86400))), max_size=10
    ),
    past_changes=st.lists(change.filter(lambda c: c[2] + 1 < PAST), max_size=4),
    future_changes=st.lists(
        change.map(lambda c: (c[0], c[1], PAST + c[2] % (60 * 86400))), max_size=4
    ),
)
def test_events_and_stage_changes_at_or_after_as_of_never_change_features(
    past_events, future_events, past_changes, future_changes
) -> None:
    before, _ = _features(past_events, past_changes, SPEC)
    after, _ = _features(past_events + future_events, past_changes + future_changes, SPEC)
    pd.testing.assert_frame_equal(before, after)


@settings(max_examples=100, deadline=None)
@given(
    past_events=st.lists(event.filter(lambda e: e[2] < PAST), min_size=1, max_size=15),
    k=st.integers(0, 14),
    shift=st.integers(0, 30 * 86400),
)
def test_moving_a_past_event_into_the_future_is_seen_as_removed(past_events, k, shift) -> None:
    k = k % len(past_events)
    lead, etype, _ = past_events[k]
    moved = [*past_events[:k], *past_events[k + 1 :], (lead, etype, PAST + shift)]
    removed = [*past_events[:k], *past_events[k + 1 :]]
    a, _ = _features(moved, [], SPEC)
    b, _ = _features(removed, [], SPEC)
    pd.testing.assert_frame_equal(a, b)


def test_event_exactly_at_as_of_is_excluded() -> None:
    at, _ = _features([(1, "demo_request", PAST)], [], SPEC)
    none, _ = _features([], [], SPEC)
    pd.testing.assert_frame_equal(at, none)
    just_before, _ = _features([(1, "demo_request", PAST - 1)], [], SPEC)
    assert just_before.loc[0, "n_demo_request_7d"] == 1


def test_training_rows_do_not_change_when_the_future_is_cut_off(crm) -> None:
    """Truncating the data after day D leaves every feature of points before D unchanged."""
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
    pd.testing.assert_frame_equal(f_full, f_cut)
