"""Flat-table mode end to end: same LightGBM, calibration, tiers, bundle and reasons as event mode."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from leadml.data.flat import FlatDataError
from leadml.model.bundle import load_bundle, save_bundle
from leadml.model.training import train_flat
from leadml.serve.contract import FLAT_COLUMNS
from leadml.serve.scoring import score_flat


def crm_export(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    visits = rng.poisson(3, n)
    time_on_site = rng.gamma(2, 200, n)
    source = rng.choice(["Google", "google", "Direct", "Referral", "Select"], n)
    logit = -2 + 0.004 * time_on_site + 0.2 * visits + np.where(source == "Referral", 1.0, 0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(
        {
            "Prospect ID": [f"id-{i:05d}" for i in range(n)],
            "Lead Number": np.arange(n) + 1000,
            "Lead Source": source,
            "TotalVisits": visits,
            "Total Time Spent on Website": time_on_site.round(),
            "Email": [f"p{i}@example.com" for i in range(n)],
            "Lead Status": np.where(y == 1, "Won", "Open"),  # post-outcome, must be caught
            "Converted": y,
        }
    )


@pytest.fixture(scope="module")
def result():
    return train_flat(
        crm_export(), "Converted", id_column="Prospect ID", order_column="Lead Number"
    )


def test_leaky_and_identifying_columns_stay_out(result) -> None:
    assert "Lead Status" in result.leakage.excluded
    names = result.model.spec.names
    assert "Lead Status" not in names and "Email" not in names and "Prospect ID" not in names
    assert set(names) == {"Lead Source", "TotalVisits", "Total Time Spent on Website"}


def test_out_of_time_split_and_metrics(result) -> None:
    assert result.split.kind == "order"
    assert result.split.train.max() < result.split.test.min()
    assert result.metrics["roc_auc"] > 0.7
    assert result.metrics["ece"] < 0.06


def test_bundle_round_trip_and_scores(result, tmp_path) -> None:
    path = save_bundle(result.model, tmp_path / "b")
    model = load_bundle(path)
    table = crm_export(200, seed=5)
    a = score_flat(table, result.model, as_of="2025-01-01")
    b = score_flat(table, model, as_of="2025-01-01")
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == list(FLAT_COLUMNS)
    assert "id-00000" in set(a["lead_id"])
    texts = [r["text"] for rs in a["reasons"] for r in rs]
    assert any(t.startswith("Total Time Spent on Website: ") for t in texts)


def test_bad_target_is_a_clear_error() -> None:
    table = crm_export(100)
    with pytest.raises(FlatDataError, match="target column 'converted' not in the table"):
        train_flat(table, "converted")
    table.loc[3, "Converted"] = 7
    with pytest.raises(
        FlatDataError,
        match=r"target 'Converted': 1 value\(s\) are not a yes/no outcome \(rows \[3\]; "
        r"values found: '7'\).*--positive",
    ):
        train_flat(table, "Converted")
    table.loc[3, "Converted"] = None
    with pytest.raises(
        FlatDataError, match=r"target 'Converted': 1 missing value\(s\) \(rows \[3\]\)"
    ):
        train_flat(table, "Converted")


@pytest.mark.parametrize(
    ("values", "positive", "expected"),
    [
        (["Yes", "no", " YES ", "N"], None, [1, 0, 1, 0]),
        (["TRUE", "false", "t", "F"], None, [1, 0, 1, 0]),
        ([1, 0, 1.0, 0.0], None, [1, 0, 1, 0]),
        ([True, False, True, False], None, [1, 0, 1, 0]),
        (["Won", "Lost", "open", " won"], "won", [1, 0, 0, 1]),
    ],
)
def test_targets_as_users_export_them(values, positive, expected) -> None:
    from leadml.data.flat import flat_target

    table = pd.DataFrame({"outcome": values})
    assert flat_target(table, "outcome", positive).tolist() == expected


@pytest.mark.slow
def test_cli_flat_train_and_score(tmp_path) -> None:
    crm_export().to_csv(tmp_path / "leads.csv", index=False)
    run = lambda *a: subprocess.run(
        [sys.executable, "-m", "leadml", *a], capture_output=True, text=True, cwd=tmp_path
    )  # noqa: E731
    t = run(
        "train",
        "--table",
        "leads.csv",
        "--target",
        "Converted",
        "--id",
        "Prospect ID",
        "--order-column",
        "Lead Number",
        "--model-dir",
        "m",
    )
    assert t.returncode == 0, t.stderr
    assert "'Lead Status'" in t.stdout and "excluded" in t.stdout
    s = run("score", "--table", "leads.csv", "--model", "m/flat-converted", "--out", "s.parquet")
    assert s.returncode == 0, s.stderr
    assert len(pd.read_parquet(tmp_path / "s.parquet")) == 3000
    on_spark = ["score", "--table", "leads.csv", "--model", "m/flat-converted", "--out", "x.csv"]
    misuse = run(*on_spark, "--engine", "spark")
    assert misuse.returncode == 2 and "a flat --table is scored locally" in misuse.stderr
    assert "Traceback" not in misuse.stderr and not (tmp_path / "x.csv").exists()
