"""Real-data benchmark: leadml's rolling backtest against every baseline, on public CRM-like data.

Usage (from the repository root)::

    python -m benchmarks.real_data                       # both datasets, default paths
    python -m benchmarks.real_data --x-education PATH --bpi PATH
    python -m benchmarks.real_data --skip-bpi

Datasets are read where they live (default ``../shared/data/...`` relative to the repository root);
nothing is copied into the project.

What runs is exactly what ``leadml train`` runs: X Education in flat mode
(:func:`leadml.model.training.train_flat`, ordered by ``Lead Number``), BPI 2012 in event mode
(:func:`leadml.data.trainset.build_training_set` then
:func:`leadml.model.training.fit_stage_model`), both transitions. Each reports the rolling backtest
(:mod:`leadml.model.backtest`): per model the mean over the folds with a 95% interval, on the same
folds and rows for leadml, the base rate, logistic regression, LightGBM with default parameters
and the marketer's rule, then the readiness verdict. The baseline for the issue's floors is the
best of them by mean ROC AUC. "fit s" is the whole training call (backtest, search, refit) in
wall and process CPU seconds; on a shared machine trust the CPU column.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_X_EDUCATION = ROOT.parent / "shared" / "data" / "x_education_leads" / "Leads.csv"
DEFAULT_BPI = ROOT.parent / "shared" / "data" / "bpi_challenge_2012" / "events.csv.gz"
METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_10")

#: BPI 2012 moves in hours and days and spans 5.5 months: daily snapshots, short horizons.
BPI_OVERRIDES: dict[str, Any] = {
    "timeline": {"cadence_days": 1, "horizon_days": {"prospect": 7, "opportunity": 14}}
}


def timed(fn: Callable[[], Any]) -> tuple[Any, str]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, f"{time.perf_counter() - w:.1f} s wall, {time.process_time() - c:.1f} s CPU"


def table(result: Any) -> str:
    """Markdown: one row per model, mean [95% interval] per metric, over the backtest folds."""
    bt = result.backtest
    models = [
        m
        for m in ("leadml", "base_rate", "logistic", "lgbm_default", "rule")
        if (bt.summary["model"] == m).any()
    ]
    head = "| model | " + " | ".join(METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 1)]
    for m in models:
        cells = []
        for metric in METRICS:
            mean, lo, hi = bt.metric(m, metric)
            cells.append(f"{mean:.3f} [{lo:.3f}, {hi:.3f}]" if lo == lo else f"{mean:.3f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(name: str, result: Any, took: str) -> list[str]:
    bt = result.backtest
    rivals = [m for m in ("logistic", "lgbm_default", "rule") if (bt.summary["model"] == m).any()]
    best = max(rivals, key=lambda m: bt.metric(m, "roc_auc")[0])
    hl = "none" if bt.half_life is None else str(bt.half_life)
    return [
        f"### {name}",
        "",
        table(result),
        "",
        f"- folds: {len(bt.folds)} ({len(bt.skipped)} skipped); rows {bt.n_rows:,}, positives "
        f"{bt.n_positives:,}; fit {took}",
        f"- chosen: {bt.chosen}, {bt.n_trees} trees, recency half-life {hl}, calibration "
        f"{bt.calibration_method}",
        f"- best baseline by ROC AUC: {best}; leadml - {best}: ROC AUC "
        f"{bt.difference(best, 'roc_auc')[0]:+.3f}, PR AUC {bt.difference(best, 'pr_auc')[0]:+.3f}",
        "- ECE of the pooled out-of-fold rows: "
        + ", ".join(f"{m} {e:.3f}" for m, e in bt.pooled.set_index("model")["ece"].items()),
        f"- verdict: {bt.verdict.reason}",
        *(f"- {note}" for note in [*bt.skipped, *bt.remarks]),
        "",
    ]


def bench_x_education(path: Path, seed: int) -> list[str]:
    """Flat mode on Leads.csv, folds over ``Lead Number`` (arrival order)."""
    from leadml.config import LeadMLConfig
    from leadml.datasets import (
        X_EDUCATION_ID,
        X_EDUCATION_ORDER,
        X_EDUCATION_TARGET,
        load_x_education,
    )
    from leadml.model.training import train_flat

    cfg = LeadMLConfig().with_overrides({"model": {"seed": seed}})
    leads = load_x_education(path)
    result, took = timed(
        lambda: train_flat(
            leads,
            X_EDUCATION_TARGET,
            id_column=X_EDUCATION_ID,
            order_column=X_EDUCATION_ORDER,
            config=cfg,
        )
    )
    excluded = ", ".join(result.leakage.excluded) if result.leakage else "none"
    out = summary("X Education, ordered by Lead Number", result, took)
    return [*out[:-1], f"- leakage guard excluded: {excluded}", ""]


def bench_bpi(path: Path, seed: int) -> list[str]:
    """Event mode on the BPI 2012 log, both transitions."""
    from leadml.config import LeadMLConfig
    from leadml.data.features import IdentifierColumnsExcluded
    from leadml.data.trainset import build_training_set
    from leadml.datasets import load_bpi2012
    from leadml.model.training import fit_stage_model

    cfg = LeadMLConfig().with_overrides({**BPI_OVERRIDES, "model": {"seed": seed}})
    data, took = timed(lambda: load_bpi2012(path))
    s = data.summary()
    out = [
        f"log: {s['leads']:,} applications, {s['events']:,} engagement events, "
        f"{s['stage_changes']:,} stage changes, {s['start']} to {s['end']} (loaded in {took}); "
        f"daily observation points, horizons {dict(cfg.timeline.horizon_days)} days",
        "",
    ]
    for transition in ("prospect", "opportunity"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IdentifierColumnsExcluded)
            ts = build_training_set(data, transition, config=cfg)
        result, took = timed(
            lambda ts=ts, t=transition: fit_stage_model(ts.frame, ts.spec, ts.label, t, cfg)
        )
        out += summary(f"BPI 2012, {ts.label}", result, took)
    return out


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
        if args.x_education.is_file():
            out += [
                "## X Education Leads.csv (flat mode)",
                "",
                *bench_x_education(args.x_education, args.seed),
            ]
        else:
            out.append(f"X Education skipped: {args.x_education} not found")
    if not args.skip_bpi:
        if args.bpi.is_file():
            out += ["## BPI Challenge 2012 (event mode)", "", *bench_bpi(args.bpi, args.seed)]
        else:
            out.append(f"BPI 2012 skipped: {args.bpi} not found")
    print("\n".join(out))


if __name__ == "__main__":
    main()
