"""Score history, monitoring, retrain and rollback: models trained on what was known at T score
a CRM at T into a history; the monitor, run on the export of T + horizon, holds those scores to
what happened and to the training data; a drifted copy raises alerts; retrain and rollback move
the champion alias of a real MLflow store."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from leadml.cli import main
from leadml.data.contracts import CRMData
from leadml.model.drift import jeffreys, ks_from_quantiles, profile, psi, reference
from leadml.serve.history import HistoryWriter, Previous, add_trend, list_runs, partition_name
from leadml.serve.monitor import ALERT_EXIT_CODE, MonitorResult, write_monitor_page
from tests.test_report_browser import browser  # noqa: F401  (the headless Chromium fixture)

T = pd.Timestamp("2025-03-03")
WEEK = pd.Timedelta(days=7)
GONE = "webinar_attended"  # the event type the drifted copy loses


# --- pieces, no training -----------------------------------------------------------------------


def test_psi_is_zero_on_the_same_mix_and_large_on_a_shift() -> None:
    rng = np.random.default_rng(1)
    X = pd.DataFrame(
        {
            "visits": rng.poisson(1.5, 20_000).astype(float),
            "industry": rng.choice(["software", "retail", "government"], 20_000, p=[0.5, 0.3, 0.2]),
        }
    )
    X.loc[::10, "visits"] = np.nan
    ref = reference(X, rng.beta(1, 9, 20_000), {"visits": "numeric", "industry": "categorical"})
    same = profile(ref, X.sample(frac=0.5, random_state=2), rng.beta(1, 9, 10_000))
    for name in ("visits", "industry"):
        assert psi(ref["features"][name]["shares"], same["features"][name]) < 0.01
    assert same["score_ks"] < 0.05

    moved = X.assign(
        industry=np.where(rng.uniform(size=20_000) < 0.7, "government", X["industry"]),
        visits=0.0,  # every visit gone (an event type the export lost)
    )
    run = profile(ref, moved, rng.beta(3, 3, 20_000))
    assert psi(ref["features"]["industry"]["shares"], run["features"]["industry"]) > 0.25
    assert psi(ref["features"]["visits"]["shares"], run["features"]["visits"]) > 0.25
    assert run["score_ks"] > 0.5
    # A level never seen in training counts as "other", not as an error.
    new_level = profile(ref, X.assign(industry="space"), None)
    assert new_level["features"]["industry"][-2] == len(X)


def test_jeffreys_and_ks_edges() -> None:
    lo, hi = jeffreys(0, 50)
    assert lo == 0.0 and 0.0 < hi < 0.06
    lo, hi = jeffreys(10, 100)
    assert (lo, hi) == pytest.approx((0.0526, 0.1701), abs=5e-4)  # Brown, Cai, DasGupta
    assert jeffreys(5, 5)[1] == 1.0
    assert ks_from_quantiles(np.linspace(0, 1, 200), np.linspace(0, 1, 1000)) < 0.01


def _scores(ids: list[int], scores: list[int], stage: str = "lead") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": ids,
            "as_of": T,
            "stage": stage,
            "score": scores,
            "reasons": [
                [
                    {
                        "group": "pricing",
                        "text": f"Viewed pricing {s // 10} times",
                        "effect": s / 1000,
                    }
                ]
                for s in scores
            ],
        }
    )


def test_trend_and_changes_against_the_previous_run() -> None:
    before = Previous.from_frame(_scores([1, 2, 3, 4], [40, 40, 40, 40]), T - WEEK)
    now = _scores([1, 2, 3, 5], [50, 37, 30, 60])
    now.loc[2, "stage"] = "prospect"  # lead 3 moved on: another question, no change
    out = add_trend(now, before, trend_points=5)
    assert out["trend"].tolist() == ["Improving", "Steady", "Advanced", "New"]
    assert out["score_change"].tolist()[:2] == [10, -3]
    assert out["score_change"].isna().tolist() == [False, False, True, True]
    assert out["previous_score"].tolist()[:3] == [40, 40, 40]
    # Lead 1's pricing reason went from +4.0 to +5.0 points; lead 2's moved by 0.3 (too little).
    assert out["changes"].iloc[0] == "Viewed pricing 5 times: +1.0 pts since 2025-02-24"
    assert out["changes"].iloc[1] == ""
    assert add_trend(now, None, 5)["trend"].eq("New").all()


def test_history_replaces_one_partition_and_never_shows_half_a_run(tmp_path: Path) -> None:
    def run(as_of: pd.Timestamp, scores: list[int], fail: bool = False) -> None:
        frame = _scores([1, 2], scores).assign(as_of=as_of)
        with HistoryWriter(
            tmp_path, as_of, n_reasons=3, metadata={}, columns=frame, row_group_size=10
        ) as h:
            h.write(frame)
            if fail:
                raise KeyboardInterrupt
            h.commit({"as_of": as_of.isoformat(), "models": {}})

    run(T, [10, 20])
    run(T + WEEK, [30, 40])
    run(T, [11, 21])  # re-scored: replaces that as_of only
    with pytest.raises(KeyboardInterrupt):
        run(T + 2 * WEEK, [50, 60], fail=True)
    runs = list_runs(tmp_path)
    assert [r.as_of for r in runs] == [T, T + WEEK]
    assert runs[0].scores()["score"].tolist() == [11, 21]
    assert runs[1].scores()["score"].tolist() == [30, 40]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        partition_name(T),
        partition_name(T + WEEK),
    ]


# --- end to end ---------------------------------------------------------------------------------


def _known_at(data: CRMData, t: pd.Timestamp) -> CRMData:
    """The export as it was at ``t``: only rows dated before it."""
    c = data.columns
    return CRMData(
        leads=data.leads[data.leads[c.created_at] < t].reset_index(drop=True),
        events=data.events[data.events[c.occurred_at] < t].reset_index(drop=True),
        stage_changes=data.stage_changes[data.stage_changes[c.changed_at] < t].reset_index(
            drop=True
        ),
    )


def _drifted(data: CRMData) -> CRMData:
    """Most leads now in government, and one event type no longer exported."""
    rng = np.random.default_rng(5)
    leads = data.leads.copy()
    moved = rng.uniform(size=len(leads)) < 0.6
    leads["industry"] = leads["industry"].astype(str).where(~moved, "government")
    events = data.events[data.events["event_type"] != GONE].reset_index(drop=True)
    return CRMData(leads=leads, events=events, stage_changes=data.stage_changes)


@pytest.fixture(scope="module")
def world(crm_medium, fast_config, tmp_path_factory) -> dict[str, Any]:
    """Models trained on the export of T (bundles), the CRM of today and a drifted copy."""
    from leadml.data.features import IdentifierColumnsExcluded
    from leadml.datasets import write_crm
    from leadml.model.bundle import save_bundle
    from leadml.model.training import train

    root = tmp_path_factory.mktemp("monitor")
    then = _known_at(crm_medium, T)
    models = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifierColumnsExcluded)
        for t in ("prospect", "opportunity"):
            model = train(then, t, fast_config).model
            models.append(str(save_bundle(model, root / f"leadml-{t}")))
    write_crm(crm_medium, root / "crm")
    write_crm(_drifted(crm_medium), root / "drifted")
    write_crm(_known_at(crm_medium, T + 4 * WEEK), root / "recent")  # the export of T + 4 weeks
    cfg = root / "fast.yaml"
    cfg.write_text(
        "timeline: {cadence_days: 28}\nmodel: {n_jobs: 1, n_estimators: 150}\n"
        "training: {n_folds: 3}\n",
        encoding="utf-8",
    )
    return {"root": root, "models": models, "config": str(cfg)}


def _score(world: dict[str, Any], data: str, history: Path, as_of: pd.Timestamp, out: Path) -> None:
    args = ["score", "--data", str(world["root"] / data), "--as-of", str(as_of.date())]
    args += [x for m in world["models"] for x in ("--model", m)]
    r = CliRunner().invoke(main, [*args, "--out", str(out), "--history", str(history)])
    assert r.exit_code == 0, r.output


def _monitor(world: dict[str, Any], data: str, history: Path, *extra: str) -> Any:
    args = ["monitor", "--history", str(history), "--data", str(world["root"] / data)]
    return CliRunner().invoke(main, [*args, "--no-track", *extra])


@pytest.mark.slow
def test_matured_run_holds_to_its_backtest_and_has_no_alerts(world, tmp_path) -> None:
    history = tmp_path / "history"
    _score(world, "crm", history, T, tmp_path / "t0.parquet")
    _score(world, "crm", history, T + WEEK, tmp_path / "t1.parquet")
    r = _monitor(world, "crm", history, "--json", str(tmp_path / "m.json"))
    assert r.exit_code == 0, r.output
    assert "no alerts" in r.output
    found = json.loads((tmp_path / "m.json").read_text())
    assert found["alert"] is False and found["alerts"] == []
    runs = found["runs"]
    assert {(x["as_of"][:10], x["transition"], x["status"]) for x in runs} == {
        (str(d.date()), t, "matured") for d in (T, T + WEEK) for t in ("prospect", "opportunity")
    }
    for x in runs:
        bt = x["backtest"]
        # The live run's interval and the backtest's overlap: the scores held up.
        assert x["roc_auc_lo"] <= bt["roc_auc_hi"] and bt["roc_auc_lo"] <= x["roc_auc_hi"], x
        assert x["roc_auc"] > 0.65
        assert max(d["psi"] for d in x["drift"]["worst"]) < 0.25
        assert x["drift"]["score_psi"] < 0.25
    tiers = next(x for x in runs if x["transition"] == "prospect")["tiers"]
    assert [t["tier"] for t in tiers] == ["A", "B", "C", "D"]
    assert all(t["lo"] <= t["conversion"] <= t["hi"] for t in tiers if t["rows"])
    assert tiers[0]["conversion"] > tiers[-1]["conversion"]

    # The second run knows each lead's trend since the first.
    second = pd.read_parquet(tmp_path / "t1.parquet")
    assert set(second["trend"]) <= {"Improving", "Steady", "Declining", "New", "Advanced"}
    assert (second["trend"] == "Steady").any() and (second["trend"] == "New").any()
    kept = second["trend"].isin(["Improving", "Steady", "Declining"])
    assert (second.loc[kept, "score"] - second.loc[kept, "previous_score"]).equals(
        second.loc[kept, "score_change"].astype("float64")
    )
    # The report and the CRM export carry it.
    csv = tmp_path / "crm.csv"
    r = CliRunner().invoke(
        main,
        ["report", "--scores", str(tmp_path / "t1.parquet"), "--out", str(csv), "--format", "csv"],
    )
    assert r.exit_code == 0, r.output
    export = pd.read_csv(csv)
    assert list(export.columns[-2:]) == ["trend", "changes"]
    assert export["trend"].notna().all()


@pytest.mark.slow
def test_pending_run_compares_implied_and_arrived_conversion(world, tmp_path) -> None:
    history = tmp_path / "history"
    _score(world, "recent", history, T + 2 * WEEK, tmp_path / "s.parquet")
    r = _monitor(world, "recent", history, "--json", str(tmp_path / "m.json"))
    assert r.exit_code == 0, r.output
    runs = json.loads((tmp_path / "m.json").read_text())["runs"]
    assert {x["status"] for x in runs} == {"pending"}
    for x in runs:
        assert 0 < x["p_mean"] < 1 and 0 <= x["arrived"] < 1
        assert 0 < x["elapsed_days"] < x["horizon_days"]
        # The newest export is 2 weeks after the run: that much of the window has arrived.
        assert x["elapsed_days"] in (13, 14)


@pytest.mark.slow
def test_drifted_copy_alerts_on_the_features_that_moved(world, tmp_path) -> None:
    history = tmp_path / "history"
    _score(world, "drifted", history, T, tmp_path / "d.parquet")
    html = tmp_path / "monitor.html"
    r = _monitor(world, "drifted", history, "--json", str(tmp_path / "m.json"), "--html", str(html))
    assert r.exit_code == ALERT_EXIT_CODE, r.output
    found = json.loads((tmp_path / "m.json").read_text())
    drift = [a for a in found["alerts"] if a["kind"] == "drift"]
    assert {a["transition"] for a in drift} == {"prospect", "opportunity"}
    for a in drift:
        if a["features"] == ["score"]:
            continue
        assert "industry" in a["features"]
        assert any(GONE in f for f in a["features"])
        assert "industry" in a["message"] and GONE in a["message"]
    assert "ALERT drift" in r.output
    assert html.stat().st_size > 10_000


@pytest.mark.slow
def test_rescoring_an_as_of_replaces_its_run_only(world, tmp_path) -> None:
    history = tmp_path / "history"
    _score(world, "crm", history, T, tmp_path / "a.parquet")
    _score(world, "drifted", history, T + WEEK, tmp_path / "b.parquet")
    _score(world, "crm", history, T + WEEK, tmp_path / "c.parquet")
    runs = list_runs(history)
    assert [r.as_of for r in runs] == [T, T + WEEK]
    again = runs[1].scores().drop(columns=["trend", "changes", "previous_score", "score_change"])
    assert again.equals(
        pd.read_parquet(tmp_path / "c.parquet").drop(
            columns=["trend", "changes", "previous_score", "score_change"]
        )
    )
    r = _monitor(world, "crm", history)
    assert r.exit_code == 0, r.output


def test_history_cannot_be_an_input(tmp_path) -> None:
    from leadml.datasets import make_crm, write_crm

    write_crm(make_crm(n_leads=50, seed=1), tmp_path / "crm")
    r = CliRunner().invoke(
        main,
        [
            "score",
            "--data",
            str(tmp_path / "crm"),
            "--model",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "s.parquet"),
            "--history",
            str(tmp_path / "crm"),
        ],
    )
    assert r.exit_code == 2
    r = CliRunner().invoke(
        main, ["monitor", "--history", str(tmp_path / "empty"), "--data", str(tmp_path / "crm")]
    )
    assert r.exit_code == 2 and "holds no scoring runs" in r.output


XSS = "<img src=x onerror=alert(1)>"


def _hostile() -> MonitorResult:
    """A result whose model version, input names and warnings are markup."""
    xss = XSS
    return MonitorResult(
        rows=[
            {
                "as_of": "2025-03-03T00:00:00",
                "transition": "prospect",
                "model_version": xss,
                "status": "pending",
                "rows": 10,
                "p_mean": 0.1,
                "horizon_days": 30,
                "elapsed_days": 3,
                "arrived": 0.0,
                "backtest": {},
                "drift": {
                    "rows": 10,
                    "worst": [{"feature": xss, "group": xss, "psi": 0.5}],
                    "groups": [{"group": xss, "psi": 0.5, "feature": xss}],
                },
            }
        ],
        warnings=[xss],
    )


def test_monitor_page_keeps_hostile_strings_as_text(tmp_path) -> None:
    xss = XSS
    text = write_monitor_page(_hostile(), tmp_path / "m.html").read_text()
    assert xss not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "<script" not in text


# --- the page in Chromium --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.browser
def test_monitor_page_renders_offline_with_plots(world, tmp_path, browser) -> None:  # noqa: F811
    from tests.test_report_browser import Page

    history = tmp_path / "history"
    _score(world, "drifted", history, T, tmp_path / "d.parquet")
    html = tmp_path / "monitor.html"
    r = _monitor(world, "drifted", history, "--html", str(html))
    assert r.exit_code == ALERT_EXIT_CODE, r.output
    page = Page(browser, html.read_text(encoding="utf-8"), tmp_path / "page.html")
    pg = page.page
    assert "drift" in pg.inner_text(".alert")
    sizes = pg.eval_on_selector_all(
        "img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])"
    )
    assert len(sizes) >= 4 and all(ok and w > 100 and h > 50 for ok, w, h in sizes)
    assert pg.evaluate("() => document.scripts.length") == 0
    page.assert_clean((tmp_path / "page.html").as_uri())
    pg.close()

    # Markup in a model version, an input's name or a warning is shown as text, never run.
    hostile = write_monitor_page(_hostile(), tmp_path / "hostile.html").read_text()
    page = Page(browser, hostile, tmp_path / "hostile-page.html")
    assert XSS in page.page.inner_text("table") and XSS in page.page.inner_text(".warn")
    assert page.page.evaluate("() => document.querySelectorAll('img[src=x]').length") == 0
    page.assert_clean((tmp_path / "hostile-page.html").as_uri())
    page.page.close()


# --- retrain and rollback against a real MLflow store ------------------------------------------


@pytest.mark.slow
def test_retrain_policy_and_rollback_move_the_champion(
    trained, crm_medium, mlflow_uri, tmp_path
) -> None:
    import mlflow

    from leadml.datasets import write_crm
    from leadml.tracking import RetrainPolicy, log_training_run

    client = mlflow.MlflowClient()
    name = "leadml-prospect"

    def champion() -> str:
        return str(client.get_model_version_by_alias(name, "champion").version)

    good = trained["prospect"]
    assert log_training_run(good)["model_version"] == "1" and champion() == "1"
    # A challenger that loses on the same rows (predicts the base rate) is kept out...
    flat_model = dataclasses.replace(good.model)
    flat_model.calibration = dataclasses.replace(good.model.calibration, a=0.0)
    worse = dataclasses.replace(good, model=flat_model, test_proba=good.test_proba * 0)
    kept = log_training_run(worse, policy=RetrainPolicy(max_champion_age_days=90))
    assert not kept["promoted"] and champion() == "1"
    # ...unless the policy says the champion is failing (a monitor alert) or too old.
    alerted = log_training_run(worse, policy=RetrainPolicy(90, alert="drift: industry"))
    assert alerted["promoted"] and "monitor alert" in alerted["decision"] and champion() == "3"
    aged = log_training_run(good, policy=RetrainPolicy(max_champion_age_days=0))
    assert aged["promoted"] and champion() == "4"
    tag = client.get_model_version(name, "3").tags["leadml.decision"]
    assert tag.startswith("promoted by policy")

    # Rollback walks the champions back: 4 -> 3 -> 1, each with its reason logged.
    r = CliRunner().invoke(main, ["rollback", "--transition", "prospect", "--reason", "bad week"])
    assert r.exit_code == 0, r.output
    assert champion() == "3" and "v4 to v3" in r.output
    assert "bad week" in client.get_model_version(name, "4").tags["leadml.rolled_back"]
    r = CliRunner().invoke(main, ["rollback", "--transition", "prospect", "--reason", "worse"])
    assert r.exit_code == 0 and champion() == "1"
    assert "v3 -> v1" in client.get_registered_model(name).tags["leadml.last_rollback"]
    r = CliRunner().invoke(main, ["rollback", "--transition", "prospect", "--reason", "again"])
    assert r.exit_code == 2 and "nothing to roll back" in r.output and champion() == "1"
    r = CliRunner().invoke(
        main, ["rollback", "--transition", "prospect", "--reason", "x", "--to", "9"]
    )
    assert r.exit_code == 2 and "no version '9'" in r.output

    # `leadml retrain` end to end. On the data the champion learned from, the champion holds
    # (the gate compares on rows it was trained on, which favours it): it stays.
    from leadml.model.bundle import save_bundle

    write_crm(crm_medium, tmp_path / "crm")
    cfg = tmp_path / "fast.yaml"
    cfg.write_text(
        "timeline: {cadence_days: 28}\nmodel: {n_jobs: 1, n_estimators: 150}\n"
        "training: {n_folds: 3}\n",
        encoding="utf-8",
    )
    retrain = ["retrain", "--data", str(tmp_path / "crm"), "--transition", "prospect"]
    r = CliRunner().invoke(main, [*retrain, "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert "decision: kept champion v1" in r.output and champion() == "1"
    assert client.get_model_version(name, "5").tags["leadml.decision"].startswith("kept")
    # A monitor alert on the champion (its newest run scored a drifted export) lets the ready
    # challenger replace it.
    write_crm(_drifted(crm_medium), tmp_path / "drifted")
    bundle = save_bundle(good.model, tmp_path / "champion")
    history = tmp_path / "history"
    args = ["score", "--data", str(tmp_path / "drifted"), "--as-of", "2025-06-01"]
    r = CliRunner().invoke(
        main,
        [
            *args,
            "--model",
            str(bundle),
            "--out",
            str(tmp_path / "s.parquet"),
            "--history",
            str(history),
        ],
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, [*retrain, "--config", str(cfg), "--history", str(history)])
    assert r.exit_code == 0, r.output
    assert "monitor: prospect drift" in r.output
    assert "decision: promoted by policy (monitor alert on champion v1" in r.output
    assert champion() == "6"

    # The monitor logs what it found on the registry version that scored the run.
    history = tmp_path / "history-registry"
    args = ["score", "--data", str(tmp_path / "drifted"), "--as-of", "2025-06-01"]
    r = CliRunner().invoke(
        main,
        [
            *args,
            "--model",
            f"models:/{name}/6",
            "--out",
            str(tmp_path / "r.parquet"),
            "--history",
            str(history),
        ],
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        main, ["monitor", "--history", str(history), "--data", str(tmp_path / "crm")]
    )
    assert r.exit_code == ALERT_EXIT_CODE, r.output
    assert f"logged to MLflow: {name}:6" in r.output
    tags = client.get_model_version(name, "6").tags
    assert "industry" in tags["leadml.monitor_alerts"]
    assert float(tags["leadml.monitor.max_feature_psi"]) > 0.25
    runs = mlflow.search_runs(filter_string="tags.`leadml.model_version` = '6'")
    assert "monitor-prospect" in set(runs["tags.mlflow.runName"])
