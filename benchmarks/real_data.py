"""Real-data benchmark: leadml against two baselines on public CRM-like data, same split, same run.

Usage (from the repository root)::

    python -m benchmarks.real_data                       # both datasets, default paths
    python -m benchmarks.real_data --x-education PATH --bpi PATH
    python -m benchmarks.real_data --skip-bpi

Datasets are read where they live (default ``../shared/data/...`` relative to the repository root);
nothing is copied into the project.

Per dataset and setting, three models on the same rows:

- **leadml**: the package's pipeline. X Education in flat mode (:func:`leadml.data.flat.train_flat`:
  cleaning, leakage guard, LightGBM with early stopping on the validation part, Platt
  calibration on it); BPI 2012 in event mode (:func:`leadml.data.trainset.build_training_set` then
  :func:`leadml.model.training.fit_stage_model`, exactly what :func:`leadml.model.training.train` runs).
- **logreg**: logistic regression on the same features (leadml's baseline encoder: median
  imputation with missing indicators and scaling, one-hot categories).
- **lgbm-defaults**: ``LGBMClassifier()`` with default parameters. X Education: on the raw
  columns minus the id, order and leak-guarded columns, without leadml's cleaning (text as pandas
  categories). BPI: on leadml's features (there is no raw alternative to a point-in-time set).

Both baselines are fitted on train + validation (they need no calibration slice), leadml on train
with validation for early stopping and calibration. Metrics on the test part come from
:func:`leadml.model.evaluation.evaluate` for all three: ROC AUC, PR AUC, Brier score, expected
calibration error (10 equal-width bins), lift in the top 10%. "fit s" is the whole fit (for
leadml: cleaning, leakage guard, LightGBM, calibration and its internal baseline); "score s" is
predicting the test part (leadml's includes the SHAP reasons of every row). Times are wall and
process CPU seconds; on a shared machine trust the CPU column.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_X_EDUCATION = ROOT.parent / "shared" / "data" / "x_education_leads" / "Leads.csv"
DEFAULT_BPI = ROOT.parent / "shared" / "data" / "bpi_challenge_2012" / "events.csv.gz"
METRICS = ("roc_auc", "pr_auc", "brier", "ece", "lift_10")

#: BPI 2012 moves in hours and days and spans 5.5 months: daily snapshots, short horizons.
BPI_OVERRIDES: dict[str, Any] = {
    "timeline": {"cadence_days": 1, "horizon_days": {"prospect": 7, "opportunity": 14}}
}


@dataclass
class Row:
    dataset: str
    setting: str
    model: str
    metrics: dict[str, float]
    fit_s: Took
    score_s: Took
    n_test: int
    positive_rate: float


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The same metric code for every model: leadml's own evaluation."""
    from leadml.model.evaluation import evaluate

    m = evaluate(np.asarray(y), np.asarray(p))
    return {k: float(m[k]) for k in METRICS}


@dataclass
class Took:
    """Wall and process CPU seconds (CPU includes LightGBM's threads; it is the number that
    stays put when other jobs share the machine)."""

    wall: float
    cpu: float

    def __str__(self) -> str:
        return f"{self.wall:.2f} / {self.cpu:.2f}"


def timed(fn: Callable[[], Any]) -> tuple[Any, Took]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, Took(time.perf_counter() - t0, time.process_time() - c0)


def _as_categories(fit: pd.DataFrame, test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Text columns as pandas categories with the fit part's levels (what LightGBM needs)."""
    fit, test = fit.copy(), test.copy()
    for col in fit.columns:
        if not pd.api.types.is_numeric_dtype(fit[col].dtype):
            cats = pd.Index(sorted(fit[col].dropna().astype(str).unique()))
            fit[col] = pd.Categorical(fit[col].astype("string"), categories=cats)
            text = test[col].astype("string")
            test[col] = pd.Categorical(text.where(text.isin(cats)), categories=cats)
    return fit, test


def fit_baselines(
    dataset: str,
    setting: str,
    spec: Any,
    X_fit: pd.DataFrame,
    X_test: pd.DataFrame,
    raw_fit: pd.DataFrame,
    raw_test: pd.DataFrame,
    y_fit: np.ndarray,
    y_test: np.ndarray,
    seed: int,
) -> list[Row]:
    """Logistic regression on leadml's features; default LightGBM on ``raw_*``."""
    from lightgbm import LGBMClassifier

    from leadml.model.training import make_baseline

    rows = []
    logreg = make_baseline(spec)
    _, fit_s = timed(lambda: logreg.fit(X_fit, y_fit))
    p, score_s = timed(lambda: logreg.predict_proba(X_test)[:, 1])
    rate = float(np.mean(y_test))
    rows.append(
        Row(dataset, setting, "logreg", metrics(y_test, p), fit_s, score_s, len(y_test), rate)
    )

    lgbm_fit, lgbm_test = _as_categories(raw_fit, raw_test)
    lgbm = LGBMClassifier(random_state=seed, verbose=-1)
    _, fit_s = timed(lambda: lgbm.fit(lgbm_fit, y_fit))
    p, score_s = timed(lambda: lgbm.predict_proba(lgbm_test)[:, 1])
    rows.append(
        Row(
            dataset, setting, "lgbm-defaults", metrics(y_test, p), fit_s, score_s, len(y_test), rate
        )
    )
    return rows


def markdown(rows: list[Row]) -> str:
    head = (
        "| setting | model | test rows (positive) | ROC AUC | PR AUC | Brier | ECE | lift@10% "
        "| fit s wall / CPU | score s wall / CPU |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        m = r.metrics
        lines.append(
            f"| {r.setting} | {r.model} | {r.n_test:,} ({r.positive_rate:.1%}) | {m['roc_auc']:.3f} | {m['pr_auc']:.3f} | "
            f"{m['brier']:.3f} | {m['ece']:.3f} | {m['lift_10']:.2f} | {r.fit_s} | "
            f"{r.score_s} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- X Education


def bench_x_education(path: Path, seed: int) -> tuple[list[Row], list[str]]:
    """Flat mode on Leads.csv in three settings (see the notes the function returns)."""
    from leadml.config import LeadMLConfig
    from leadml.data.flat import RandomSplitWarning
    from leadml.datasets import (
        X_EDUCATION_ID,
        X_EDUCATION_ORDER,
        X_EDUCATION_TARGET,
        load_x_education,
    )
    from leadml.model.training import train_flat
    from leadml.serve.scoring import build_flat_features, score_flat

    cfg = LeadMLConfig().with_overrides({"model": {"seed": seed}})
    leads = load_x_education(path)
    y_all = leads[X_EDUCATION_TARGET].to_numpy()
    notes: list[str] = []
    rows: list[Row] = []
    settings: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
        ("order split (Lead Number), guard on", {"order_column": X_EDUCATION_ORDER}, ()),
        ("random split, guard on", {}, ()),
        ("random split, Tags + Lead Quality allowed", {}, ("Tags", "Lead Quality")),
    ]
    for setting, split_args, allow in settings:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomSplitWarning)
            result, fit_s = timed(
                lambda split_args=split_args, allow=allow: train_flat(
                    leads,
                    X_EDUCATION_TARGET,
                    id_column=X_EDUCATION_ID,
                    allow_columns=allow,
                    config=cfg,
                    **split_args,
                )
            )
        split = result.split
        test = leads.iloc[split.test]
        scored, score_s = timed(
            lambda test=test, result=result: score_flat(test, result.model, cfg)
        )
        y_test = y_all[split.test]
        p = scored["probability"].to_numpy()
        rows.append(
            Row(
                "x_education",
                setting,
                "leadml",
                metrics(y_test, p),
                fit_s,
                score_s,
                len(y_test),
                float(y_test.mean()),
            )
        )
        notes.append(
            f"**{setting}**: {split.description}; {len(result.model.spec.names)} features, "
            f"{result.metrics['n_trees']} trees."
        )
        notes.append(
            "  excluded as leaky: "
            + (", ".join(result.leakage.excluded) or "none")
            + (f"; kept on purpose: {', '.join(result.leakage.allowed)}" if allow else "")
        )
        fit_rows = np.sort(np.concatenate([split.train, split.valid]))
        features = build_flat_features(leads, result.model)
        ordering = [split_args.get("order_column")]
        raw_cols = [
            c
            for c in leads.columns
            if c not in (X_EDUCATION_TARGET, X_EDUCATION_ID, *ordering)
            and c not in result.leakage.excluded
        ]
        rows += fit_baselines(
            "x_education",
            setting,
            result.model.spec,
            features.iloc[fit_rows],
            features.iloc[split.test],
            leads[raw_cols].iloc[fit_rows],
            leads[raw_cols].iloc[split.test],
            y_all[fit_rows],
            y_test,
            seed,
        )
    return rows, notes


# --------------------------------------------------------------------------- BPI 2012


def bench_bpi(path: Path, seed: int) -> tuple[list[Row], list[str]]:
    """Event mode on the BPI 2012 log: both transitions, out-of-time with purge gaps."""
    from leadml.config import LeadMLConfig
    from leadml.data.features import IdentifierColumnsExcluded
    from leadml.data.trainset import build_training_set
    from leadml.datasets import load_bpi2012
    from leadml.model.training import fit_stage_model
    from leadml.serve.scoring import score_features

    cfg = LeadMLConfig().with_overrides({**BPI_OVERRIDES, "model": {"seed": seed}})
    data, load_s = timed(lambda: load_bpi2012(path))
    s = data.summary()
    notes = [
        f"log: {s['leads']:,} applications, {s['events']:,} engagement events "
        f"({s['event_types']} types), {s['stage_changes']:,} stage changes, {s['start']} to "
        f"{s['end']} (loaded and mapped in {load_s.wall:.1f} s wall)",
        f"timeline: observation points every {cfg.timeline.cadence_days} day, horizons "
        f"{dict(cfg.timeline.horizon_days)} days (the process moves in hours and days)",
    ]
    rows: list[Row] = []
    for transition in ("prospect", "opportunity"):

        def fit(transition: str = transition) -> Any:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", IdentifierColumnsExcluded)
                ts = build_training_set(data, transition, config=cfg)
            return ts, fit_stage_model(ts.frame, ts.spec, ts.label, transition, cfg)

        (ts, result), fit_s = timed(fit)
        frame = ts.frame
        m_train, m_cal, m_test = result.split.masks(frame["as_of"])
        y = frame[ts.label].to_numpy().astype(int)
        X = frame[list(ts.spec.names)]
        test = frame.loc[m_test].assign(stage="lead" if transition == "prospect" else "prospect")
        scored, score_s = timed(
            lambda test=test, result=result, transition=transition: score_features(
                test, {transition: result.model}, cfg
            )
        )
        p_check = result.model.probability(X[m_test])
        y_test = y[m_test]
        setting = f"lead -> {transition}" if transition == "prospect" else "prospect -> opportunity"
        rows.append(
            Row(
                "bpi2012",
                setting,
                "leadml",
                metrics(y_test, p_check),
                fit_s,
                score_s,
                len(y_test),
                float(y_test.mean()),
            )
        )
        fit_rows = m_train | m_cal
        rows += fit_baselines(
            "bpi2012",
            setting,
            ts.spec,
            X[fit_rows],
            X[m_test],
            X[fit_rows],
            X[m_test],
            y[fit_rows],
            y_test,
            seed,
        )
        sp = result.split
        notes.append(
            f"**{setting}**: {ts.summary['kept']:,} observation points "
            f"({ts.summary['positive_rate']:.1%} positive; as_of up to {ts.summary['end']}, so "
            f"no label window runs past the log), {len(ts.spec.names)} features; out-of-time "
            "split on as_of: train < "
            f"{sp.t_train_end}, calibration [{sp.t_cal_start}, {sp.t_cal_end}), test >= "
            f"{sp.t_test_start} ({sp.purge_days}-day purge gaps); rows "
            f"{int(m_train.sum()):,}/{int(m_cal.sum()):,}/{int(m_test.sum()):,}; "
            f"{result.metrics['n_trees']} trees; scored {len(scored):,} test rows with reasons."
        )
    return rows, notes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--x-education", type=Path, default=DEFAULT_X_EDUCATION)
    parser.add_argument("--bpi", type=Path, default=DEFAULT_BPI)
    parser.add_argument("--skip-x-education", action="store_true")
    parser.add_argument("--skip-bpi", action="store_true")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    import platform

    import lightgbm
    import sklearn

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    out: list[str] = [
        f"load average at start: {load} ({os.cpu_count()} CPUs); Python "
        f"{platform.python_version()}, LightGBM {lightgbm.__version__}, scikit-learn "
        f"{sklearn.__version__}; seed {args.seed}",
        "",
    ]
    if not args.skip_x_education:
        rows, notes = bench_x_education(args.x_education, args.seed)
        out += ["## X Education Leads.csv (flat mode)", "", markdown(rows), "", *notes, ""]
    if not args.skip_bpi:
        rows, notes = bench_bpi(args.bpi, args.seed)
        out += ["## BPI Challenge 2012 (event mode)", "", markdown(rows), "", *notes, ""]
    print("\n".join(f"- {line}" if line.startswith("**") else line for line in out))


if __name__ == "__main__":
    main()
