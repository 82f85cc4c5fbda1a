"""Hand-computed expectations for every feature family, a brute-force cross-check, and the spec."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from leadml.config import FeaturesConfig
from leadml.data.contracts import STAGES, DataContractError, validate
from leadml.data.features import (
    FeatureInputError,
    FeatureSpec,
    IdentifierColumnsExcluded,
    build_features,
    feature_groups,
    make_feature_spec,
)

AS_OF = pd.Timestamp("2024-04-01")
DAY = pd.Timedelta(days=1)


@pytest.fixture
def tiny():
    leads = pd.DataFrame(
        {
            "lead_id": [1, 2],
            "created_at": ["2024-01-01", "2024-03-25T12:00:00"],
            "email": ["a@x.com", "b@y.com"],
            "company_size": ["11-50", "1-10"],
            "employees": [30.0, 4.0],
        }
    )
    ev = [
        (1, "pricing_page_view", "2024-03-31T23:59:59", 40.0),  # 1 s before as_of: counts
        (1, "pricing_page_view", "2024-04-01T00:00:00", 50.0),  # exactly at as_of: excluded
        (1, "pricing_page_view", "2024-03-28", 20.0),  # 4 days before
        (1, "pricing_page_view", "2024-03-01", 5.0),  # 31 days before: only the 90d window
        (1, "email_open", "2024-03-28T10:00:00", None),  # same date as a pricing view
        (1, "email_open", "2024-01-05", None),  # 87 days before
        (1, "email_open", "2024-05-01", None),  # future
        (2, "demo_request", "2024-03-30", None),
    ]
    events = pd.DataFrame(ev, columns=["lead_id", "event_type", "occurred_at", "value"])
    sc = pd.DataFrame(
        [
            (1, "lead", "2024-01-01"),
            (1, "disqualified", "2024-02-01"),
            (1, "lead", "2024-03-11"),
            (1, "prospect", "2024-04-01"),  # at as_of: not known yet for features
            (2, "lead", "2024-03-25T12:00:00"),
        ],
        columns=["lead_id", "stage", "changed_at"],
    )
    return validate(leads, events, sc)


def _spec(data, **cfg) -> FeatureSpec:
    cfg.setdefault("value_window_days", 30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifierColumnsExcluded)
        return make_feature_spec(data, FeaturesConfig(**cfg))


def _features(data, **cfg):
    spec = _spec(data, **cfg)
    points = pd.DataFrame({"lead_id": [1, 2], "as_of": [AS_OF, AS_OF]})
    f = build_features(data.leads, data.events, data.stage_changes, points, spec=spec)
    return f.set_index("lead_id"), spec


# --- engagement ----------------------------------------------------------------------------------


def test_window_counts_exclude_as_of_and_future(tiny) -> None:
    f, _ = _features(tiny)
    assert f.loc[1, "n_pricing_page_view_7d"] == 2
    assert f.loc[1, "n_pricing_page_view_30d"] == 2
    assert f.loc[1, "n_pricing_page_view_90d"] == 3
    assert f.loc[1, "n_email_open_7d"] == 1
    assert f.loc[1, "n_email_open_90d"] == 2
    assert f.loc[2, "n_demo_request_7d"] == 1
    assert f.loc[2, "n_pricing_page_view_90d"] == 0


def test_window_is_closed_at_as_of_minus_w_and_open_at_as_of() -> None:
    ev = [(1, "web_visit", AS_OF - 7 * DAY), (1, "web_visit", AS_OF - 7 * DAY - pd.Timedelta("1s"))]
    data = validate(
        pd.DataFrame({"lead_id": [1], "created_at": ["2024-01-01"]}),
        pd.DataFrame(ev, columns=["lead_id", "event_type", "occurred_at"]),
        pd.DataFrame({"lead_id": [1], "stage": ["lead"], "changed_at": ["2024-01-01"]}),
    )
    points = pd.DataFrame({"lead_id": [1], "as_of": [AS_OF]})
    f = build_features(data.leads, data.events, data.stage_changes, points, spec=_spec(data))
    assert f.loc[0, "n_web_visit_7d"] == 1  # [as_of - 7d, as_of)
    assert f.loc[0, "n_web_visit_30d"] == 2


def test_recency_in_days_and_missing_when_never(tiny) -> None:
    f, _ = _features(tiny)
    assert f.loc[1, "days_since_last_pricing_page_view"] == pytest.approx(1 / 86400)
    assert f.loc[2, "days_since_last_demo_request"] == 2.0
    assert np.isnan(f.loc[2, "days_since_last_pricing_page_view"])


def test_value_sums_over_their_window(tiny) -> None:
    f, spec = _features(tiny, value_window_days=30)
    # Values only exist for pricing_page_view: 40 + 20 inside 30 days; 5 is 31 days back and the
    # 50 at as_of is excluded.
    assert spec.value_types == ("pricing_page_view",)
    assert f.loc[1, "sum_pricing_page_view_value_30d"] == 60.0
    assert f.loc[2, "sum_pricing_page_view_value_30d"] == 0.0
    assert "sum_email_open_value_30d" not in spec.names
    _, none = _features(tiny, value_window_days=None)
    assert not [n for n in none.names if n.startswith("sum_")]


def test_active_days_trend_and_decay(tiny) -> None:
    f, _ = _features(tiny, half_life_days=7.0, trend_days=14)
    # UTC dates with events in [as_of - 90d, as_of): Jan 5, Mar 1, Mar 28 (two events), Mar 31.
    assert f.loc[1, "n_active_days_90d"] == 4
    # Last 14 days: Mar 28 (2 events), Mar 31 -> 3; the 14 days before (Mar 4..18): none.
    assert f.loc[1, "engagement_trend_14d"] == 3
    ages = np.array([1, 4 * 86400, 31 * 86400, (4 * 86400 - 10 * 3600), 87 * 86400]) / 86400
    assert f.loc[1, "engagement_decayed"] == pytest.approx(np.sum(2.0 ** (-ages / 7.0)), rel=1e-9)
    assert f.loc[2, "engagement_decayed"] == pytest.approx(2.0 ** (-2 / 7.0), rel=1e-9)
    assert f.loc[2, "n_active_days_90d"] == 1


def test_negative_trend() -> None:
    ev = [(1, "web_visit", AS_OF - d * DAY) for d in (20, 21, 22)] + [(1, "web_visit", AS_OF - DAY)]
    data = validate(
        pd.DataFrame({"lead_id": [1], "created_at": ["2024-01-01"]}),
        pd.DataFrame(ev, columns=["lead_id", "event_type", "occurred_at"]),
        pd.DataFrame({"lead_id": [1], "stage": ["lead"], "changed_at": ["2024-01-01"]}),
    )
    points = pd.DataFrame({"lead_id": [1], "as_of": [AS_OF]})
    f = build_features(data.leads, data.events, data.stage_changes, points, spec=_spec(data))
    assert f.loc[0, "engagement_trend_14d"] == 1 - 3


# --- lifecycle and fit -----------------------------------------------------------------------------


def test_lifecycle(tiny) -> None:
    f, _ = _features(tiny)
    assert f.loc[1, "tenure_days"] == 91
    assert f.loc[1, "days_in_stage"] == 21  # recycled on Mar 11; the Apr 1 promotion is unknown
    assert f.loc[1, "n_disqualifications"] == 1
    assert f.loc[1, "current_stage"] == "lead"
    assert f.loc[2, "tenure_days"] == 6.5
    assert f.loc[2, "days_in_stage"] == 6.5
    assert f.loc[2, "n_disqualifications"] == 0
    assert list(f["current_stage"].cat.categories) == list(STAGES)


def test_fit_attributes_and_identifier_exclusion(tiny) -> None:
    with pytest.warns(IdentifierColumnsExcluded, match="email"):
        spec = make_feature_spec(tiny)
    assert not [n for n in spec.names if n.startswith("sum_")]  # value features are opt-in
    assert "email" not in spec.names and "email" in spec.excluded_columns
    assert spec.kinds["company_size"] == "categorical"
    assert spec.kinds["employees"] == "numeric"
    f, _ = _features(tiny)
    assert f.loc[1, "company_size"] == "11-50"
    assert f.loc[2, "employees"] == 4.0
    assert isinstance(f["company_size"].dtype, pd.CategoricalDtype)
    assert f["employees"].dtype == np.float64


def test_identifier_heuristics_and_one_warning() -> None:
    n = 60
    rng = np.random.default_rng(0)
    leads = pd.DataFrame(
        {
            "lead_id": np.arange(n),
            "created_at": pd.Timestamp("2024-01-01"),
            "first_name": [f"P{i}" for i in range(n)],
            "contactEmail": [f"p{i}@x.com" for i in range(n)],
            "mobile_phone": [f"+1 555 {i:04d}" for i in range(n)],
            "company": rng.choice(["Acme", "Globex"], n),
            "company_size": rng.choice(["1-10", "11-50"], n),
            "lead_owner": rng.choice(["Ann", "Bob"], n),
            "street_address": [f"{i} Main St" for i in range(n)],
            "website_url": [f"https://x{i}.com" for i in range(n)],
            "signup_code": [f"code-{i}" for i in range(n)],  # mostly unique: identity, not signal
            "converted_at": pd.Timestamp("2024-02-01"),  # a timestamp: never a feature
            "constant": "x",
            "industry": rng.choice(["software", "retail"], n),
            "revenue_musd": rng.random(n),
        }
    )
    events = pd.DataFrame(
        {"lead_id": [0], "event_type": ["web_visit"], "occurred_at": ["2024-01-02"]}
    )
    sc = pd.DataFrame({"lead_id": np.arange(n), "stage": "lead", "changed_at": "2024-01-01"})
    data = validate(leads, events, sc)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec = make_feature_spec(data)
    ours = [w for w in caught if issubclass(w.category, IdentifierColumnsExcluded)]
    assert len(ours) == 1 and issubclass(IdentifierColumnsExcluded, UserWarning)
    assert spec.fit_columns == ("company_size", "industry", "revenue_musd")
    for col in (
        "first_name",
        "contactEmail",
        "mobile_phone",
        "company",
        "lead_owner",
        "street_address",
        "website_url",
        "signup_code",
        "converted_at",
        "constant",
    ):
        assert col in spec.excluded_columns and col in str(ours[0].message), col


def test_configured_exclusions_are_silent(tiny) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentifierColumnsExcluded)
        spec = make_feature_spec(
            tiny, FeaturesConfig(identifier_columns=("email",), exclude_columns=("employees",))
        )
    assert "employees" not in spec.names and "employees" in spec.excluded_columns


def test_rare_levels_fold_into_other_and_unseen_levels_are_missing() -> None:
    sizes = ["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d"]
    n = len(sizes)
    leads = pd.DataFrame({"lead_id": range(n), "created_at": "2024-01-01", "size": sizes})
    sc = pd.DataFrame({"lead_id": range(n), "stage": "lead", "changed_at": "2024-01-01"})
    ev = pd.DataFrame({"lead_id": [0], "event_type": ["web_visit"], "occurred_at": ["2024-01-02"]})
    data = validate(leads, ev, sc)
    spec = _spec(data, max_category_levels=3)
    assert spec.levels["size"] == ("a", "b", "other")
    points = pd.DataFrame({"lead_id": range(n), "as_of": AS_OF})
    f = build_features(data.leads, data.events, data.stage_changes, points, spec=spec)
    assert f["size"].astype(str).tolist() == ["a"] * 5 + ["b"] * 4 + ["other"] * 4
    scoring = data.leads.assign(size=["zzz"] + sizes[1:])
    f = build_features(scoring, data.events, data.stage_changes, points, spec=spec)
    assert f.loc[0, "size"] == "other"  # unseen, and the spec has an "other" level
    spec3 = _spec(data, max_category_levels=10)
    f = build_features(scoring, data.events, data.stage_changes, points, spec=spec3)
    assert pd.isna(f.loc[0, "size"])  # unseen, no "other" level: missing


def test_scoring_with_training_spec_keeps_columns_and_levels(tiny) -> None:
    _, spec = _features(tiny)
    # Scoring data with an unseen category, an unknown event type and no events of a known type.
    leads = tiny.leads.copy()
    leads.loc[0, "company_size"] = "10000+"
    events = tiny.events.copy()
    events["event_type"] = events["event_type"].astype(str).replace({"demo_request": "chat"})
    data = validate(leads, events, tiny.stage_changes)
    points = pd.DataFrame({"lead_id": [1, 2], "as_of": [AS_OF, AS_OF]})
    f = build_features(data.leads, data.events, data.stage_changes, points, spec=spec)
    train, _ = _features(tiny)
    assert list(f.columns) == ["lead_id", "as_of", *spec.names]
    assert f.dtypes.astype(str).tolist() == train.reset_index().dtypes.astype(str).tolist()
    assert list(f["company_size"].cat.categories) == list(spec.levels["company_size"])
    assert pd.isna(f.loc[0, "company_size"])
    assert f.loc[1, "n_demo_request_7d"] == 0
    assert f.loc[1, "engagement_decayed"] == 0  # the "chat" event is not in the vocabulary
    assert "n_chat_7d" not in f.columns


def test_scoring_events_without_a_value_column_sum_to_zero(tiny) -> None:
    _, spec = _features(tiny)
    points = pd.DataFrame({"lead_id": [1, 2], "as_of": [AS_OF, AS_OF]})
    events = tiny.events.drop(columns="value")
    f = build_features(tiny.leads, events, tiny.stage_changes, points, spec=spec)
    assert list(f.columns) == ["lead_id", "as_of", *spec.names]
    assert (f["sum_pricing_page_view_value_30d"] == 0).all()
    assert f.loc[0, "n_pricing_page_view_90d"] == 3


def test_leads_without_events_get_zero_counts_and_missing_recency(tiny) -> None:
    _, spec = _features(tiny)
    no_events = tiny.events.iloc[0:0]
    points = pd.DataFrame({"lead_id": [1, 2], "as_of": [AS_OF, AS_OF]})
    f = build_features(tiny.leads, no_events, tiny.stage_changes, points, spec=spec)
    counts = [
        n
        for n in spec.names
        if spec.groups[n] in (*spec.event_types, "engagement") and "since" not in n
    ]
    assert (f[counts] == 0).all().all()
    assert f[[n for n in spec.names if n.startswith("days_since")]].isna().all().all()


def test_rows_follow_the_points_order_and_keep_as_of(tiny) -> None:
    _, spec = _features(tiny)
    t = pd.to_datetime(
        ["2024-04-01 00:00:00.5", "2024-03-01", "2024-04-01", "2024-03-20"], format="ISO8601"
    )
    points = pd.DataFrame({"lead_id": [1, 1, 2, 1], "as_of": t})
    f = build_features(tiny.leads, tiny.events, tiny.stage_changes, points, spec=spec)
    assert f["lead_id"].tolist() == [1, 1, 2, 1]
    assert f["as_of"].tolist() == t.tolist()
    one = [
        build_features(tiny.leads, tiny.events, tiny.stage_changes, points.iloc[[i]], spec=spec)
        for i in range(4)
    ]
    pd.testing.assert_frame_equal(f, pd.concat(one, ignore_index=True))


def test_bad_points_are_clear_errors(tiny) -> None:
    _, spec = _features(tiny)
    args = (tiny.leads, tiny.events, tiny.stage_changes)
    with pytest.raises(FeatureInputError, match="missing column"):
        build_features(*args, pd.DataFrame({"lead_id": [1]}), spec=spec)
    with pytest.raises(FeatureInputError, match="not in the leads table"):
        build_features(*args, pd.DataFrame({"lead_id": [9], "as_of": [AS_OF]}), spec=spec)
    with pytest.raises(FeatureInputError, match="before their lead's created_at"):
        early = pd.DataFrame({"lead_id": [2], "as_of": [pd.Timestamp("2024-03-01")]})
        build_features(*args, early, spec=spec)
    assert issubclass(FeatureInputError, ValueError)


# --- a brute-force cross-check on random data ----------------------------------------------------


def _slow(data, spec: FeatureSpec, lead_id, as_of) -> dict:
    """Every engagement and lifecycle feature of one point, the obvious way."""
    ev = data.events.loc[(data.events["lead_id"] == lead_id) & (data.events["occurred_at"] < as_of)]
    out: dict = {}
    for t in spec.event_types:
        e = ev.loc[ev["event_type"] == t]
        for w in spec.windows_days:
            out[f"n_{t}_{w}d"] = float((e["occurred_at"] >= as_of - w * DAY).sum())
        out[f"days_since_last_{t}"] = (
            (as_of - e["occurred_at"].max()) / DAY if len(e) else float("nan")
        )
        if t in spec.value_types:
            inside = e.loc[e["occurred_at"] >= as_of - spec.value_window_days * DAY, "value"]
            out[f"sum_{t}_value_{spec.value_window_days}d"] = float(inside.fillna(0).sum())
    wmax, td = max(spec.windows_days), spec.trend_days
    recent = ev.loc[ev["occurred_at"] >= as_of - wmax * DAY, "occurred_at"]
    out[f"n_active_days_{wmax}d"] = float(recent.dt.floor("D").nunique())
    age = (as_of - ev["occurred_at"]) / DAY
    out["engagement_decayed"] = float(np.sum(2.0 ** (-age.to_numpy() / spec.half_life_days)))
    out[f"engagement_trend_{td}d"] = float(
        ((age < td).sum()) - ((age >= td) & (age < 2 * td)).sum()
    )
    created = data.leads.set_index("lead_id").loc[lead_id, "created_at"]
    sc = data.stage_changes.loc[
        (data.stage_changes["lead_id"] == lead_id) & (data.stage_changes["changed_at"] < as_of)
    ]
    out["tenure_days"] = (as_of - created) / DAY
    since = max(sc["changed_at"].max(), created) if len(sc) else created
    out["days_in_stage"] = (as_of - since) / DAY
    out["current_stage"] = sc["stage"].iloc[-1] if len(sc) else "lead"
    out["n_disqualifications"] = float((sc["stage"] == "disqualified").sum())
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_a_brute_force_reference_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_leads, n_events = 12, 600
    base = pd.Timestamp("2024-01-01")
    secs = lambda k, hi: rng.integers(0, hi, k) * pd.Timedelta("1s")  # noqa: E731
    created = base + secs(n_leads, 30 * 86400)
    leads = pd.DataFrame({"lead_id": np.arange(100, 100 + n_leads), "created_at": created})
    lead_of = rng.integers(0, n_leads, n_events)
    events = pd.DataFrame(
        {
            "lead_id": 100 + lead_of,
            "event_type": rng.choice(["a_click", "b_view", "c_demo"], n_events),
            "occurred_at": created[lead_of] + secs(n_events, 200 * 86400),
            "value": np.where(rng.random(n_events) < 0.5, rng.random(n_events) * 100, np.nan),
        }
    )
    changes = [(100 + i, "lead", created[i]) for i in range(n_leads)]
    for _ in range(30):
        i = int(rng.integers(0, n_leads))
        changes.append(
            (
                100 + i,
                str(rng.choice(["prospect", "disqualified", "lead"])),
                created[i] + secs(1, 200 * 86400)[0],
            )
        )
    sc = pd.DataFrame(changes, columns=["lead_id", "stage", "changed_at"])
    data = validate(leads, events, sc)
    spec = _spec(data, windows_days=(3, 30), trend_days=5, half_life_days=4.5, value_window_days=10)
    pts = pd.DataFrame(
        {"lead_id": 100 + rng.integers(0, n_leads, 50), "as_of": base + secs(50, 240 * 86400)}
    )
    pts = pts.loc[
        pts["as_of"] > leads.set_index("lead_id").loc[pts["lead_id"], "created_at"].to_numpy()
    ]
    fast = build_features(data.leads, data.events, data.stage_changes, pts, spec=spec)
    rows = fast.to_dict(orient="records")
    for i, r in enumerate(pts.itertuples()):
        for name, expected in _slow(data, spec, r.lead_id, r.as_of).items():
            got = rows[i][name]
            if isinstance(expected, str):
                assert got == expected, (name, i)
            elif np.isnan(expected):
                assert np.isnan(got), (name, i)
            else:
                assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), (name, i)


def test_features_do_not_depend_on_the_row_order_of_the_input(crm) -> None:
    """Exports arrive sorted by time, by lead, or not at all: the features are the same."""
    from leadml.data.contracts import CRMData

    spec = make_feature_spec(crm)
    as_of = crm.start + (crm.end - crm.start) / 2
    pts = crm.leads.loc[crm.leads["created_at"] < as_of, ["lead_id"]].assign(as_of=as_of)
    pts["as_of"] = pts["as_of"].astype("datetime64[ns]")

    def feats(events: pd.DataFrame, changes: pd.DataFrame) -> pd.DataFrame:
        d = CRMData(crm.leads, events, changes, crm.columns)
        return build_features(d.leads, d.events, d.stage_changes, pts, spec=spec)

    expected = feats(crm.events, crm.stage_changes)
    by_time = crm.events.sort_values("occurred_at", kind="stable").reset_index(drop=True)
    shuffled = crm.events.sample(frac=1.0, random_state=1).reset_index(drop=True)
    changes = crm.stage_changes.sample(frac=1.0, random_state=2).reset_index(drop=True)
    pd.testing.assert_frame_equal(feats(by_time, crm.stage_changes), expected)
    pd.testing.assert_frame_equal(feats(shuffled, changes), expected)


@pytest.mark.parametrize("seed", range(5))
def test_lead_key_order_is_a_stable_argsort(seed: int) -> None:
    from leadml._kernels import lead_key_order

    rng = np.random.default_rng(seed)
    pos = rng.integers(0, 50, 3000)
    secs = rng.integers(0, 20, 3000)  # many ties: stability matters
    if seed == 0:
        order = np.lexsort((secs, pos))
        pos, secs = pos[order], secs[order]  # already grouped: the counting pass alone
    keys = (pos << 32) | secs
    np.testing.assert_array_equal(lead_key_order(pos, keys), np.argsort(keys, kind="stable"))


def _window_pass(keys, kind, q_key, cuts, n_kinds=3):
    from leadml._kernels import window_features

    nq = len(q_key)
    spans = np.array([3 * 86400, 30 * 86400, 5 * 86400, 10 * 86400], dtype=np.int64)
    # Sentinels no output can hold: -7.5 (floats), -7 (the int64 seconds of the last row).
    out = (
        np.full((n_kinds, 2, nq), -7.5),
        np.full((n_kinds, nq), -7.5),
        *(np.full(nq, -7.5) for _ in range(3)),
        np.full(nq, -7, dtype=np.int64),
    )
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        window_features(keys, kind, q_key, int(lo), int(hi), spans, 1, 1_700_000_000, 1e-6, *out)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_window_pass_in_ranges_equals_one_pass(seed: int) -> None:
    """The window pass runs ranges of queries in threads side by side: any split, even inside
    one lead's queries or at a lead without rows, gives every column to the bit."""
    from leadml.data.features import _balanced_cuts

    rng = np.random.default_rng(seed)
    pos = np.sort(rng.integers(0, 40, 4000))
    keys = np.sort((pos << 32) | rng.integers(0, 60 * 86400, 4000))
    kind = rng.integers(0, 3, 4000).astype(np.int16)
    q_key = np.sort((rng.integers(0, 45, 300) << 32) | rng.integers(0, 70 * 86400, 300))
    whole = _window_pass(keys, kind, q_key, [0, 300])
    assert not any((a == (-7 if a.dtype.kind == "i" else -7.5)).any() for a in whole)  # all set
    for cuts in (
        [0, 1, 300],
        [0, 150, 151, 300],
        np.unique(np.r_[0, rng.integers(0, 300, 9), 300]),
    ):
        for a, b in zip(whole, _window_pass(keys, kind, q_key, cuts), strict=True):
            np.testing.assert_array_equal(a, b)
    for parts in (1, 2, 3, 7):
        cuts = _balanced_cuts(keys, q_key, parts, 6)
        assert cuts[0] == 0 and cuts[-1] == len(q_key) and np.all(np.diff(cuts) > 0)
        for a, b in zip(whole, _window_pass(keys, kind, q_key, cuts), strict=True):
            np.testing.assert_array_equal(a, b)


# --- the spec --------------------------------------------------------------------------------------


def test_spec_round_trips_through_json(tiny) -> None:
    _, spec = _features(tiny)
    again = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec


def test_every_feature_has_a_group_a_label_and_a_sentence(tiny) -> None:
    f, spec = _features(tiny)
    for name in spec.names:
        for lead in (1, 2):
            text = spec.describe(name, f.loc[lead, name])
            assert text and "{" not in text and "nan" not in text, (name, text)
        assert spec.groups[name] and spec.group_label(spec.groups[name])
    groups = feature_groups(spec)
    assert groups["pricing_page_view"] == [
        "n_pricing_page_view_7d",
        "n_pricing_page_view_30d",
        "n_pricing_page_view_90d",
        "days_since_last_pricing_page_view",
        "sum_pricing_page_view_value_30d",
    ]
    assert groups["company_size"] == ["company_size"]
    assert spec.group_label("pricing_page_view") == "Pricing page views"
    assert spec.group_label("company_size") == "Company size"


@pytest.mark.parametrize(
    ("feature", "value", "text"),
    [
        ("n_email_open_7d", 1, "Opened an email 1 time in the last 7 days"),
        ("n_email_open_30d", 3, "Opened an email 3 times in the last 30 days"),
        ("n_pricing_page_view_7d", 0, "Did not view the pricing page in the last 7 days"),
        ("days_since_last_demo_request", float("nan"), "Never requested a demo"),
        ("days_since_last_demo_request", 3.2, "Last requested a demo 3 days ago"),
        ("days_since_last_demo_request", 1.0, "Last requested a demo 1 day ago"),
        ("days_since_last_demo_request", 0.2, "Last requested a demo today"),
        ("company_size", "1-10", "Company size: 1-10"),
        ("company_size", float("nan"), "Company size unknown"),
        ("employees", 30.0, "Employees: 30"),
        (
            "engagement_trend_14d",
            -1.0,
            "1 fewer event in the last 14 days than in the 14 days before",
        ),
        (
            "engagement_trend_14d",
            4.0,
            "4 more events in the last 14 days than in the 14 days before",
        ),
        (
            "engagement_trend_14d",
            0.0,
            "As many events in the last 14 days as in the 14 days before",
        ),
        ("n_active_days_90d", 1, "Active on 1 day of the last 90"),
        ("n_disqualifications", 0, "Never disqualified before"),
        ("n_disqualifications", 2, "Disqualified 2 times before"),
        ("current_stage", "prospect", "Already qualified as a prospect"),
        ("current_stage", "lead", "Not qualified yet (still a lead)"),
        (
            "sum_pricing_page_view_value_30d",
            1234.0,
            "Pricing page views in the last 30 days: total value 1,234",
        ),
    ],
)
def test_sentences(tiny, feature: str, value, text: str) -> None:
    _, spec = _features(tiny)
    assert spec.describe(feature, value) == text


def test_string_lead_ids_and_placeholder_dates(tiny) -> None:
    _, spec = _features(tiny)
    text_events = tiny.events.assign(lead_id=tiny.events["lead_id"].map({1: "L-1", 2: "L-2"}))
    text_stages = tiny.stage_changes.assign(
        lead_id=tiny.stage_changes["lead_id"].map({1: "L-1", 2: "L-2"})
    )
    placeholder = pd.DataFrame(
        {
            "lead_id": ["L-2"],
            "event_type": ["email_open"],
            "occurred_at": [pd.Timestamp("1900-01-01")],
        }
    )
    # A 1900 placeholder date is a problem of the export, named with its row, not a feature.
    with pytest.raises(DataContractError, match=r"events\.occurred_at: 1 row dated before 1970"):
        validate(
            tiny.leads.assign(lead_id=["L-1", "L-2"]),
            pd.concat([text_events, placeholder]),
            text_stages,
        )
    as_text = validate(tiny.leads.assign(lead_id=["L-1", "L-2"]), text_events, text_stages)
    points = pd.DataFrame({"lead_id": ["L-2", "L-1"], "as_of": [AS_OF, AS_OF]})
    f = build_features(as_text.leads, as_text.events, as_text.stage_changes, points, spec=spec)
    ints, _ = _features(tiny)
    assert f["lead_id"].tolist() == ["L-2", "L-1"]
    assert f.loc[1, "n_pricing_page_view_90d"] == ints.loc[1, "n_pricing_page_view_90d"]
