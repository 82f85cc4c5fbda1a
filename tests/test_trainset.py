"""Training sets on synthetic data agree with labels computed the slow, obvious way."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadml.contracts import FUNNEL
from leadml.timeline import build_observation_points
from leadml.trainset import build_scoring_set, build_training_set


def _slow_label(
    sc: pd.DataFrame, lead_id: int, as_of: pd.Timestamp, horizon: int, target: str
) -> int:
    rows = sc.loc[sc["lead_id"] == lead_id]
    later = FUNNEL[FUNNEL.index(target) :]
    hit = rows.loc[
        rows["stage"].isin(later)
        & (rows["changed_at"] > as_of)
        & (rows["changed_at"] <= as_of + pd.Timedelta(days=horizon))
    ]
    return int(len(hit) > 0)


def test_labels_and_censoring_match_the_raw_stage_changes(crm) -> None:
    for transition, horizon in (("prospect", 30), ("opportunity", 60)):
        ts = build_training_set(crm, transition)
        s = ts.summary
        end = crm.end
        points = build_observation_points(crm, transition, s["start"], s["end"])
        censored = int((points["as_of"] + pd.Timedelta(days=horizon) > end).sum())
        assert s["censored"] == censored > 0
        assert s["kept"] == len(ts.frame) == s["points_generated"] - censored
        sample = ts.frame.sample(300, random_state=0)
        slow = [
            _slow_label(crm.stage_changes, r.lead_id, r.as_of, horizon, transition)
            for r in sample.itertuples()
        ]
        assert sample[ts.label].tolist() == slow
        # Weekly hazard of promotion: a few percent per point, and the generator's funnel rates.
        assert 0.005 < s["positive_rate"] < 0.08


def test_positive_rate_matches_the_generators_funnel(crm) -> None:
    """Leads that ever reach prospect (generator truth) = leads with a positive point, up to
    those promoted in their first week, within the censored tail, or before the first point."""
    ts = build_training_set(crm, "prospect")
    positives = set(ts.frame.loc[ts.frame[ts.label] == 1, "lead_id"])
    ever = set(crm.stage_changes.loc[crm.stage_changes["stage"] != "lead", "lead_id"])
    promoted = set(crm.stage_changes.loc[crm.stage_changes["stage"].isin(FUNNEL[1:]), "lead_id"])
    assert positives <= promoted <= ever
    assert len(positives) / max(len(promoted), 1) > 0.6


def test_training_set_is_sorted_and_deterministic(crm, tmp_path) -> None:
    a = build_training_set(crm, "prospect").frame
    b = build_training_set(crm, "prospect").frame
    assert a[["lead_id", "as_of"]].equals(a.sort_values(["lead_id", "as_of"])[["lead_id", "as_of"]])
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
    assert set(frame["stage"]) <= {"lead", "prospect"}
    assert np.all(frame["as_of"] == as_of)
