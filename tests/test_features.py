"""Hand-computed expectations for every feature family, and the spec's sentences."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from leadml.config import FeaturesConfig
from leadml.contracts import validate
from leadml.features import (
    FeatureSpec,
    IdentifierColumnsExcluded,
    build_features,
    make_feature_spec,
)

AS_OF = pd.Timestamp("2024-04-01")


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
        (1, "pricing_page_view", "2024-03-31T23:59:59"),  # 1 s before as_of: counts
        (1, "pricing_page_view", "2024-04-01T00:00:00"),  # exactly at as_of: excluded
        (1, "pricing_page_view", "2024-03-28"),  # 4 days before
        (1, "pricing_page_view", "2024-03-01"),  # 31 days before: only the 90d window
        (1, "email_open", "2024-03-28T10:00:00"),  # same day as a pricing view
        (1, "email_open", "2024-01-05"),  # 87 days before
        (1, "email_open", "2024-05-01"),  # future
        (2, "demo_request", "2024-03-30"),
    ]
    events = pd.DataFrame(ev, columns=["lead_id", "event_type", "occurred_at"])
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


def _features(data, **cfg):
    points = pd.DataFrame({"lead_id": [1, 2], "as_of": [AS_OF, AS_OF]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifierColumnsExcluded)
        spec = make_feature_spec(data, FeaturesConfig(**cfg))
    f = build_features(data.leads, data.events, data.stage_changes, points, spec=spec)
    return f.set_index("lead_id"), spec


def test_window_counts_exclude_as_of_and_future(tiny) -> None:
    f, _ = _features(tiny)
    assert f.loc[1, "n_pricing_page_view_7d"] == 2
    assert f.loc[1, "n_pricing_page_view_30d"] == 2
    assert f.loc[1, "n_pricing_page_view_90d"] == 3
    assert f.loc[1, "n_email_open_7d"] == 1
    assert f.loc[1, "n_email_open_90d"] == 2
    assert f.loc[2, "n_demo_request_7d"] == 1
    assert f.loc[2, "n_pricing_page_view_90d"] == 0


def test_recency_in_days_and_missing_when_never(tiny) -> None:
    f, _ = _features(tiny)
    assert f.loc[1, "days_since_last_pricing_page_view"] == pytest.approx(1 / 86400)
    assert f.loc[2, "days_since_last_demo_request"] == 2.0
    assert math.isnan(f.loc[2, "days_since_last_pricing_page_view"])


def test_active_days_trend_and_decay(tiny) -> None:
    f, spec = _features(tiny, half_life_days=7.0, trend_days=14)
    # Dates with events before as_of in the last 90 days: Jan 5, Mar 1, Mar 28, Mar 31.
    assert f.loc[1, "n_active_days_90d"] == 4
    # Last 14 days: Mar 28 (2 events), Mar 31 -> 3; the 14 days before: none.
    assert f.loc[1, "engagement_trend_14d"] == 3
    ages = np.array([1, 4 * 86400, 31 * 86400, (4 * 86400 - 10 * 3600), 87 * 86400]) / 86400
    assert f.loc[1, "engagement_decayed"] == pytest.approx(np.sum(2.0 ** (-ages / 7.0)), rel=1e-9)
    assert f.loc[2, "engagement_decayed"] == pytest.approx(2.0 ** (-2 / 7.0), rel=1e-9)


def test_lifecycle(tiny) -> None:
    f, _ = _features(tiny)
    assert f.loc[1, "tenure_days"] == 91
    assert f.loc[1, "days_in_stage"] == 21  # recycled on Mar 11; the Apr 1 promotion is unknown
    assert f.loc[1, "n_disqualifications"] == 1
    assert f.loc[1, "current_stage"] == "lead"
    assert f.loc[2, "tenure_days"] == 6.5
    assert f.loc[2, "n_disqualifications"] == 0


def test_fit_attributes_and_identifier_exclusion(tiny) -> None:
    with pytest.warns(IdentifierColumnsExcluded, match="email"):
        spec = make_feature_spec(tiny)
    assert "email" not in spec.names
    assert spec.kinds["company_size"] == "categorical"
    assert spec.kinds["employees"] == "numeric"
    f, _ = _features(tiny)
    assert f.loc[1, "company_size"] == "11-50"
    assert isinstance(f["company_size"].dtype, pd.CategoricalDtype)


def test_configured_exclusions(tiny) -> None:
    f, spec = _features(tiny, exclude_columns=("employees",))
    assert "employees" not in spec.names and "employees" in spec.excluded_columns


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
    assert list(f.columns) == ["lead_id", "as_of", *spec.names]
    assert list(f["company_size"].cat.categories) == list(spec.levels["company_size"])
    assert pd.isna(f.loc[0, "company_size"])
    assert f.loc[1, "n_demo_request_7d"] == 0


def test_spec_round_trips_through_json(tiny) -> None:
    import json

    _, spec = _features(tiny)
    again = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec


def test_every_feature_has_a_group_and_a_sentence(tiny) -> None:
    f, spec = _features(tiny)
    for name in spec.names:
        text = spec.describe(name, f.loc[1, name])
        assert text and "{" not in text, name
        assert spec.groups[name]
    assert spec.describe("n_email_open_7d", 1) == "Opened an email once in the last 7 days"
    assert spec.describe("days_since_last_demo_request", float("nan")) == "Never requested a demo"
    assert spec.describe("days_since_last_demo_request", 3.2) == "Last requested a demo 3 days ago"
    assert spec.describe("company_size", "1-10") == "Company size: 1-10"
    assert spec.groups["n_pricing_page_view_7d"] == spec.groups["days_since_last_pricing_page_view"]
