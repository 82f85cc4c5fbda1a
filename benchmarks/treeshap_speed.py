"""Exact TreeSHAP throughput: leadml's engine vs LightGBM ``pred_contrib`` vs ``shap.TreeExplainer``.

    python -m benchmarks.treeshap_speed [--leads 40000] [--rows 100000] [--reference-rows 5000]
                                        [--threads 2]

Same run, same rows, same models. Builds a prospect training set from a synthetic CRM of
``--leads`` leads (leadml's own features: counts, recencies, categoricals with missing values),
then explains ``--rows`` of its rows with:

- the **default leadml model** exactly as ``leadml train`` makes it (depth 4, 15 leaves, early
  stopping on a later time slice, so fewer than 300 trees), and
- models of the shapes the issue names, fitted with leadml's LightGBM parameters for exactly 300
  trees: depth 4 / 15 leaves, depth 6 / 31, depth 8 / 63 and unbounded depth / 63 leaves.

Engines: ``predict(raw_score=True)`` (scoring only, the yardstick), ``leadml`` (this package's
engine), ``pred_contrib`` (LightGBM's C++ TreeSHAP, all threads), ``shap.TreeExplainer`` in its
default tree-path-dependent mode (single-threaded C++), and ``fasttreeshap`` if it imports.
Scoring and the leadml engine run on all ``--rows`` rows; the references are timed on the first
``--reference-rows`` of them (they are 30-300x slower) and every engine is checked equal to the
leadml values on those rows (max abs difference printed, required <= 1e-9).

Threads: ``--threads`` for the leadml engine and LightGBM (default: all cores); shap's C++
TreeSHAP is single-threaded, as shipped.
"""

from __future__ import annotations

import argparse
import os
import warnings
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._common import peak_rss_gb, timed

SHAPES: list[tuple[str, int, int]] = [
    ("depth 4, 15 leaves", 4, 15),
    ("depth 6, 31 leaves", 6, 31),
    ("depth 8, 63 leaves", 8, 63),
    ("unbounded, 63 leaves", -1, 63),
]
TOLERANCE = 1e-9


def _data(n_leads: int) -> tuple[Any, Any]:
    from leadml.data.trainset import build_training_set
    from leadml.datasets import make_crm
    from leadml.model.training import train

    data = make_crm(n_leads=n_leads, seed=1)
    default = train(data, "prospect")
    ts = build_training_set(data, "prospect", spec=default.model.spec)
    return default, ts


def _fit(ts: Any, depth: int, leaves: int, threads: int) -> Any:
    import lightgbm as lgb

    from leadml.config import ModelConfig
    from leadml.model.training import lgb_params

    X = ts.frame[list(ts.spec.names)]
    y = ts.frame[ts.label].to_numpy()
    params = lgb_params(ModelConfig(), len(X))
    params.update(max_depth=depth, num_leaves=leaves, num_threads=threads)
    params.pop("metric")
    params.pop("first_metric_only")
    return lgb.train(params, lgb.Dataset(X, y, categorical_feature=list(ts.spec.categorical)), 300)


def _engines(threads: int) -> dict[str, Any]:
    """name -> prepare(booster) -> explain(X). Preparing (leadml's tables, shap's tree copy) is
    once per model and timed apart from explaining."""
    import shap

    from leadml.explain._treeshap import TreeShapModel

    def with_bias(explainer: Any, X: pd.DataFrame) -> np.ndarray:
        values = np.asarray(explainer.shap_values(X), dtype=float)
        bias = np.full((len(values), 1), float(np.ravel(explainer.expected_value)[-1]))
        return np.hstack([values, bias])

    def leadml_engine(booster: Any) -> Any:
        model = TreeShapModel.from_booster(booster)
        return lambda X: model.explain_margin(X, n_threads=threads)

    def pred_contrib(booster: Any) -> Any:
        return lambda X: np.asarray(booster.predict(X, pred_contrib=True, num_threads=threads))

    def shap_tree(booster: Any) -> Any:
        explainer = shap.TreeExplainer(booster)
        return lambda X: with_bias(explainer, X)

    engines = {
        "leadml": leadml_engine,
        "pred_contrib": pred_contrib,
        "shap.TreeExplainer": shap_tree,
    }
    try:
        import fasttreeshap
        from fasttreeshap import _cext  # noqa: F401  (the C++ part; fails to load with numpy 2)

        def fast(booster: Any) -> Any:
            explainer = fasttreeshap.TreeExplainer(booster, algorithm="v2", n_jobs=threads)
            return lambda X: with_bias(explainer, X)

        engines["fasttreeshap v2"] = fast
    except ImportError as e:
        print(f"fasttreeshap: not usable here ({e}); skipped")
    return engines


def _measure(
    name: str, booster: Any, X: pd.DataFrame, ref_rows: int, engines: dict[str, Any], threads: int
) -> dict[str, Any]:
    head = X.head(ref_rows)
    prepare = {label: timed(lambda make=make: make(booster)) for label, make in engines.items()}
    explain = {label: fn for label, (_, fn) in prepare.items()}
    for fn in explain.values():  # numba compilation, first-call caches
        fn(head.head(50))
    t_score, margin = timed(lambda: booster.predict(X, raw_score=True, num_threads=threads))
    t_ours, ours = timed(lambda: explain["leadml"](X))
    row: dict[str, Any] = {
        "model": name,
        "trees": booster.num_trees(),
        "leaves/tree": _mean_leaves(booster),
        "leadml tables s": prepare["leadml"][0],
        "score rows/s": len(X) / t_score,
        "leadml rows/s": len(X) / t_ours,
        "additivity": float(np.abs(ours.sum(axis=1) - margin).max()),
    }
    for label, fn in explain.items():
        if label == "leadml":
            continue
        t, ref = timed(lambda fn=fn: fn(head))
        row[f"{label} rows/s"] = len(head) / t
        row[f"{label} max diff"] = float(np.abs(ref - ours[: len(head)]).max())
    return row


def _mean_leaves(booster: Any) -> float:
    dump = booster.dump_model()["tree_info"]
    return float(np.mean([t["num_leaves"] for t in dump]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leads", type=int, default=40_000, help="synthetic CRM size")
    ap.add_argument("--rows", type=int, default=100_000, help="rows explained by leadml")
    ap.add_argument("--reference-rows", type=int, default=5_000, help="rows for the references")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    default, ts = _data(a.leads)
    X = ts.frame[list(ts.spec.names)]
    if len(X) < a.rows:
        reps = -(-a.rows // len(X))
        X = pd.concat([X] * reps, ignore_index=True)
        print(f"training set has {len(ts.frame):,} rows; repeated {reps}x to reach {a.rows:,}")
    X = X.head(a.rows)
    print(
        f"{len(X):,} rows x {X.shape[1]} features ({len(ts.spec.categorical)} categorical), "
        f"{float(X.isna().to_numpy().mean()):.0%} of values missing; threads={a.threads}; "
        f"references on the first {a.reference_rows:,} rows"
    )
    engines = _engines(a.threads)
    models = [("default leadml model (depth 4, 15 leaves)", default.model.booster)]
    models += [(f"{label}, 300 trees", _fit(ts, d, n, a.threads)) for label, d, n in SHAPES]
    rows = []
    for name, booster in models:
        row = _measure(name, booster, X, a.reference_rows, engines, a.threads)
        rows.append(row)
        print(
            f"{name}: {row['trees']} trees, leadml {row['leadml rows/s']:,.0f} rows/s, "
            f"shap {row['shap.TreeExplainer rows/s']:,.0f} rows/s",
            flush=True,
        )
    table = pd.DataFrame(rows)
    table["leadml / shap"] = table["leadml rows/s"] / table["shap.TreeExplainer rows/s"]
    table["leadml / pred_contrib"] = table["leadml rows/s"] / table["pred_contrib rows/s"]
    table["score / leadml"] = table["score rows/s"] / table["leadml rows/s"]
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.to_string(index=False, float_format=lambda v: f"{v:,.4g}"))
    diffs = table[[c for c in table.columns if c.endswith("max diff")] + ["additivity"]]
    worst = float(diffs.to_numpy().max())
    print(f"worst difference from any reference or from the margin: {worst:.1e}")
    print(f"peak RSS {peak_rss_gb():.1f} GB")
    if worst > TOLERANCE:
        raise SystemExit(f"engines disagree by {worst:.1e} > {TOLERANCE:g}")


if __name__ == "__main__":
    main()
