"""Stage models: the backtested protocol, calibration, tiers, baselines, drivers recovered."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadml.datasets import TRUE_DRIVERS
from leadml.explain.reasons import global_importance
from leadml.model.evaluation import expected_calibration_error, lift_at
from leadml.model.stage import Calibration


def test_ece_and_lift_by_hand() -> None:
    assert expected_calibration_error([0, 1, 1, 1], [0.05, 0.05, 0.95, 0.95]) == 0.25
    assert expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0
    lift, capture = lift_at(np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0]), np.arange(10)[::-1], 0.1)
    assert (lift, capture) == (5.0, 0.5)


def test_platt_calibration_is_affine_in_the_margin() -> None:
    rng = np.random.default_rng(0)
    m = rng.normal(size=5000)
    y = (rng.random(5000) < 1 / (1 + np.exp(-(0.5 * m - 1)))).astype(int)
    cal = Calibration.fit(m, y)
    assert cal.a == pytest.approx(0.5, abs=0.1) and cal.b == pytest.approx(-1, abs=0.1)
    assert Calibration.from_dict(cal.to_dict()) == cal


def test_models_are_calibrated_tiered_and_ready(trained) -> None:
    for t, r in trained.items():
        m = r.metrics  # means over the backtest folds, out of fold
        assert m["ece"] <= 0.03, t
        assert m["roc_auc"] > 0.7 and m["roc_auc_lo"] > 0.5, t
        a, b, c = r.model.tier_thresholds
        assert a >= b >= c
        # Tier A converts better than D out of fold.
        assert m["conversion_tier_A"] > 3 * m["conversion_tier_D"], t
        newest = r.backtest.folds[-1]
        assert r.test_frame["as_of"].min() >= newest.test_start
        assert set(r.model.metadata["tier_info"]) == set("ABCD")
        assert r.verdict.ready, r.verdict.reason
        assert r.model.metadata["verdict"]["ready"]
        assert r.model.metadata["backtest"]["chosen"]["n_trees"] == r.model.booster.num_trees()


def test_the_shipped_booster_is_the_refit_on_every_labelled_point(
    crm_medium, trained, fast_config
) -> None:
    """The shipped booster is exactly ``refit`` on every row of the training set, the newest
    included (relabelling only the newest 10% changes it), and tier A holds about the top 10%
    of the newest window's scores."""
    from leadml.data.trainset import build_training_set
    from leadml.model.backtest import refit
    from leadml.model.training import lgb_params

    r = trained["prospect"]
    ts = build_training_set(crm_medium, "prospect", config=fast_config)
    frame, y = ts.frame, ts.frame[ts.label].to_numpy(dtype=int)
    X, t = frame[list(ts.spec.names)], frame["as_of"]
    assert r.model.metadata["rows"]["train"] == len(frame)
    params = lgb_params(fast_config.model, len(y))
    again, linear = refit(X, y, t, r.backtest, params, n_threads=1)
    assert again.model_to_string() == r.model.booster.model_to_string()
    assert (linear is None) == (r.model.linear is None)
    if linear is not None:
        assert linear.to_dict() == r.model.linear.to_dict()
    newest = (t >= t.quantile(0.9)).to_numpy()
    flipped, _ = refit(X, np.where(newest, 1 - y, y), t, r.backtest, params, n_threads=1)
    assert not np.allclose(again.predict(X, raw_score=True), flipped.predict(X, raw_score=True))
    p = r.model.probability(r.test_frame)
    assert 0.05 <= float((p >= r.model.tier_thresholds[0]).mean()) <= 0.15


@pytest.mark.slow
def test_the_shipped_model_learns_from_the_newest_labelled_points(crm, fast_config) -> None:
    """The refit sees every labelled observation point, the newest included: relabelling only
    the newest points changes the shipped model, and its tiers come from the newest scores."""
    from leadml.data.trainset import build_training_set
    from leadml.model.training import fit_stage_model

    ts = build_training_set(crm, "prospect", config=fast_config)
    frame = ts.frame
    newest = frame["as_of"] >= frame["as_of"].quantile(0.9)
    flipped = frame.assign(**{ts.label: np.where(newest, 1 - frame[ts.label], frame[ts.label])})
    a = fit_stage_model(frame, ts.spec, ts.label, "prospect", fast_config)
    b = fit_stage_model(flipped, ts.spec, ts.label, "prospect", fast_config)
    assert a.model.metadata["rows"]["train"] == len(frame)
    X = frame[list(ts.spec.names)]
    assert not np.allclose(a.model.margin(X), b.model.margin(X))
    # Tier A holds about the top 10% of the newest window's scores.
    p = a.model.probability(a.test_frame)
    assert 0.05 <= float((p >= a.model.tier_thresholds[0]).mean()) <= 0.15


def test_scores_and_tiers_follow_probability(trained) -> None:
    model = trained["prospect"].model
    p = np.array([0.0, 0.004, 0.5, 1.0])
    assert model.to_score(p).tolist() == [0, 0, 50, 100]
    tiers = model.tier(np.array([1.0, model.tier_thresholds[1], 0.0]))
    assert tiers.tolist() == ["A", "B", "D"]


@pytest.mark.slow
def test_models_beat_the_baseline_and_recover_the_true_drivers() -> None:
    """Issue 4's bar on 10k synthetic leads, now on the backtest: ready (not worse than the
    logistic baseline beyond the interval), ECE <= 0.02, documented drivers among the top SHAP
    groups and the noise attribute not."""
    from leadml.datasets import make_crm
    from leadml.model.training import train

    data = make_crm(n_leads=10_000, seed=1)
    for t in ("prospect", "opportunity"):
        r = train(data, t)
        assert r.verdict.ready, (t, r.verdict.reason)
        assert r.metrics["pr_auc"] >= r.baseline_metrics["pr_auc_lo"], t
        assert r.metrics["ece"] <= 0.02, t
        imp = global_importance(r.model, r.test_frame.head(20_000))["mean_abs_shap"]
        top = list(imp.index[:8])
        behaviour = {
            "pricing_page_view",
            "demo_request",
            "webinar_attended",
            "form_submit",
            "engagement",
        }
        # The additive (stump) model, blended with a logistic regression whose one-hot fit
        # terms carry more credit, spreads it over more groups than deep trees did: the
        # behaviour groups are among the top five (prospect on the 10k-lead CRM: source,
        # industry, seniority, company size, then engagement).
        assert behaviour & set(top[:5]), (t, top)
        assert any(f in top for f in TRUE_DRIVERS["fit"]), (t, top)
        for noise in TRUE_DRIVERS["noise"]:
            assert noise not in top, (t, top)
            assert imp[noise] < 0.1 * imp.iloc[0], (t, imp)


def _flat_table(n: int, seed: int, signal: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    visits = rng.poisson(3, n).astype(float)
    source = rng.choice(["Google", "Referral", "Direct"], n)
    logit = -1.2 + signal * (0.6 * (visits - 3) + 1.0 * (source == "Referral"))
    converted = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "Lead Number": np.arange(100_000, 100_000 + n),
            "Visits": visits,
            "Lead Source": source,
            "Converted": np.where(converted, "Yes", "No"),
        }
    )


@pytest.mark.slow
def test_a_noise_target_is_not_ready_and_never_becomes_champion(mlflow_uri) -> None:
    import mlflow

    from leadml.config import LeadMLConfig
    from leadml.jobs import train_and_track_flat

    cfg = LeadMLConfig().with_overrides({"model": {"n_jobs": 1}})
    table = _flat_table(1_500, seed=1, signal=0.0)
    result = train_and_track_flat(table, "Converted", order_column="Lead Number", config=cfg)
    assert not result.verdict.ready
    assert result.verdict.reason.startswith("not ready")
    assert result.tracking["decision"].startswith("not promoted (not ready")
    assert not result.tracking["promoted"]
    client = mlflow.MlflowClient()
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias("leadml-flat", "champion")
    forced = train_and_track_flat(
        table, "Converted", order_column="Lead Number", config=cfg, force=True
    )
    assert forced.tracking["decision"].startswith("forced (not ready")
    assert str(client.get_model_version_by_alias("leadml-flat", "champion").version) == "2"


def test_yes_no_targets_train_and_a_real_signal_is_ready() -> None:
    from leadml.config import LeadMLConfig
    from leadml.model.training import train_flat

    cfg = LeadMLConfig().with_overrides({"model": {"n_jobs": 1}})
    result = train_flat(
        _flat_table(2_000, seed=2, signal=1.0), "Converted", order_column="Lead Number", config=cfg
    )
    assert result.verdict.ready, result.verdict.reason
    assert result.metrics["roc_auc"] > 0.7
    assert result.model.metadata["backtest"]["verdict"]["ready"]


def test_positives_only_late_in_time_still_train() -> None:
    """A funnel whose outcomes exist only in the newest months: early folds are skipped with a
    note, never an error, and the model is refit on everything."""
    from leadml.config import LeadMLConfig
    from leadml.model.training import train_flat

    table = _flat_table(2_000, seed=3, signal=1.0)
    table.loc[: int(0.72 * len(table)), "Converted"] = "No"
    cfg = LeadMLConfig().with_overrides({"model": {"n_jobs": 1}})
    with pytest.warns(UserWarning, match="hold only one outcome"):
        result = train_flat(table, "Converted", order_column="Lead Number", config=cfg)
    assert result.backtest.skipped, "the early folds have no positives"
    assert all("skipped" in note for note in result.backtest.skipped)
    assert len(result.backtest.folds) >= 1
    assert result.model.metadata["rows"]["train"] == len(table)


@pytest.mark.slow
def test_on_a_drifting_crm_the_model_is_not_worse_than_logistic_regression() -> None:
    """make_crm(drift=1): base rates rise several-fold and drivers change. Under the old single
    60/20/20 split leadml lost to logistic regression on such data; the backtested protocol must
    not lose beyond its interval, on ROC AUC or PR AUC, and must stay calibrated."""
    from leadml.datasets import make_crm
    from leadml.model.training import train

    data = make_crm(n_leads=4_000, seed=5, drift=1.0)
    result = train(data, "prospect")
    bt = result.backtest
    for metric in ("roc_auc", "pr_auc"):
        mean, lo, hi = bt.difference("logistic", metric)
        assert hi >= 0, (metric, mean, lo, hi)
    assert result.metrics["ece"] <= 0.05
