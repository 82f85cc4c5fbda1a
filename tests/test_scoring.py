"""Batch scoring: who is scored, the output contract, the pyfunc's rows, planted reasons,
CSV = Parquet, byte-identical reruns, atomic writes and the errors a user sees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from leadml.config import LeadMLConfig
from leadml.data.contracts import validate
from leadml.data.timeline import stage_at
from leadml.data.trainset import build_scoring_set
from leadml.explain.reasons import additivity_error, contributions
from leadml.jobs import load_models, run_score
from leadml.model.bundle import save_bundle
from leadml.serve.contract import OUTPUT_COLUMNS, ScoringError, write_scores
from leadml.serve.scoring import explain_lead, score, score_features

AS_OF = "2025-04-01"


@pytest.fixture(scope="module")
def models(trained):
    return {t: r.model for t, r in trained.items()}


@pytest.fixture(scope="module")
def scores(crm_medium, models):
    return score(crm_medium, AS_OF, models)


@pytest.fixture(scope="module")
def workdir(crm_medium, models, tmp_path_factory) -> Path:
    """The CRM as files and both models as bundles, as a nightly job finds them."""
    from leadml.datasets import write_crm

    root = tmp_path_factory.mktemp("job")
    write_crm(crm_medium, root / "crm")
    for t, m in models.items():
        save_bundle(m, root / f"bundle-{t}")
    return root


def model_args(root: Path) -> list[str]:
    return [str(root / "bundle-prospect"), f"opportunity={root / 'bundle-opportunity'}"]


def test_every_eligible_lead_is_scored_once_and_the_rest_are_counted(crm_medium, scores) -> None:
    leads = crm_medium.leads
    t = pd.Timestamp(AS_OF)
    alive = leads.loc[leads["created_at"] < t, "lead_id"].to_numpy()
    stage = stage_at(crm_medium, alive, t).to_numpy()
    eligible = set(alive[np.isin(stage, ["lead", "prospect"])].tolist())
    assert scores["lead_id"].is_unique and set(scores["lead_id"]) == eligible
    skipped = scores.attrs["skipped"]
    assert skipped["not created yet"] == int((leads["created_at"] >= t).sum())
    assert skipped["already opportunity"] == int((stage == "opportunity").sum())
    assert len(scores) + sum(skipped.values()) == len(leads)


def test_output_columns_rows_and_order(crm_medium, scores, models) -> None:
    assert list(scores.columns[: len(OUTPUT_COLUMNS)]) == list(OUTPUT_COLUMNS)
    for col in ("name", "company", "job_title", "lead_source", "owner"):
        assert col in scores.columns
    assert (scores["as_of"] == pd.Timestamp(AS_OF)).all()
    lead = scores["stage"] == "lead"
    assert set(scores["stage"]) == {"lead", "prospect"}
    assert scores.loc[~lead, "p_prospect"].isna().all()
    assert scores["p_opportunity"].notna().all() and scores.loc[lead, "p_prospect"].notna().all()
    # Score, tier and version come from the next stage's model.
    p_next = np.where(lead, scores["p_prospect"], scores["p_opportunity"])
    assert (scores["score"].to_numpy() == np.rint(100 * p_next).astype(int)).all()
    for stage, t in (("lead", "prospect"), ("prospect", "opportunity")):
        rows = scores["stage"] == stage
        assert (scores.loc[rows, "tier"] == models[t].tier(p_next[rows.to_numpy()])).all()
        assert scores.loc[rows, "model_version"].str.startswith(f"leadml-{t}@bundle:").all()
    order = scores.sort_values(["score", "lead_id"], ascending=[False, True])
    assert order.index.tolist() == list(range(len(scores)))
    for rs in scores["reasons"]:
        signs = [r["direction"] for r in rs]
        assert signs == sorted(signs, key=lambda s: s != "+")
        assert signs.count("+") <= 4 and signs.count("-") <= 2
        assert all(set(r) == {"group", "text", "direction", "effect", "evidence"} for r in rs)


def test_each_call_list_is_tiered_by_its_own_population(scores) -> None:
    """Leads are tiered by the prospect model among leads, prospects by the opportunity model
    among prospects: each list spreads over the tiers (A about the top tenth), rather than
    every prospect landing in A because the opportunity model's cut-offs were set on leads."""
    for stage in ("lead", "prospect"):
        tiers = scores.loc[scores["stage"] == stage, "tier"].value_counts(normalize=True)
        assert len(tiers) == 4, (stage, tiers)
        assert 0.02 <= tiers["A"] <= 0.25 and tiers["D"] >= 0.15, (stage, tiers)


def test_last_activity_is_the_latest_event_before_as_of(crm_medium, scores) -> None:
    ev = crm_medium.events
    before = ev.loc[ev["occurred_at"] < pd.Timestamp(AS_OF)]
    latest = before.groupby("lead_id")["occurred_at"].max()
    got = scores.set_index("lead_id")["last_activity_at"]
    np.testing.assert_array_equal(got.to_numpy(), latest.reindex(got.index).to_numpy())
    quiet = ~scores["lead_id"].isin(latest.index)
    assert scores.loc[quiet, "last_activity_at"].isna().all()
    one = scores.loc[~quiet].iloc[0]
    same = before.loc[
        (before["lead_id"] == one["lead_id"]) & (before["occurred_at"] == one["last_activity_at"])
    ]
    assert one["last_activity_type"] in set(same["event_type"].astype(str))


def test_real_models_explain_additively_and_the_engines_agree(crm_medium, models) -> None:
    m = models["prospect"]
    X = build_scoring_set(crm_medium, AS_OF, spec=m.spec).head(300)
    X.loc[X.index[:20], "industry"] = None  # missing categoricals route like LightGBM
    fast = contributions(m, X, "leadml")
    assert additivity_error(m, X, fast) < 1e-9
    # shap's default mode is pred_contrib itself (tests/test_explain.py checks all three).
    np.testing.assert_allclose(contributions(m, X, "lightgbm"), fast, rtol=0, atol=1e-9)


def test_score_features_gives_exactly_the_batch_rows(crm_medium, models, scores) -> None:
    """The MLflow pyfunc calls score_features: same rows, values and reasons as the file."""
    frame = build_scoring_set(crm_medium, AS_OF, spec=models["prospect"].spec)
    got = score_features(frame, models).sort_values("lead_id", ignore_index=True)
    want = scores[list(OUTPUT_COLUMNS)].sort_values("lead_id", ignore_index=True)
    pd.testing.assert_frame_equal(got, want)
    only = score_features(frame, {"prospect": models["prospect"]})
    assert set(only["stage"]) == {"lead"} and only["p_opportunity"].isna().all()
    leads = want.loc[want["stage"] == "lead"].set_index("lead_id")
    np.testing.assert_array_equal(
        only.set_index("lead_id")["score"], leads.loc[only["lead_id"], "score"]
    )


def test_chunking_never_changes_a_row(crm_medium, models, scores) -> None:
    cfg = LeadMLConfig().with_overrides({"scoring": {"chunk_size": 397}})
    small = score(crm_medium, AS_OF, models, cfg, engine="lightgbm")
    pd.testing.assert_frame_equal(small, scores)


def test_planted_high_intent_lead_is_explained_by_the_planted_behaviour(
    crm_medium, models, scores
) -> None:
    t = pd.Timestamp(AS_OF)
    recent = crm_medium.events.loc[crm_medium.events["occurred_at"] >= t - pd.Timedelta(days=90)]
    cold = scores.loc[
        (scores["stage"] == "lead")
        & (scores["tier"] == "D")
        & ~scores["lead_id"].isin(recent["lead_id"])
    ]
    lead = cold["lead_id"].iloc[0]
    planted = pd.DataFrame(
        {
            "lead_id": lead,
            "event_type": ["demo_request"] * 3 + ["pricing_page_view"] * 3,
            "occurred_at": [t - pd.Timedelta(days=d, hours=3) for d in (1, 2, 4, 1, 3, 5)],
        }
    )
    events = pd.concat([crm_medium.events, planted], ignore_index=True)
    data = validate(crm_medium.leads, events, crm_medium.stage_changes)
    after = score(data, AS_OF, models).set_index("lead_id").loc[lead]
    assert after["score"] > cold["score"].iloc[0]
    top = after["reasons"][0]
    assert top["direction"] == "+" and top["group"] in {"demo_request", "pricing_page_view"}, after[
        "reasons"
    ]
    assert "in the last 7 days" in top["text"] or "ago" in top["text"]


def test_csv_and_parquet_agree(scores, tmp_path) -> None:
    pq_path = write_scores(scores, tmp_path / "s.parquet")
    csv_path = write_scores(scores, tmp_path / "s.csv")
    a = pd.read_parquet(pq_path)
    b = pd.read_csv(csv_path, keep_default_na=False, na_values=[""])
    n = len(OUTPUT_COLUMNS)
    assert list(a.columns[:n]) == list(OUTPUT_COLUMNS)
    reason_cols = [f"reason_{k}" for k in range(1, 7)]
    at = OUTPUT_COLUMNS.index("reasons")
    assert list(b.columns) == [*OUTPUT_COLUMNS[:at], *reason_cols, *a.columns[at + 1 :]]
    assert a["lead_id"].tolist() == b["lead_id"].tolist()
    for col in ("stage", "score", "tier", "model_version", "name", "owner", "last_activity_type"):
        assert a[col].fillna("").astype(str).tolist() == b[col].fillna("").astype(str).tolist()
    for col in ("p_prospect", "p_opportunity", "base_score", "other_points"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-5)
    np.testing.assert_array_equal(
        pd.to_datetime(b["last_activity_at"]).to_numpy(), a["last_activity_at"].to_numpy()
    )
    for i in (0, len(a) // 2, len(a) - 1):
        rs = a["reasons"].iloc[i]
        texts = [f"{r['direction']} {r['text']} ({100 * r['effect']:+.1f} pts)" for r in rs]
        assert b.loc[i, reason_cols].fillna("").tolist() == texts + [""] * (6 - len(texts))
    meta = pq.read_schema(pq_path).metadata
    tiers = json.loads(meta[b"leadml.tier_info"])
    assert set(tiers) == set("ABCD") and set(tiers["A"]) == {"conversion_rate", "share"}
    assert meta[b"leadml.as_of"] == b"2025-04-01T00:00:00"
    assert meta[b"leadml.model_versions"].decode() == scores.attrs["model_versions"]
    assert json.loads(meta[b"leadml.horizon_days"]) == {"prospect": 30, "opportunity": 60}


def test_reruns_are_byte_identical_and_the_job_writes_what_the_api_writes(
    workdir, crm_medium, models, scores, tmp_path
) -> None:
    """Three independent runs (the fixture's, the job's and a fresh API call) give the same
    bytes, in both formats."""
    again = score(crm_medium, AS_OF, models)
    for ext in ("parquet", "csv"):
        job = tmp_path / f"job.{ext}"
        summary = run_score(workdir / "crm", job, as_of=AS_OF, model_specs=model_args(workdir))
        assert write_scores(scores, tmp_path / f"api.{ext}").read_bytes() == job.read_bytes()
        assert write_scores(again, tmp_path / f"again.{ext}").read_bytes() == job.read_bytes()
        assert summary.startswith(f"scored {len(scores):,} leads as of 2025-04-01 00:00:00")
        assert "skipped: " in summary and "already opportunity" in summary


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_a_run_that_dies_midway_leaves_no_output_and_keeps_a_good_file(
    workdir, scores, tmp_path, monkeypatch, failure
) -> None:
    import leadml.serve.scoring

    out = write_scores(scores, tmp_path / "scores.parquet")
    good = out.read_bytes()
    real = leadml.serve.scoring.explain_ranked
    calls = {"n": 0}

    def dies_in_the_second_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # one call per model per chunk: dies after a chunk was written
            raise failure("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(leadml.serve.scoring, "explain_ranked", dies_in_the_second_chunk)
    for target in (out, tmp_path / "new.csv"):
        calls["n"] = 0
        _fails_in_chunks_of_500(workdir, target, failure, "disk on fire")
        assert calls["n"] == 3
    assert out.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.parquet"]


def _fails_in_chunks_of_500(workdir, target, error: type, match: str) -> None:
    cfg = LeadMLConfig().with_overrides({"scoring": {"chunk_size": 500}})
    with pytest.raises(error, match=match):
        run_score(
            workdir / "crm",
            target,
            as_of=AS_OF,
            model_specs=model_args(workdir),
            overwrite=True,
            config=cfg,
        )


def test_a_write_that_fails_behind_stops_the_run_and_keeps_a_good_file(
    workdir, scores, tmp_path, monkeypatch
) -> None:
    """Chunks are written in a background thread: its error still ends the run, in the
    caller, with nothing half-written."""
    from leadml.serve.contract import ScoresWriter

    out = write_scores(scores, tmp_path / "scores.parquet")
    good = out.read_bytes()
    real = ScoresWriter.write
    calls = {"n": 0}

    def full_disk(self, chunk):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(self, chunk)

    monkeypatch.setattr(ScoresWriter, "write", full_disk)
    _fails_in_chunks_of_500(workdir, out, OSError, "No space left")
    assert calls["n"] == 2
    assert out.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.parquet"]


def test_an_existing_file_is_refused_before_any_work(tmp_path) -> None:
    out = tmp_path / "scores.csv"
    out.write_text("keep me")
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_score(tmp_path / "no-such-dir", out, model_specs=["no-such-bundle"])
    assert out.read_text() == "keep me"


def test_user_errors_are_clear(crm_medium, workdir, models, tmp_path) -> None:
    crm, out = workdir / "crm", tmp_path / "s.parquet"
    with pytest.raises(ValueError, match="neither an existing bundle directory nor an MLflow"):
        run_score(crm, out, as_of=AS_OF, model_specs=["nope"])
    with pytest.raises(ValueError, match="predicts 'opportunity', not 'prospect'"):
        run_score(crm, out, as_of=AS_OF, model_specs=[f"prospect={workdir / 'bundle-opportunity'}"])
    with pytest.raises(ValueError, match="two 'prospect' models"):
        load_models([str(workdir / "bundle-prospect")] * 2)
    with pytest.raises(ValueError, match="not a date or timestamp"):
        run_score(crm, out, as_of="next tuesday", model_specs=model_args(workdir))
    with pytest.raises(ValueError, match="no lead exists yet to score"):
        score(crm_medium, "2020-01-01", models)
    only_leads = tmp_path / "partial"
    only_leads.mkdir()
    (only_leads / "leads.parquet").write_bytes((crm / "leads.parquet").read_bytes())
    with pytest.raises(ValueError, match="no stage_changes.parquet or stage_changes.csv"):
        run_score(only_leads, out, as_of=AS_OF, model_specs=model_args(workdir))
    assert not out.exists()


def test_leads_without_events_are_scored_on_what_is_known(crm_medium, models) -> None:
    """An empty events table is refused (issue 16: a header-only export scored with a different
    tier mix and exit 0); deliberately allowed, leads are scored on what is known."""
    from leadml.config import LeadMLConfig
    from leadml.data.layout import LayoutWarning

    data = validate(crm_medium.leads, crm_medium.events.iloc[:0], crm_medium.stage_changes)
    with pytest.raises(ScoringError, match="events table: it has no rows"):
        score(data, AS_OF, models)
    allow = LeadMLConfig().with_overrides({"scoring": {"allow_layout_change": True}})
    with pytest.warns(LayoutWarning):
        s = score(data, AS_OF, models, allow)
    assert len(s) > 0 and s["score"].between(0, 100).all()
    assert s["last_activity_at"].isna().all() and s["last_activity_type"].isna().all()
    assert all(len(rs) > 0 for rs in s["reasons"].head(50))


def test_zero_padded_ids_are_scored_and_written_as_they_came(crm_medium, models, tmp_path):
    from leadml.serve.contract import read_scores

    def pad(df):
        return df.assign(lead_id=df["lead_id"].map(lambda i: f"{i:09d}"))

    padded = validate(pad(crm_medium.leads), pad(crm_medium.events), pad(crm_medium.stage_changes))
    s = score(padded, AS_OF, models)
    assert s["lead_id"].str.fullmatch(r"0\d{8}").all()
    for suffix in (".parquet", ".csv"):
        back = read_scores(write_scores(s, tmp_path / f"scores{suffix}"))
        assert back["lead_id"].astype(str).tolist() == s["lead_id"].tolist(), suffix


def test_default_as_of_is_now_in_utc_to_the_second(crm_medium, models) -> None:
    from leadml.config import LeadMLConfig
    from leadml.data.layout import LayoutWarning

    # Now is long after the synthetic data ends: refused, unless the user says so (loudly).
    with pytest.raises(ScoringError, match="stale") as e:
        score(crm_medium, None, {"prospect": models["prospect"]})
    assert "--allow-stale" in str(e.value) and str(crm_medium.end.date()) in str(e.value)
    allow = LeadMLConfig().with_overrides({"scoring": {"allow_stale": True}})
    before = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    with pytest.warns(LayoutWarning, match="scoring anyway"):
        s = score(crm_medium, None, {"prospect": models["prospect"]}, allow)
    after = pd.Timestamp.now(tz="UTC").tz_localize(None)
    as_of = s["as_of"].iloc[0]
    assert before <= as_of <= after and as_of == as_of.floor("s")
    assert set(s["stage"]) == {"lead"} and s.attrs["skipped"]["no opportunity model given"] > 0


def test_explain_lead_matches_the_scores_and_draws_a_waterfall(crm_medium, models, scores) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    row = scores.loc[scores["stage"] == "lead"].iloc[0]
    table, fig = explain_lead(row["lead_id"], crm_medium, AS_OF, models)
    try:
        assert isinstance(fig, Figure)
        assert set(table["group"]) == set(models["prospect"].spec.group_names)
        assert table.attrs["transition"] == "prospect"
        assert round(100 * table.attrs["p"]) == row["score"]
        top = table.loc[table["effect"] > 0].head(
            len([r for r in row["reasons"] if r["direction"] == "+"])
        )
        got = [(r["group"], r["text"]) for r in row["reasons"] if r["direction"] == "+"]
        assert list(zip(top["group"], top["text"], strict=True)) == got
        np.testing.assert_allclose(
            table.attrs["expected_value"] + table["contribution"].sum(), table.attrs["margin"]
        )
    finally:
        plt.close(fig)
    gone = scores["lead_id"].max() + 1000
    with pytest.raises(ValueError, match=f"no lead {gone}"):
        explain_lead(gone, crm_medium, AS_OF, models, plot=False)
    t = pd.Timestamp(AS_OF)
    stage = stage_at(crm_medium, crm_medium.leads["lead_id"], t)
    won = crm_medium.leads.loc[(stage == "customer").to_numpy(), "lead_id"].iloc[0]
    with pytest.raises(ValueError, match="past what the models predict"):
        explain_lead(won, crm_medium, AS_OF, models, plot=False)


def cli(*args: str, cwd: Path):
    """``leadml ...`` in-process, as click runs it (stderr kept apart)."""
    import os

    from leadml.cli import main

    old = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, list(args))
    finally:
        os.chdir(old)


def test_cli_errors_are_one_line_with_exit_code_2(workdir, tmp_path) -> None:
    (tmp_path / "taken.csv").write_text("x")
    (tmp_path / "partial").mkdir()
    leads = (workdir / "crm" / "leads.parquet").read_bytes()
    (tmp_path / "partial" / "leads.parquet").write_bytes(leads)
    cases = {
        "neither an existing bundle": ["--data", str(workdir / "crm"), "--model", "nope"],
        "already exists": ["--data", str(workdir / "crm"), "--out", "taken.csv"],
        "no stage_changes.parquet": [
            "--data",
            "partial",
            *sum((["--model", m] for m in model_args(workdir)), []),
        ],
        "no lead exists yet": [
            "--data",
            str(workdir / "crm"),
            "--as-of",
            "2020-01-01",
            *sum((["--model", m] for m in model_args(workdir)), []),
        ],
    }
    for message, args in cases.items():
        if "--out" not in args:
            args = [*args, "--out", "s.parquet"]
        if "--as-of" not in args:
            args = [*args, "--as-of", AS_OF]
        r = cli("score", *args, cwd=tmp_path)
        assert r.exit_code == 2, (message, r.output)
        assert r.stderr.startswith("error: ") and message in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "s.parquet").exists()


@pytest.mark.slow
def test_cli_score_as_a_user_runs_it(workdir, tmp_path) -> None:
    run = lambda *a: subprocess.run(
        [sys.executable, "-m", "leadml", *a], capture_output=True, text=True, cwd=tmp_path
    )
    models = sum((["--model", m] for m in model_args(workdir)), [])
    ok = run("score", "--data", str(workdir / "crm"), "--as-of", AS_OF, "--out", "s.csv", *models)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("scored ") and "skipped: " in ok.stdout
    assert "Traceback" not in ok.stderr and "scoring" not in ok.stderr  # no bar off a terminal
    head = (tmp_path / "s.csv").read_text(encoding="utf-8").splitlines()[0]
    assert head.startswith("lead_id,as_of,stage,p_prospect,p_opportunity,score,tier,reason_1,")
    again = run("score", "--data", str(workdir / "crm"), "--out", "s.csv", *models)
    assert (
        again.returncode == 2
        and again.stderr == "error: 's.csv' already exists; pass --overwrite to replace it\n"
    )


def _assert_points_add_up(frame: pd.DataFrame) -> None:
    """base_score + Σ reason points + other_points = score, exactly (tenths of a point)."""
    assert frame["base_score"].notna().all() and frame["other_points"].notna().all()
    for row in frame.itertuples():
        tenths = [round(1000 * r["effect"]) for r in row.reasons]
        assert all(
            abs(1000 * r["effect"] - t) < 1e-6 for r, t in zip(row.reasons, tenths, strict=True)
        )
        total = round(10 * row.base_score) + sum(tenths) + round(10 * row.other_points)
        assert total == 10 * row.score, row
        # Each listed reason's sign is its direction; ranked by points within each sign.
        pos = [r["effect"] for r in row.reasons if r["direction"] == "+"]
        neg = [r["effect"] for r in row.reasons if r["direction"] == "-"]
        assert all(e > 0 for e in pos) and all(e < 0 for e in neg)
        assert pos == sorted(pos, reverse=True) and neg == sorted(neg)


def test_points_add_up_to_the_score_and_context_is_not_a_reason(scores) -> None:
    """Issue: a rep who adds the points up must get the score. The current stage, days in it
    and past disqualifications are context (in the base), never a reason."""
    _assert_points_add_up(scores)
    groups = {r["group"] for rs in scores["reasons"] for r in rs}
    assert "stage_history" not in groups
    # Leads and prospects start from different bases: the base is "a typical lead in this stage".
    by_stage = scores.groupby("stage")["base_score"].median()
    assert by_stage["prospect"] > by_stage["lead"]


def test_each_reason_carries_its_evidence_from_the_training_rows(crm_medium, scores, models):
    """'Past leads in Software: 14% became prospects, against 6% overall', from per-level and
    per-bin training statistics stored in the bundle (counts only, no rows)."""
    from leadml.data.trainset import build_training_set
    from leadml.model.evidence import MIN_ROWS

    stats = models["prospect"].metadata["evidence"]
    ts = build_training_set(crm_medium, "prospect", config=None)
    assert 0 < stats["overall"] < 0.2
    ind = stats["features"]["industry"]
    assert all(n >= MIN_ROWS for n, _ in ind["levels"].values())
    leads = scores[scores["stage"] == "lead"]
    found = [r for rs in leads["reasons"] for r in rs if r["group"] == "industry"]
    assert found and all(r["evidence"].startswith("Past leads in ") for r in found)
    level = found[0]["text"].split(": ", 1)[1]
    n, rate = ind["levels"][level]
    assert (
        f"{100 * rate:.0f}%" in found[0]["evidence"] or f"{100 * rate:.1f}%" in found[0]["evidence"]
    )
    assert "became prospects, against" in found[0]["evidence"]
    # Numeric reasons speak with the range of their bin.
    texts = [r["evidence"] for rs in scores["reasons"] for r in rs]
    assert any("with a value from" in t or "with a value of" in t for t in texts)
    assert any("became opportunities" in t for t in texts)
    del ts


def test_a_bad_model_fails_before_any_data_is_read(tmp_path) -> None:
    from leadml._timing import breakdown
    from leadml.datasets import make_crm, write_crm

    crm = write_crm(make_crm(n_leads=50, seed=1), tmp_path / "crm")
    with breakdown() as spent, pytest.raises(ValueError, match="neither an existing bundle"):
        run_score(crm, tmp_path / "s.parquet", as_of=AS_OF, model_specs=["nope"])
    assert "models" in spent.seconds
    assert not {"read", "validate", "features"} & set(spent.seconds)


def test_reason_columns_from_arrow_match_the_sentences_row_by_row() -> None:
    """The job's Arrow-backed reasons render to the CSV's reason_k cells exactly as lists of
    dicts do, a sliced column, rows without reasons and an effect without points included."""
    from leadml.explain.reasons import Reasons, reason_sentence
    from leadml.serve.contract import _reason_columns

    lists = [
        [
            {
                "group": "g",
                "text": "Viewed the pricing page 3 times",
                "direction": "+",
                "effect": 0.041,
                "evidence": "",
            },
            {
                "group": "h",
                "text": "Country: DE",
                "direction": "-",
                "effect": -0.012,
                "evidence": "e",
            },
        ],
        [],
        [
            {
                "group": "g",
                "text": "Lead source: event",
                "direction": "+",
                "effect": float("nan"),
                "evidence": "",
            }
        ],
        [
            {
                "group": "g",
                "text": "Created 3 days ago",
                "direction": "-",
                "effect": -0.0005,
                "evidence": "",
            }
        ],
    ]
    flat = [r for rs in lists for r in rs]
    offsets = np.cumsum([0, *map(len, lists)])
    cols = {
        f: np.array([r[f] for r in flat], dtype=object)
        for f in ("group", "text", "direction", "evidence")
    }
    why = Reasons(
        offsets,
        cols["group"],
        cols["text"],
        cols["direction"],
        np.array([r["effect"] for r in flat]),
        cols["evidence"],
        np.zeros(4),
        np.zeros(4),
    )
    arrow = pd.Series(pd.arrays.ArrowExtensionArray(why.arrow()))
    for series, rows in ((arrow, lists), (arrow.iloc[1:], lists[1:])):
        got = _reason_columns(series.reset_index(drop=True), 3)
        for k in range(3):
            want = [reason_sentence(rs[k]) if k < len(rs) else "" for rs in rows]
            assert got[k].tolist() == want
    # The dicts come back as they went in (NaN compared as NaN).
    back = why.lists
    assert [len(rs) for rs in back] == [len(rs) for rs in lists]
    for x, y in zip((r for rs in back for r in rs), flat, strict=True):
        assert {k: v for k, v in x.items() if k != "effect"} == {
            k: v for k, v in y.items() if k != "effect"
        }
        np.testing.assert_equal(x["effect"], y["effect"])
