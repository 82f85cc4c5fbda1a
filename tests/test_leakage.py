"""Leakage guard: planted leaks are found with their evidence, allow_columns keeps them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadml.data.leakage import LeakageError, LeakageReport, check_leakage, single_column_auc


@pytest.fixture
def table() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 600
    y = rng.integers(0, 2, n)
    # The sales team's call outcome: right 97% of the time.
    outcome = np.where(rng.random(n) < 0.97, y, 1 - y)
    return pd.DataFrame(
        {
            "visits": rng.poisson(2 + y),
            "country": rng.choice(["IN", "US", "AE"], n),
            "call_note": np.where(outcome == 1, "keen on the course", "not reachable"),
            "Lead Status": rng.choice(["Open", "Working", "Nurture"], n),
            "Last Notable Activity": rng.choice(["Email Opened", "Modified"], n),
            "referrer": np.where(y == 1, rng.choice(["Closed by Horizzon", "x"], n), "y"),
            "enrolled": y,
        }
    )


def test_planted_leak_is_flagged_with_its_auc(table: pd.DataFrame) -> None:
    report = check_leakage(table, "enrolled")
    finding = report.finding("call_note")
    assert finding is not None and finding.excluded
    assert finding.auc == pytest.approx(0.97, abs=0.02)
    assert "out-of-fold AUC 0.9" in finding.evidence[0]
    # Honest columns are measured but not flagged.
    assert report.finding("visits") is None and report.finding("country") is None
    assert 0.55 < report.aucs["visits"] < 0.85
    assert abs(report.aucs["country"] - 0.5) < 0.08


def test_post_outcome_names_and_values_are_flagged(table: pd.DataFrame) -> None:
    report = check_leakage(table, "enrolled")
    status = report.finding("Lead Status")
    assert status is not None and status.excluded
    assert status.auc is not None and status.auc < 0.7
    assert any("'status'" in e for e in status.evidence)
    last = report.finding("Last Notable Activity")
    assert last is not None and any("last-state snapshot" in e for e in last.evidence)
    referrer = report.finding("referrer")
    assert referrer is not None
    assert any("Closed by Horizzon" in e for e in referrer.evidence)
    assert set(report.excluded) == {"call_note", "Lead Status", "Last Notable Activity", "referrer"}


def test_allow_columns_keeps_a_flagged_column_on_record(table: pd.DataFrame) -> None:
    report = check_leakage(table, "enrolled", allow_columns=["Lead Status"])
    assert "Lead Status" not in report.excluded
    assert report.allowed == ("Lead Status",)
    text = str(report)
    assert "KEPT (allow_columns)" in text and "'call_note'" in text


def test_report_round_trips_through_a_dict(table: pd.DataFrame) -> None:
    report = check_leakage(table, "enrolled", allow_columns=["referrer"])
    again = LeakageReport.from_dict(report.to_dict())
    assert again == report


def test_an_id_column_is_not_a_leak_out_of_fold() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    ids = pd.Series([f"id-{i}" for i in range(300)])
    assert single_column_auc(ids, y) == pytest.approx(0.5, abs=0.01)


def test_non_monotone_numeric_signal_is_seen() -> None:
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, 2000)
    y = (np.abs(x) < 0.3).astype(int)
    assert single_column_auc(pd.Series(x), y) > 0.95


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=10_000))
def test_noise_never_crosses_the_threshold(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 200
    table = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.choice(list("pqrstuvw"), n),
            "y": rng.integers(0, 2, n),
        }
    )
    table.loc[0, "y"], table.loc[1, "y"] = 0, 1
    report = check_leakage(table, "y", name_rules=(), value_pattern=None)
    assert report.findings == ()


def test_bad_target_and_unknown_columns_are_named() -> None:
    t = pd.DataFrame({"x": [1, 2, 3], "y": ["won", "lost", "open"]})
    with pytest.raises(LeakageError, match="'y' must have exactly two values"):
        check_leakage(t, "y")
    with pytest.raises(LeakageError, match="target column 'converted' not in the table"):
        check_leakage(t, "converted")
    t2 = pd.DataFrame({"x": [1, 2, 3, 4], "y": [0, 1, 0, 1]})
    with pytest.raises(LeakageError, match="unknown column.*'Tagz'"):
        check_leakage(t2, "y", allow_columns=["Tagz"])
    t3 = pd.DataFrame({"x": [1, 2], "y": [0, None]})
    with pytest.raises(LeakageError, match="1 missing values"):
        check_leakage(t3, "y")
