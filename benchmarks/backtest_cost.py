"""What the rolling backtest costs: the whole training protocol against one split's single fit.

    python -m benchmarks.backtest_cost [--leads 200000] [--weeks 26]

Issue 15's floor: on the 200k-lead training set with 26 weekly observation points, the new
protocol (backtest, refit on every labelled row, calibration, tiers: ``fit_stage_model``) takes
at most 3x the protocol it replaced, measured in the same run on the same rows:

* ``single fit`` (before issue 15): one time-ordered 60/20/20 split; LightGBM on the oldest 60%,
  early-stopped on the next 20%, Platt on that 20%, and the logistic-regression baseline fitted
  on the 60% and scored on the newest 20%.
* ``backtest`` (now): ``leadml.model.training.fit_stage_model`` with the default config.

Both use the config's LightGBM parameters and all cores. Training-set building (shared by both,
about 19 s, see ``features_speed``) is timed separately and left out of the ratio.
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from benchmarks._common import peak_rss_gb


def single_fit(frame: pd.DataFrame, names: list[str], categorical: list[str], label: str) -> dict:
    """The protocol before issue 15, reconstructed from its code (commit 9273ef1~1)."""
    from leadml.config import LeadMLConfig
    from leadml.model.backtest import make_logistic
    from leadml.model.evaluation import evaluate
    from leadml.model.stage import Calibration
    from leadml.model.training import lgb_params

    cfg = LeadMLConfig()
    t = frame["as_of"].to_numpy()
    weeks = np.sort(np.unique(t))
    cut1, cut2 = weeks[int(0.6 * len(weeks))], weeks[int(0.8 * len(weeks))]
    m_train, m_cal, m_test = t < cut1, (t >= cut1) & (t < cut2), t >= cut2
    X, y = frame[names], frame[label].to_numpy(dtype=int)
    params = lgb_params(cfg.model, int(m_train.sum()))
    dtrain = lgb.Dataset(X[m_train], y[m_train], categorical_feature=categorical or "auto")
    dcal = lgb.Dataset(X[m_cal], y[m_cal], reference=dtrain)
    booster = lgb.train(
        params,
        dtrain,
        num_boost_round=cfg.model.n_estimators,
        valid_sets=[dcal],
        callbacks=[lgb.early_stopping(cfg.model.early_stopping_rounds, verbose=False)],
    )
    margin = np.asarray(booster.predict(X, raw_score=True, num_iteration=booster.best_iteration))
    cal = Calibration.fit(margin[m_cal], y[m_cal], "platt")
    numeric = [c for c in names if c not in categorical]
    logistic = make_logistic(numeric, categorical).fit(X[m_train], y[m_train])
    p_base = logistic.predict_proba(X[m_test])[:, 1]
    return {
        "trees": booster.best_iteration,
        "roc_auc": evaluate(y[m_test], cal(margin[m_test]))["roc_auc"],
        "baseline_roc_auc": evaluate(y[m_test], p_base)["roc_auc"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leads", type=int, default=200_000)
    ap.add_argument("--weeks", type=int, default=26)
    a = ap.parse_args(argv)

    from leadml.data.features import IdentifierColumnsExcluded
    from leadml.data.trainset import build_training_set
    from leadml.datasets import make_crm
    from leadml.model.training import fit_stage_model

    data = make_crm(n_leads=a.leads, seed=5)
    end = data.end - pd.Timedelta(days=30)
    start = end - pd.Timedelta(weeks=a.weeks - 1)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifierColumnsExcluded)
        ts = build_training_set(data, "prospect", start, end)
    t_build = time.perf_counter() - t0
    frame, names = ts.frame, list(ts.spec.names)
    print(
        f"training set: {a.leads:,} leads, {len(frame):,} rows, "
        f"{frame['as_of'].nunique()} weekly points, {len(names)} features, "
        f"positive rate {frame[ts.label].mean():.4f} (built in {t_build:.1f} s)"
    )

    t0 = time.perf_counter()
    old = single_fit(frame, names, list(ts.spec.categorical), ts.label)
    t_old = time.perf_counter() - t0
    t0 = time.perf_counter()
    new = fit_stage_model(frame, ts.spec, ts.label, "prospect")
    t_new = time.perf_counter() - t0
    bt = new.backtest
    n_trees = new.model.booster.num_trees()
    print()
    print("| protocol | wall s | trees shipped | ROC AUC (how measured) | ratio |")
    print("|---|---:|---:|---|---:|")
    print(
        f"| single fit (60/20/20, before issue 15) | {t_old:.1f} | {old['trees']} | "
        f"{old['roc_auc']:.3f} on the newest 20% (logistic {old['baseline_roc_auc']:.3f}) | 1.00 |"
    )
    roc, lo, hi = bt.metric("leadml", "roc_auc")
    lroc = bt.metric("logistic", "roc_auc")[0]
    print(
        f"| backtest + refit (`fit_stage_model`) | {t_new:.1f} | {n_trees} | "
        f"{roc:.3f} [{lo:.3f}, {hi:.3f}] over {len(bt.folds)} folds (logistic {lroc:.3f}) | "
        f"**{t_new / t_old:.2f}** |"
    )
    print(f"\nchose {bt.candidate}, calibration {bt.calibration_method}; {new.verdict.reason}")
    print(f"peak RSS {peak_rss_gb():.1f} GB")
    return {"single_s": t_old, "backtest_s": t_new, "ratio": t_new / t_old}


if __name__ == "__main__":
    main()
