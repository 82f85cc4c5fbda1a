"""Flat-table mode: cleaning, splitting, training and scoring a one-row-per-lead export."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadml.data.flat import (
    FlatCleaning,
    FlatDataError,
    RandomSplitWarning,
    clean_flat,
    plan_cleaning,
    split_flat,
)


def _crm_export(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "Prospect ID": [f"p-{i:04d}" for i in range(n)],
            "Lead Number": np.arange(700_000, 700_000 - n, -1),
            "Lead Source": rng.choice(["Google", "Direct Traffic", "Olark Chat"], n),
            "Specialization": rng.choice(["Finance", "Select", "HR", " select "], n),
            "Magazine": ["No"] * n,
            "Contact Email": [f"user{i}@example.com" for i in range(n)],
            "Mobile": [f"+91 98{i:03d} 12{i:03d}" for i in range(n)],
            "Do Not Email": rng.choice(["No", "Yes"], n, p=[0.9, 0.1]),
            "First Name": rng.choice([f"name{i}" for i in range(25)], n),
            "Notes": [f"called on day {i}" for i in range(n)],
            "TotalVisits": rng.poisson(3, n).astype(str),
            "Lead Quality": rng.choice(["High", np.nan], n),
            "Converted": rng.integers(0, 2, n),
        }
    )


def test_cleaning_rules_on_a_crm_export() -> None:
    table = _crm_export()
    table.loc[:4, "Lead Source"] = ["google", "GOOGLE ", "google", "Google", "direct  traffic"]
    clean, plan = clean_flat(table, target="Converted", id_column="Prospect ID")
    assert plan.dropped == {
        "Lead Number": "id-like",
        "Magazine": "constant",
        "Contact Email": "identifier",
        "Mobile": "identifier",
        "First Name": "identifier",
        "Notes": "id-like",
    }
    assert list(clean.columns) == [
        "Lead Source",
        "Specialization",
        "Do Not Email",
        "TotalVisits",
        "Lead Quality",
    ]
    # Case and spacing variants collapse onto the most frequent spelling.
    assert set(clean["Lead Source"]) == {"Google", "Direct Traffic", "Olark Chat"}
    # 'Select' in any case or padding is missing.
    assert set(clean["Specialization"].dropna()) == {"Finance", "HR"}
    n_select = table["Specialization"].str.strip().str.lower().eq("select").sum()
    assert clean["Specialization"].isna().sum() == n_select
    assert clean["TotalVisits"].dtype == "float64"
    # One value plus missing values is an indicator, not a constant.
    assert plan.kinds["Lead Quality"] == "categorical"
    text = plan.report()
    assert "'Magazine': dropped: constant (every row is 'No')" in text
    assert "merged case variants" in text and "-> 'Google'" in text
    assert "placeholders to missing" in text
    assert "values look like e-mail addresses" in text or "'email'" in text


def test_consent_flag_named_email_is_not_an_identifier() -> None:
    _, plan = clean_flat(_crm_export(), target="Converted")
    assert plan.kinds["Do Not Email"] == "categorical"


def test_plan_applies_the_same_way_to_a_new_export() -> None:
    plan = plan_cleaning(_crm_export(), target="Converted", id_column="Prospect ID")
    new = _crm_export(n=5, seed=3).drop(columns=["Converted"])
    new.loc[0, "Lead Source"] = "olark CHAT"  # a spelling never seen in training
    new.loc[1, "Lead Source"] = "Bing"  # a level never seen at all
    new.loc[2, "TotalVisits"] = "Select"
    clean = plan.apply(new)
    assert list(clean.columns) == list(plan.features)
    assert clean.loc[0, "Lead Source"] == "Olark Chat"
    assert clean.loc[1, "Lead Source"] == "Bing"
    assert np.isnan(clean.loc[2, "TotalVisits"])
    again = FlatCleaning.from_dict(plan.to_dict())
    assert again == plan
    pd.testing.assert_frame_equal(again.apply(new), clean)


def test_keep_drop_and_placeholders_are_configurable() -> None:
    table = _crm_export()
    table["Country"] = np.where(np.arange(60) % 3 == 0, "Unknown", "India")
    _, default = clean_flat(table, target="Converted")
    assert default.kinds["Country"] == "categorical"  # 'Unknown' is an answer by default
    clean, plan = clean_flat(
        table,
        target="Converted",
        drop=["Lead Source"],
        keep=["Lead Number"],
        placeholders=("Select", "Unknown"),
    )
    assert clean["Country"].isna().sum() == 20
    assert plan.dropped["Lead Source"] == "excluded"
    assert plan.kinds["Lead Number"] == "numeric"


def test_unknown_and_missing_columns_are_named() -> None:
    table = _crm_export()
    with pytest.raises(FlatDataError, match="'Convertd' not in the table"):
        plan_cleaning(table, target="Convertd")
    plan = plan_cleaning(table, target="Converted")
    with pytest.raises(FlatDataError, match="lacks feature column.*'Lead Source'"):
        plan.apply(table.drop(columns=["Lead Source"]))


def test_timestamps_are_not_features() -> None:
    table = _crm_export()
    table["Created"] = pd.date_range("2024-01-01", periods=60, freq="D")
    _, plan = clean_flat(table, target="Converted")
    assert plan.dropped["Created"] == "timestamp"


def test_time_column_gives_an_out_of_time_split() -> None:
    table = _crm_export(n=100)
    # Shuffled creation dates: the split must follow them, not the row order.
    days = np.random.default_rng(5).permutation(100)
    table["Created"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(days, unit="D")
    split = split_flat(table, "Converted", time_column="Created")
    created = table["Created"].to_numpy()
    assert split.kind == "time"
    assert (len(split.train), len(split.valid), len(split.test)) == (60, 20, 20)
    assert created[split.train].max() < created[split.valid].min()
    assert created[split.valid].max() < created[split.test].min()
    assert "out-of-time by 'Created'" in split.description


def test_order_column_ties_stay_on_one_side() -> None:
    table = pd.DataFrame({"batch": [1, 1, 2, 2, 2, 3, 3, 4, 5, 5], "y": [0, 1] * 5})
    split = split_flat(table, "y", order_column="batch", fractions=(0.5, 0.3, 0.2))
    batch = table["batch"].to_numpy()
    assert set(batch[split.train]) == {1, 2}
    assert set(batch[split.valid]) == {3, 4}
    assert set(batch[split.test]) == {5}


def test_random_split_warns_and_stratifies() -> None:
    table = _crm_export(n=200)
    with pytest.warns(RandomSplitWarning, match="optimistic"):
        split = split_flat(table, "Converted", seed=1)
    y = table["Converted"].to_numpy()
    parts = np.concatenate([split.train, split.valid, split.test])
    assert sorted(parts.tolist()) == list(range(200))
    assert abs(y[split.test].mean() - y.mean()) < 0.03


def test_split_errors_name_the_column() -> None:
    table = _crm_export()
    table["Created"] = "2024-01-01"
    table.loc[3, "Created"] = "last tuesday"
    with pytest.raises(FlatDataError, match="'Created': 1 value.*timestamps.*rows \\[3\\]"):
        split_flat(table, "Converted", time_column="Created")
    with pytest.raises(FlatDataError, match="not both"):
        split_flat(table, "Converted", time_column="Created", order_column="Lead Number")
    table["Created"] = "2024-01-01"
    with pytest.raises(FlatDataError, match="too few distinct values"):
        split_flat(table, "Converted", time_column="Created")


# ---------------------------------------------------------------- training and scoring


def _converting_export(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """A flat export with a known driver, a planted leak and a creation date."""
    rng = np.random.default_rng(seed)
    minutes = rng.gamma(2, 4, n)
    source = rng.choice(["Google", "google", "Referral", "Direct", "Select"], n)
    logit = -1.5 + 0.12 * minutes + np.where(source == "Referral", 1.2, 0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.permutation(n) * 3, unit="h")
    return pd.DataFrame(
        {
            "Lead ID": [f"L{i:05d}" for i in range(n)],
            "Created": created,
            "Lead Source": source,
            "Minutes on Site": minutes.round(1),
            "Magazine": "No",
            "Call Outcome": np.where(y == 1, "keen", "no answer"),
            "Converted": y,
        }
    )


FAST = {
    "model": {"n_estimators": 60, "learning_rate": 0.1, "min_child_samples": 20, "n_jobs": 1},
    "explain": {"engine": "lightgbm"},
}


@pytest.fixture(scope="module")
def flat_result():
    from leadml.config import LeadMLConfig
    from leadml.model.training import train_flat

    cfg = LeadMLConfig().with_overrides(FAST)
    return train_flat(
        _converting_export(), "Converted", id_column="Lead ID", time_column="Created", config=cfg
    )


def test_train_flat_uses_the_time_column_and_guards_leaks(flat_result) -> None:
    table = _converting_export()
    split = flat_result.split
    created = table["Created"].to_numpy()
    assert split.kind == "time"
    assert created[split.train].max() < created[split.valid].min()
    assert created[split.valid].max() < created[split.test].min()
    assert flat_result.leakage.excluded == ("Call Outcome",)
    assert flat_result.leakage.finding("Call Outcome").auc == pytest.approx(1.0)
    assert flat_result.model.spec.names == ("Lead Source", "Minutes on Site")
    assert flat_result.cleaning.dropped["Call Outcome"] == "leaky"
    # Backtest means over the folds (a few hundred rows each), beside logistic regression.
    assert flat_result.metrics["roc_auc"] > 0.65
    assert flat_result.metrics["roc_auc"] >= flat_result.baseline_metrics["roc_auc"] - 0.03
    text = flat_result.report()
    assert "'Call Outcome' (AUC 1.000)" in text and "out-of-time by 'Created'" in text


def test_flat_bundle_round_trip_scores_and_reasons(flat_result, tmp_path) -> None:
    from leadml.config import LeadMLConfig
    from leadml.model.bundle import load_bundle, save_bundle
    from leadml.serve.contract import FLAT_COLUMNS
    from leadml.serve.scoring import score_flat

    path = save_bundle(flat_result.model, tmp_path / "flat")
    loaded = load_bundle(path)
    assert loaded.metadata["leakage"]["findings"][0]["column"] == "Call Outcome"
    new = _converting_export(n=40, seed=9).drop(columns=["Converted", "Call Outcome", "Magazine"])
    cfg = LeadMLConfig().with_overrides(FAST)
    a = score_flat(new, flat_result.model, cfg, as_of="2025-02-01")
    b = score_flat(new, loaded, cfg, as_of="2025-02-01")
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == list(FLAT_COLUMNS)
    assert sorted(a["lead_id"]) == sorted(new["Lead ID"])
    # The call list's order: score descending, then lead_id.
    order = a.sort_values(["score", "lead_id"], ascending=[False, True], kind="stable")
    assert a["lead_id"].tolist() == order["lead_id"].tolist()
    assert (a["as_of"] == pd.Timestamp("2025-02-01")).all()
    assert a["score"].tolist() == np.rint(100 * a["probability"]).astype(int).tolist()
    assert set(a["tier"]) <= set("ABCD")
    texts = [r["text"] for rs in a["reasons"] for r in rs]
    assert any(t.startswith("Minutes on Site: ") for t in texts)
    assert any(t in texts for t in ("Lead Source: Google", "Lead Source: Referral"))
    # 'google' was merged into 'Google' by the stored cleaning plan.
    assert "Lead Source: google" not in texts


def test_score_flat_refuses_an_event_mode_model(flat_result) -> None:
    from dataclasses import replace

    from leadml.serve.scoring import score_flat

    event_model = replace(flat_result.model, metadata={}, transition="prospect")
    with pytest.raises(FlatDataError, match="trained in event mode"):
        score_flat(_converting_export(n=5), event_model)


def test_train_flat_errors_name_the_problem() -> None:
    from leadml.model.training import train_flat

    table = _converting_export(n=50)
    with pytest.raises(FlatDataError, match="allow column 'Tagz' not in the table"):
        train_flat(table, "Converted", allow_columns=["Tagz"], time_column="Created")
    table.loc[7, "Lead ID"] = "L00001"
    with pytest.raises(FlatDataError, match="'Lead ID': 1 missing or duplicate id.*rows \\[7\\]"):
        train_flat(table, "Converted", id_column="Lead ID", time_column="Created")


def test_run_train_and_score_flat_write_files(tmp_path) -> None:

    from leadml.config import LeadMLConfig
    from leadml.jobs import run_score_flat, run_train_flat
    from leadml.serve.contract import read_scores

    cfg = LeadMLConfig().with_overrides(FAST)
    _converting_export(n=800).to_csv(tmp_path / "leads.csv", index=False)
    text = run_train_flat(
        str(tmp_path / "leads.csv"),
        "Converted",
        id_column="Lead ID",
        time_column="Created",
        model_dir=str(tmp_path / "models"),
        config=cfg,
        track=False,
    )
    assert "excluded" in text and "'Call Outcome'" in text
    bundle = tmp_path / "models" / "flat-converted"
    assert (bundle / "bundle.json").is_file()
    out = tmp_path / "scores.csv"
    line = run_score_flat(str(tmp_path / "leads.csv"), str(bundle), str(out), config=cfg)
    assert line.startswith("scored 800 leads (tiers A=")
    scores = read_scores(out)
    assert len(scores) == 800 and scores.loc[0, "reasons"][0]["text"]
    assert list(scores["score"]) == sorted(scores["score"], reverse=True)
    assert {"as_of", "model_version", "probability"} <= set(scores.columns)
    with pytest.raises(FileExistsError, match="already exists"):
        run_score_flat(str(tmp_path / "leads.csv"), str(bundle), str(out), config=cfg)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".scores")]


@pytest.mark.slow
def test_train_flat_tracks_to_mlflow(mlflow_uri) -> None:
    from leadml.config import LeadMLConfig
    from leadml.jobs import load_stage_model, train_and_track_flat
    from leadml.serve.scoring import score_flat

    cfg = LeadMLConfig().with_overrides(FAST)
    table = _converting_export(n=800)
    result = train_and_track_flat(
        table,
        "Converted",
        id_column="Lead ID",
        time_column="Created",
        config=cfg,
    )
    assert result.tracking["model_uri"] == "models:/leadml-flat/1"
    assert result.tracking["promoted"]
    model = load_stage_model("models:/leadml-flat@champion")
    same = [
        score_flat(table, m, as_of="2025-01-01").drop(columns="model_version")
        for m in (model, result.model)
    ]
    pd.testing.assert_frame_equal(*same)

    import mlflow

    # The flat pyfunc takes the table's feature columns, as its signature says.
    pyfunc = mlflow.pyfunc.load_model("models:/leadml-flat@champion")
    frame = pd.DataFrame(
        {
            "lead_id": table["Lead ID"].head(5),
            "Lead Source": table["Lead Source"].head(5),
            "Minutes on Site": table["Minutes on Site"].head(5),
        }
    )
    out = pyfunc.predict(frame).sort_values("lead_id")
    assert out["lead_id"].tolist() == sorted(table["Lead ID"].head(5))
    expected = score_flat(table.head(5), result.model).sort_values("lead_id")["probability"]
    np.testing.assert_allclose(out["probability"].to_numpy(), expected.to_numpy())


def test_cli_report_renders_flat_scores(tmp_path) -> None:
    """Flat scores share the scores-file contract, so `leadml report` renders them (HTML and
    CRM CSV) with the model's target as the outcome."""
    from click.testing import CliRunner

    from leadml.cli import main

    cfg_file = tmp_path / "fast.yaml"
    cfg_file.write_text(
        "model:\n  n_estimators: 30\n  min_child_samples: 10\n  min_data_per_group: 5\n"
    )
    _converting_export(n=600).to_csv(tmp_path / "leads.csv", index=False)
    runner = CliRunner()
    common = ["--config", str(cfg_file)]
    trained = runner.invoke(
        main,
        [
            "train",
            *common,
            "--table",
            str(tmp_path / "leads.csv"),
            "--target",
            "Converted",
            "--id",
            "Lead ID",
            "--time-column",
            "Created",
            "--model-dir",
            str(tmp_path / "models"),
            "--no-track",
        ],
    )
    assert trained.exit_code == 0, trained.output
    scores = tmp_path / "scores.parquet"
    scored = runner.invoke(
        main,
        [
            "score",
            *common,
            "--table",
            str(tmp_path / "leads.csv"),
            "--model",
            str(tmp_path / "models" / "flat-converted"),
            "--out",
            str(scores),
            "--as-of",
            "2025-03-01",
        ],
    )
    assert scored.exit_code == 0, scored.output
    html = tmp_path / "report.html"
    done = runner.invoke(main, ["report", "--scores", str(scores), "--out", str(html)])
    assert done.exit_code == 0, done.output
    page = html.read_text(encoding="utf-8")
    assert "Converted" in page and "L0" in page
    csv = tmp_path / "crm.csv"
    done = runner.invoke(
        main, ["report", "--scores", str(scores), "--out", str(csv), "--format", "csv"]
    )
    assert done.exit_code == 0, done.output
    crm = pd.read_csv(csv)
    assert len(crm) == 600 and crm["p_next_stage"].between(0, 1).all()
    assert list(crm["score"]) == sorted(crm["score"], reverse=True)


def test_flat_points_add_up_to_the_score(flat_result) -> None:
    from leadml.config import LeadMLConfig
    from leadml.serve.scoring import score_flat
    from tests.test_scoring import _assert_points_add_up

    new = _converting_export(n=200, seed=4).drop(columns=["Converted", "Call Outcome", "Magazine"])
    scored = score_flat(
        new, flat_result.model, LeadMLConfig().with_overrides(FAST), as_of="2025-02-01"
    )
    _assert_points_add_up(scored)
