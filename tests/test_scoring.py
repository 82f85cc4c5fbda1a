"""Batch scoring and explanations: exact SHAP, additivity, readable reasons, atomic output."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from leadml.bundle import save_bundle
from leadml.contracts import validate
from leadml.explain import additivity_error, contributions, group_contributions
from leadml.scoring import score, write_scores
from leadml.trainset import build_scoring_set

AS_OF = "2025-04-01"


@pytest.fixture(scope="module")
def models(trained):
    return {t: r.model for t, r in trained.items()}


@pytest.fixture(scope="module")
def scores(crm_medium, models):
    return score(crm_medium, AS_OF, models)


def test_contributions_are_additive_and_equal_shap(crm_medium, models) -> None:
    m = models["prospect"]
    X = build_scoring_set(crm_medium, AS_OF, spec=m.spec).head(300)
    X.loc[X.index[:20], "company_size"] = None  # missing categoricals route like LightGBM
    ours = contributions(m, X, "lightgbm")
    assert additivity_error(m, X, ours) < 1e-9
    ref = contributions(m, X, "shap")
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)


def test_output_columns_and_rules(scores) -> None:
    for col in (
        "lead_id",
        "as_of",
        "stage",
        "p_prospect",
        "p_opportunity",
        "score",
        "tier",
        "reasons",
        "model_version",
    ):
        assert col in scores.columns
    prospects = scores["stage"] == "prospect"
    assert scores.loc[prospects, "p_prospect"].isna().all()
    assert scores.loc[~prospects, "p_prospect"].notna().all()
    assert scores["score"].between(0, 100).all()
    assert set(scores["tier"]) <= set("ABCD")
    assert scores["score"].is_monotonic_decreasing
    # Leads are scored by the prospect model, prospects by the opportunity model.
    lead_scores = (100 * scores.loc[~prospects, "p_prospect"]).round().astype(int)
    assert (lead_scores == scores.loc[~prospects, "score"]).all()
    for rs in scores["reasons"]:
        signs = [r["direction"] for r in rs]
        assert signs == sorted(signs, key=lambda s: s != "+")  # positives first
        assert sum(s == "+" for s in signs) <= 4 and sum(s == "-" for s in signs) <= 2
        pos = [r["effect"] for r in rs if r["direction"] == "+"]
        assert pos == sorted(pos, reverse=True)
        assert all(r["text"] and "{" not in r["text"] for r in rs)


def test_effect_is_probability_change_without_the_group(crm_medium, models) -> None:
    from leadml.explain import reasons

    m = models["prospect"]
    X = build_scoring_set(crm_medium, AS_OF, spec=m.spec).head(5)
    contrib = contributions(m, X)
    g = group_contributions(m, contrib)
    margin = contrib.sum(axis=1)
    r = reasons(m, X, contrib)[0][0]
    expected = m.calibration(margin[:1])[0] - m.calibration(margin[:1] - g.loc[0, r["group"]])[0]
    assert r["effect"] == pytest.approx(expected, abs=1e-6)


def test_planted_high_intent_lead_is_explained_by_the_planted_behaviour(crm_medium, models) -> None:
    s = score(crm_medium, AS_OF, models)
    cold = s.loc[(s["stage"] == "lead") & (s["tier"] == "D")].iloc[0]["lead_id"]
    t = pd.Timestamp(AS_OF)
    planted = pd.DataFrame(
        {
            "lead_id": cold,
            "event_type": [
                "demo_request",
                "pricing_page_view",
                "pricing_page_view",
                "demo_request",
            ],
            "occurred_at": [t - pd.Timedelta(days=d) for d in (1, 2, 3, 4)],
        }
    )
    events = pd.concat([crm_medium.events, planted], ignore_index=True)
    data = validate(crm_medium.leads, events, crm_medium.stage_changes)
    after = score(data, AS_OF, models).set_index("lead_id")
    row = after.loc[cold]
    assert row["score"] > s.set_index("lead_id").loc[cold, "score"]
    top = [r["group"] for r in row["reasons"][:2]]
    assert {"demo_request", "pricing_page_view", "engagement"} & set(top), row["reasons"]


def test_csv_and_parquet_agree_and_reruns_are_byte_identical(
    crm_medium, models, scores, tmp_path
) -> None:
    write_scores(scores, tmp_path / "a.parquet")
    write_scores(score(crm_medium, AS_OF, models), tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    write_scores(scores, tmp_path / "a.csv")
    pq = pd.read_parquet(tmp_path / "a.parquet")
    csv = pd.read_csv(tmp_path / "a.csv")
    assert pq["lead_id"].tolist() == csv["lead_id"].tolist()
    assert pq["score"].tolist() == csv["score"].tolist()
    np.testing.assert_allclose(pq["p_opportunity"], csv["p_opportunity"], rtol=1e-5)
    first = pq["reasons"].iloc[0][0]
    assert csv["reason_1"].iloc[0].startswith(f"{first['direction']} {first['text']}")
    assert list(pq.columns[:9]) == [
        "lead_id",
        "as_of",
        "stage",
        "p_prospect",
        "p_opportunity",
        "score",
        "tier",
        "reasons",
        "model_version",
    ]


def test_failed_run_leaves_no_output_and_keeps_a_good_file(
    crm_medium, models, scores, tmp_path, monkeypatch
) -> None:
    import leadml.scoring as scoring

    out = tmp_path / "scores.parquet"
    write_scores(scores, out)
    good = out.read_bytes()
    calls = {"n": 0}
    real = scoring.reasons

    def boom(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "reasons", boom)
    from leadml.config import LeadMLConfig

    cfg = LeadMLConfig().with_overrides({"scoring": {"chunk_size": 100}})
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_scores(score(crm_medium, AS_OF, models, cfg), out, overwrite=True)
    assert out.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["scores.parquet"]
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_scores(scores, out)


def test_leads_without_events_get_scores(crm_medium, models) -> None:
    data = validate(crm_medium.leads, crm_medium.events.iloc[:0], crm_medium.stage_changes)
    s = score(data, AS_OF, models)
    assert len(s) > 0 and s["score"].notna().all()
    assert s["last_activity_at"].isna().all()


def test_as_of_before_any_data_is_a_clear_error(crm_medium, models) -> None:
    with pytest.raises(ValueError, match="nobody exists yet"):
        score(crm_medium, "2020-01-01", models)


@pytest.mark.slow
def test_cli_score_as_a_user_runs_it(crm_medium, models, tmp_path) -> None:
    from leadml.datasets import write_crm

    write_crm(crm_medium, tmp_path / "crm")
    for t, m in models.items():
        save_bundle(m, tmp_path / f"b-{t}")
    run = lambda *a: subprocess.run(
        [sys.executable, "-m", "leadml", *a], capture_output=True, text=True, cwd=tmp_path
    )  # noqa: E731
    ok = run(
        "score",
        "--data",
        "crm",
        "--as-of",
        AS_OF,
        "--out",
        "s.csv",
        "--model",
        "b-prospect",
        "--model",
        "opportunity=b-opportunity",
    )
    assert ok.returncode == 0, ok.stderr
    assert "scored" in ok.stdout and (tmp_path / "s.csv").exists()
    again = run(
        "score", "--data", "crm", "--as-of", AS_OF, "--out", "s.csv", "--model", "b-prospect"
    )
    assert (
        again.returncode == 2
        and again.stderr.startswith("error: ")
        and "Traceback" not in again.stderr
    )
    bad = run("score", "--data", "crm", "--as-of", AS_OF, "--out", "t.csv", "--model", "nope")
    assert (
        bad.returncode == 2
        and "neither an existing bundle" in bad.stderr
        and "Traceback" not in bad.stderr
    )
    missing = run(
        "score", "--data", "nowhere", "--as-of", AS_OF, "--out", "u.csv", "--model", "b-prospect"
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert not (tmp_path / "t.csv").exists() and not (tmp_path / "u.csv").exists()
