"""Rolling-origin backtest: fold boundaries and purge, skipping, choices, verdict, refit.

Small tables (2-3k rows), one LightGBM thread and a short boosting budget keep each test to a few
seconds; the module-scoped fixtures are shared by the tests that only read a result.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadml.config import ModelConfig
from leadml.model.backtest import (
    BacktestError,
    BacktestResult,
    Candidate,
    make_folds,
    readiness,
    refit,
    run_backtest,
    split_features,
)
from leadml.model.training import lgb_params

START = pd.Timestamp("2023-01-01")
PURGE = pd.Timedelta(days=30)
FAST = {"n_threads": 1, "max_trees": 80, "early_stopping_rounds": 15}


def _params(n: int) -> dict:
    # No bagging, so a tree's root counts every training row (see test_refit_...).
    return lgb_params(ModelConfig(n_jobs=1, learning_rate=0.1, subsample=1.0), n)


def _table(
    n: int = 2500,
    *,
    seed: int = 0,
    signal: float = 1.0,
    drift: bool = False,
    positives_from_day: int | None = None,
) -> tuple[pd.DataFrame, np.ndarray, pd.Series]:
    """Observation points over two years: features, a 0/1 label and the as_of time.

    ``drift``: the base rate rises about fivefold over the span and the ``score`` effect turns
    from positive to negative. ``positives_from_day``: no positive before that day.
    """
    rng = np.random.default_rng(seed)
    days = np.sort(rng.integers(0, 720, n))
    u = days / 720
    X = pd.DataFrame(
        {
            "visits": rng.poisson(2.0, n).astype(float),
            "score": rng.normal(size=n),
            "noise": rng.normal(size=n),
            "source": pd.Categorical(rng.choice(["ads", "seo", "event", "partner"], n)),
        }
    )
    X.loc[rng.uniform(size=n) < 0.1, "score"] = np.nan
    score = np.nan_to_num(X["score"].to_numpy())
    effect = 1.2 - 2.0 * u if drift else 1.0
    logit = (-4.8 + 2.8 * u if drift else -3.6) + signal * (
        0.8 * np.log1p(X["visits"].to_numpy())
        + effect * score
        + 0.8 * (X["source"] == "event").to_numpy()
        + 0.8 * ((X["visits"] > 2) & (score > 0)).to_numpy()
    )
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    if positives_from_day is not None:
        y[days < positives_from_day] = 0
    t = pd.Series(START + pd.to_timedelta(days, unit="D"), name="as_of")
    return X, y, t


def _run(X: pd.DataFrame, y: np.ndarray, t: pd.Series, **kw) -> BacktestResult:
    kw = {
        "categorical": ["source"],
        "params": _params(len(y)),
        "purge": PURGE,
        "rule": X["visits"].to_numpy(),  # the marketer's rule: most visits first
        **FAST,
        **kw,
    }
    return run_backtest(X, y, t, **kw)


@pytest.fixture(scope="module")
def signal_run():
    X, y, t = _table(seed=1)
    return X, y, t, _run(X, y, t)


# ---------------------------------------------------------------------------------- folds


def test_folds_hand_computed_datetime_with_purge():
    # One point a day for 100 days (Jan 1 .. Apr 9, 2024 is a leap year). The span runs to the
    # second after the last point: 99 days + 1 s = 8,553,601 s. Test span = the last 40%:
    # start 0.6 * 8,553,601 s = 59 d 09:36:00.6 -> rounded up to Feb 29 09:36:01; four windows
    # of 855,360.1 s (9 d 21:36:00.1), inner boundaries rounded up to the second.
    t = pd.Series(pd.date_range("2024-01-01", periods=100, freq="D"))
    folds = make_folds(t, 4, purge=pd.Timedelta(days=7), min_train_rows=10)
    edges = [f.test_start for f in folds] + [folds[-1].test_end]
    assert edges == [
        pd.Timestamp(s)
        for s in (
            "2024-02-29 09:36:01",
            "2024-03-10 07:12:01",
            "2024-03-20 04:48:01",
            "2024-03-30 02:24:01",
            "2024-04-09 00:00:01",
        )
    ]
    assert all(f.purge == pd.Timedelta(days=7) for f in folds)
    train, test = folds[0].masks(t)
    # Train: day + 7 d < Feb 29 09:36:01 -> days 0..52 (Jan 1 .. Feb 22); test: days 60..69.
    assert np.flatnonzero(train).tolist() == list(range(53))
    assert np.flatnonzero(test).tolist() == list(range(60, 70))
    assert folds[0].train_end == pd.Timestamp("2024-02-22 09:36:01")
    # The last window holds the last point.
    assert folds[-1].masks(t)[1][-1]


def test_folds_hand_computed_integer_order_key():
    # Equal row counts for a numeric key: 100 rows, the last 40 cut into 4 windows of 10 rows.
    t = np.random.default_rng(0).permutation(100)  # rows need not be sorted
    folds = make_folds(t, 4, purge=0, min_train_rows=10)
    assert [(f.test_start, f.test_end) for f in folds] == [(60, 70), (70, 80), (80, 90), (90, 100)]
    train, test = folds[1].masks(t)
    assert sorted(t[train]) == list(range(70)) and sorted(t[test]) == list(range(70, 80))
    # Ties stay in one window, and the purge is in key units: every key twice, purge 5.
    t2 = np.repeat(np.arange(50), 2)
    folds2 = make_folds(t2, 4, purge=5, min_train_rows=10)
    assert [(f.test_start, f.test_end) for f in folds2] == [(30, 35), (35, 40), (40, 45), (45, 50)]
    assert folds2[0].masks(t2)[0].sum() == 50  # keys 0..24: 24 + 5 < 30
    # Too little history for min_train_rows pushes the test span later.
    folds3 = make_folds(np.arange(100), 4, min_train_rows=80)
    assert [f.test_start for f in folds3] == [80, 85, 90, 95]
    with pytest.raises(BacktestError, match="no room for a test window"):
        make_folds(np.arange(100), 4, purge=200, min_train_rows=10)


def _times(draw, kind: str, n: int):
    if kind == "int":
        t = np.array(draw(st.lists(st.integers(-500, 500), min_size=n, max_size=n)))
        return t, draw(st.integers(0, 400))
    if kind == "float":
        values = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
        t = np.array(draw(st.lists(values, min_size=n, max_size=n)))
        return t, draw(st.floats(0, 400, allow_nan=False))
    secs = draw(st.lists(st.integers(0, 3 * 10**7), min_size=n, max_size=n))
    t = pd.Series(START + pd.to_timedelta(secs, unit="s"))
    return t, pd.Timedelta(seconds=draw(st.integers(0, 10**7)))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_folds_purge_order_and_disjoint_windows_property(data):
    kind = data.draw(st.sampled_from(["int", "float", "datetime"]))
    n = data.draw(st.integers(3, 80))
    t, purge = _times(data.draw, kind, n)
    n_folds = data.draw(st.integers(1, 6))
    min_rows = data.draw(st.integers(1, 15))
    fraction = data.draw(st.floats(0.05, 0.95))
    try:
        folds = make_folds(t, n_folds, purge=purge, test_fraction=fraction, min_train_rows=min_rows)
    except BacktestError:
        return  # too little span for the asked windows: an error, never a bad fold
    values = t.to_numpy() if isinstance(t, pd.Series) else t
    assert 1 <= len(folds) <= n_folds
    seen = np.zeros(n, dtype=int)
    for i, f in enumerate(folds):
        train, test = f.masks(t)
        # No training label window (t, t + purge] reaches into the test window.
        if isinstance(t, pd.Series):
            assert (t[train] + purge < f.test_start).all()
        else:
            assert (values[train] + purge < f.test_start).all()
            assert (values[train] + purge <= f.test_start).all()
        assert ((values[test] >= f.test_start) & (values[test] < f.test_end)).all()
        assert f.test_start < f.test_end
        if i:
            assert folds[i - 1].test_end <= f.test_start  # ordered, not overlapping
        seen += test
    assert seen.max() <= 1
    assert folds[0].masks(t)[0].sum() >= min_rows
    assert folds[-1].test_end > values.max()


# ------------------------------------------------------------------------- skip and errors


def test_late_positives_skip_early_folds_and_still_give_a_result():
    # Positives only from day 540 of 720: the first folds train on no positive at all.
    X, y, t = _table(seed=2, positives_from_day=540)
    result = _run(X, y, t, candidates=[Candidate("base")], half_lives=())
    assert len(result.folds) >= 1
    assert result.skipped and all("skipped" in s for s in result.skipped)
    assert "fold 0" in result.skipped[0] and "0 positives" in result.skipped[0]
    assert result.per_fold["positives"].gt(0).all()
    assert isinstance(readiness(result).ready, bool)


def test_no_usable_fold_says_what_was_found():
    X, y, t = _table(n=1500, seed=3, positives_from_day=700)
    with pytest.raises(BacktestError, match="no usable fold") as e:
        _run(X, y, t, candidates=[Candidate("base")], half_lives=())
    assert "fold 0: train" in str(e.value) and "positives" in str(e.value)
    assert isinstance(e.value, ValueError)


def test_history_shorter_than_the_purge_early_stops_unpurged_and_says_so():
    """Ten weekly observation points and a 35-day label window: no purged inner split exists.
    The folds still run (their test windows purged), with a remark instead of an error."""
    X, y, _ = _table(n=3000, seed=5)
    weeks = np.sort(np.random.default_rng(5).integers(0, 10, len(y)))
    t = pd.Series(START + pd.to_timedelta(7 * weeks, unit="D"), name="as_of")
    purge = pd.Timedelta(days=35)
    result = _run(X, y, t, purge=purge, candidates=[Candidate("base")], half_lives=())
    # Only a fold whose training part is one observation time (no time split at all) is skipped.
    assert len(result.folds) >= 2 and len(result.skipped) <= 1
    assert result.remarks and all("not purged" in r for r in result.remarks)
    assert {f"fold {f.index}:" for f in result.folds} == {
        r.split(" inner")[0] for r in result.remarks
    }
    for f in result.folds:
        train, test = f.masks(t)
        assert (t[train] + purge < f.test_start).all() and test.any()


def test_plain_boosters_only():
    X, y, t = _table(n=500)
    with pytest.raises(ValueError, match="TreeSHAP"):
        _run(X, y, t, params={**_params(500), "linear_tree": True})


# ------------------------------------------------------------------------------- verdicts


def test_pure_noise_is_not_ready():
    X, y, t = _table(seed=4, signal=0.0)
    result = _run(X, y, t, candidates=[Candidate("base")], half_lives=())
    verdict = readiness(result)
    assert not verdict.ready
    assert verdict.reason.startswith("not ready:")


def test_real_signal_is_ready(signal_run):
    *_, result = signal_run
    verdict = result.verdict
    assert verdict.ready, verdict.reason
    assert verdict.reason.startswith("ready: ROC AUC")
    assert len(result.folds) == 4 and not result.skipped
    # Every model on the same test rows of every fold.
    rows = result.per_fold.pivot(index="fold", columns="model", values="rows")
    assert set(rows.columns) == {"leadml", "base_rate", "logistic", "lgbm_default", "rule"}
    assert (rows.nunique(axis=1) == 1).all()
    lo = result.metric("leadml", "roc_auc")[1]
    assert lo > 0.5


def test_drift_backtest_is_not_worse_than_logistic():
    # Base rate rising ~4x over two years and the score effect changing sign. (On this table
    # today's single 60/20/20 split gets ROC AUC 0.56 and ECE 0.10 on its test slice; the
    # backtest's newest fold 0.65 and 0.04.) The chosen protocol must not lose to logistic
    # regression beyond noise, must adapt (recency weighting) and stay calibrated out of sample.
    X, y, t = _table(n=3000, seed=5, drift=True)
    early, late = y[t < t.quantile(0.3)].mean(), y[t > t.quantile(0.9)].mean()
    assert late > 3 * early
    result = _run(X, y, t)
    diff, lo, hi = result.difference("logistic", "roc_auc")
    assert hi >= 0, result.format()
    assert result.half_life is not None, result.search
    assert result.candidate in {"additive", "shallow", "base"}
    assert 1 <= result.n_trees <= FAST["max_trees"]
    assert result.n_trees == int(round(np.median(result.best_iterations)))
    assert result.calibration_method in {"platt", "platt_recent", "isotonic"}
    # Not boosted from a linear base, so a blend with one was tried (and logged).
    assert set(result.search["stage"]) == {"parameters", "recency", "all folds", "blend"}
    # Calibrated fold by fold on earlier folds' out-of-fold rows, it tracks the rising rate
    # better than a logistic regression fit on the whole past.
    for metric in ("log_loss", "ece"):
        assert result.metric("leadml", metric)[0] < result.metric("logistic", metric)[0]


# ---------------------------------------------------------------------------------- refit


def test_refit_uses_every_row_and_the_chosen_trees(signal_run):
    X, y, t, result = signal_run
    params = _params(len(y))
    booster, linear = refit(X, y, t, result, params, n_threads=1)
    # The signal is log-linear in the features: stumps boosted from a logistic margin win.
    assert result.linear and result.candidate == "linear"
    assert linear is not None and set(linear.numeric) == {"visits", "score", "noise"}
    assert linear.numeric["score"]["coef"] > 0.5 > abs(linear.numeric["noise"]["coef"])
    assert booster.num_trees() == result.n_trees
    assert not booster.params.get("linear_tree")
    root = booster.dump_model()["tree_info"][0]["tree_structure"]
    assert root["internal_count"] == len(X)  # no bagging in these params: the root sees all rows
    # Recency weights, when chosen, change the model; the newest rows matter.
    weighted = dataclasses.replace(result, half_life=pd.Timedelta(days=60))
    unweighted = dataclasses.replace(result, half_life=None)
    p_w = refit(X, y, t, weighted, params, n_threads=1)[0].predict(X.iloc[:200], raw_score=True)
    p_u = refit(X, y, t, unweighted, params, n_threads=1)[0].predict(X.iloc[:200], raw_score=True)
    assert not np.allclose(p_w, p_u)
    # Calibrating the refit's margins with the backtest's mapping gives probabilities.
    p = result.calibration(booster.predict(X, raw_score=True))
    assert ((p > 0) & (p < 1)).all()


def test_each_fold_scores_its_model_refit_on_the_whole_training_part():
    # The shipped model learns from every labelled row; a fold must measure the same kind of
    # model: refit on all of its training part (the newest fifth, its early-stopping slice,
    # included) with its early-stopped tree count, not the model that stopped early.
    X, y, t = _table(n=2500, seed=3)
    result = _run(
        X,
        y,
        t,
        candidates=[Candidate("additive", {"num_leaves": 2, "max_depth": 1})],
        half_lives=(),
        blend_weights=(),
    )
    assert result.linear_weight is None and not result.linear
    params = {**_params(len(y)), "num_leaves": 2, "max_depth": 1, "seed": 42, "num_threads": 1}
    import lightgbm as lgb

    for fold, best in zip(result.folds, result.best_iterations, strict=True):
        train, test = fold.masks(t)
        ds = lgb.Dataset(
            X[train],
            y[train],
            categorical_feature=["source"],
            params={"feature_pre_filter": False, "verbosity": -1, "seed": 42},
        )
        booster = lgb.train({**params, "metric": "None", "verbosity": -1}, ds, num_boost_round=best)
        oof = result.oof[result.oof["fold"] == fold.index]
        assert (oof["row"].to_numpy() == np.flatnonzero(test)).all()
        expected = booster.predict(X[test], raw_score=True)
        np.testing.assert_allclose(oof["margin"].to_numpy(), expected, rtol=1e-9, atol=1e-9)


def test_a_blend_ships_trees_and_a_scaled_logistic_regression_exactly_explained(signal_run):
    from leadml.model.linear import LinearBase

    X, y, t, result = signal_run
    params = _params(len(y))
    plain = dataclasses.replace(result, linear=False, linear_weight=None)
    blend = dataclasses.replace(result, linear=False, linear_weight=0.5)
    b_plain, none = refit(X, y, t, plain, params, n_threads=1)
    b_blend, linear = refit(X, y, t, blend, params, n_threads=1)
    assert none is None and linear is not None
    # The trees are fit beside the linear part, not from it: the same booster as unblended.
    assert b_blend.model_to_string() == b_plain.model_to_string()
    # The linear part reads only the columns the trees split on (never a column they found
    # no use for), scaled by the blend weight.
    used = split_features(b_blend, list(X.columns))
    assert set(linear.numeric) | set(linear.categorical) == set(used)
    full = LinearBase.fit(X[used], y, ["source"], seed=result.seed)
    np.testing.assert_allclose(linear.margin(X), 0.5 * full.margin(X), rtol=1e-12, atol=1e-12)
    # Exactly explained: the linear part's Shapley values plus TreeSHAP add up to the margin.
    names = list(X.columns)
    phi = linear.contributions(X, names)
    tree_phi = b_blend.predict(X, pred_contrib=True)
    total = phi.sum(axis=1) + tree_phi.sum(axis=1)
    np.testing.assert_allclose(
        total, linear.margin(X) + b_blend.predict(X, raw_score=True), rtol=1e-9, atol=1e-9
    )


def test_the_blend_is_chosen_by_the_backtest_and_reported():
    X, y, t = _table(n=2500, seed=4)
    result = _run(
        X,
        y,
        t,
        candidates=[Candidate("additive", {"num_leaves": 2, "max_depth": 1})],
        half_lives=(),
    )
    blends = result.search[result.search["stage"] == "blend"]
    # Every weight tried on every search fold, logged beside the other choices.
    assert set(blends["candidate"]) == {
        "additive + 0.333 x linear",
        "additive + 1 x linear",
        "additive + 3 x linear",
    }
    assert len(blends) == 3 * 2
    assert result.linear_weight in (None, 1 / 3, 1.0, 3.0)
    chosen = result.to_dict()["chosen"]
    assert chosen["linear_weight"] == result.linear_weight
    assert result.format().splitlines()[1].startswith(f"chosen: {result.chosen},")


# ----------------------------------------------------------------------------- reporting


def test_to_dict_is_json_and_format_is_a_table(signal_run):
    *_, result = signal_run
    d = result.to_dict(include_oof=True)
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["chosen"]["n_trees"] == result.n_trees
    assert d["folds"][0]["purge"] == "P30DT0H0M0S"
    assert d["verdict"]["ready"] is True
    assert len(d["oof"]["row"]) == int(result.per_fold.query("model == 'leadml'")["rows"].sum())
    out = result.format()
    assert "leadml" in out and "lgbm_default" in out and out.splitlines()[-1].startswith("ready")
    # OOF rows are the test rows, each once, with out-of-sample probabilities.
    assert result.oof["row"].is_unique
    assert result.oof["proba"].between(0, 1).all()
