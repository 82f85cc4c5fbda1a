"""`leadml backtest` from the command line: the fold table, its CSV and plots, MLflow, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from leadml.cli import main


def _export(n: int, seed: int = 0) -> pd.DataFrame:
    """A flat export as users send it: a sequential lead number, a yes/no outcome."""
    rng = np.random.default_rng(seed)
    visits = rng.poisson(3, n).astype(float)
    source = rng.choice(["Google", "Referral", "Direct"], n)
    logit = -1.0 + 0.7 * (visits - 3) + 1.2 * (source == "Referral")
    converted = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "Lead Number": np.arange(500_000, 500_000 + n),
            "Email": [f"lead{i}@example.com" for i in range(n)],
            "Visits": visits,
            "Lead Source": source,
            "Converted": np.where(converted, "YES", "no"),
        }
    )


@pytest.fixture
def fast_yaml(tmp_path):
    path = tmp_path / "fast.yaml"
    path.write_text("model:\n  n_estimators: 60\n  n_jobs: 1\n")
    return path


@pytest.mark.slow
def test_backtest_prints_writes_plots_and_logs(tmp_path, fast_yaml, mlflow_uri) -> None:
    import mlflow

    _export(1_200).to_csv(tmp_path / "leads.csv", index=False)
    out = tmp_path / "bt" / "backtest.csv"
    out.parent.mkdir()
    args = [
        "backtest",
        "--config",
        str(fast_yaml),
        "--table",
        str(tmp_path / "leads.csv"),
        "--target",
        "Converted",
        "--order-column",
        "Lead Number",
        "--out",
        str(out),
    ]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    # The fold table with every baseline, the pooled ECE and one verdict line.
    for word in ("backtest:", "leadml", "base_rate", "logistic", "lgbm_default", "rule"):
        assert word in r.output, word
    assert "ECE of the pooled out-of-fold rows" in r.output
    assert sum(line.startswith(("ready:", "not ready:")) for line in r.output.splitlines()) == 1
    assert "example.com" not in r.output  # the e-mail column is an identifier, never shown
    table = pd.read_csv(out)
    assert {"fold", "model", "roc_auc", "pr_auc", "log_loss", "ece"} <= set(table.columns)
    assert set(table["model"]) >= {"leadml", "base_rate", "logistic", "lgbm_default", "rule"}
    assert table["fold"].nunique() >= 2
    assert list(out.parent.glob("*.png")), "a plot per model beside the CSV"
    # Logged to the local MLflow store.
    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs) == 1
    assert any(c.startswith("metrics.") and "roc_auc" in c for c in runs.columns)
    # An existing --out is never replaced without --overwrite (exit 2, no traceback).
    again = CliRunner().invoke(main, [*args, "--no-track"])
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert "Traceback" not in again.output


def test_an_unknown_target_encoding_names_values_and_the_flag(tmp_path, fast_yaml) -> None:
    table = _export(300)
    table["Converted"] = np.where(table["Converted"] == "YES", "Won", "Lost")
    table.to_csv(tmp_path / "leads.csv", index=False)
    args = ["backtest", "--config", str(fast_yaml), "--table", str(tmp_path / "leads.csv")]
    args += ["--target", "Converted", "--order-column", "Lead Number", "--no-track"]
    args += ["--out", str(tmp_path / "bt.csv")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    assert "Won" in r.output and "Lost" in r.output and "--positive" in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "bt.csv").exists()
    ok = CliRunner().invoke(main, [*args, "--positive", "won"])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "bt.csv").exists()


def test_an_output_that_is_an_input_is_refused_even_with_overwrite(tmp_path) -> None:
    """`--out` naming one of the run's inputs once replaced the leads table with scores and a
    Parquet scores file with HTML (issue 16); nothing is read or written now."""
    from leadml.datasets import make_crm, write_crm

    crm_dir = write_crm(make_crm(n_leads=200, seed=1), tmp_path / "crm")
    leads = next(p for p in crm_dir.iterdir() if p.name.startswith("leads"))
    before = leads.read_bytes()
    runner = CliRunner()
    for args in (
        ["score", "--data", str(crm_dir), "--out", str(leads), "--overwrite"],
        ["build", "--data", str(crm_dir), "--transition", "prospect", "--out", str(leads)],
        ["report", "--scores", str(leads), "--out", str(leads), "--overwrite"],
    ):
        if args[0] == "build":
            args.append("--overwrite")
        r = runner.invoke(main, args)
        assert r.exit_code == 2, (args[0], r.output)
        assert "is an input of this run" in r.output, (args[0], r.output)
        assert "Traceback" not in r.output
        assert leads.read_bytes() == before
