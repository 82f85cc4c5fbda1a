"""Scoring and explanation speed, memory, and the quality/speed trade-off of the model's shape.

    python -m benchmarks.scoring_speed [--train-leads 20000] [--leads 100000 1000000]
                                       [--shap-rows 20000] [--workdir DIR]

1. Trains both stage models with the default config on a synthetic CRM of ``--train-leads``
   leads and saves them as bundles; trains the prospect model in a few other shapes (depth,
   leaves, trees) and prints PR AUC on its out-of-time test window beside explain rows/s of each
   engine on the same test rows.
2. For each ``--leads`` size: writes a synthetic CRM of that size (``make_crm``, kept in
   ``--workdir`` for reruns) and runs the nightly job, ``leadml.serve.scoring.run_score`` from the files
   to a Parquet file, each in a fresh process so that its peak RSS is its own: once scores only
   (``explain.n_positive = n_negative = 0``), once with reasons (default engine ``leadml``), and
   at the smallest size once more with ``--explainer lightgbm``. Then ``shap.TreeExplainer`` on
   up to ``--shap-rows`` of the same scoring rows (extrapolated to all rows and said so),
   checked equal to the leadml engine.

Leads/s counts the leads scored (eligible at as_of), and includes reading and validating the
tables, building features, both models, reasons and writing the file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import peak_rss_gb, timed

AS_OF = "2025-06-01"
SHAPES: dict[str, dict[str, Any]] = {
    "default (depth 4, 15 leaves, <=300 trees)": {},
    "depth 3, 7 leaves": {"model": {"max_depth": 3, "num_leaves": 7}},
    "depth 6, 31 leaves": {"model": {"max_depth": 6, "num_leaves": 31, "min_child_samples": 100}},
    "depth 8, 63 leaves": {"model": {"max_depth": 8, "num_leaves": 63, "min_child_samples": 50}},
    "default shape, 100 trees max": {"model": {"n_estimators": 100, "learning_rate": 0.1}},
}


def _train(train_leads: int, workdir: Path) -> list[dict[str, Any]]:
    from leadml.config import LeadMLConfig
    from leadml.datasets import make_crm
    from leadml.explain.reasons import contributions
    from leadml.model.bundle import save_bundle
    from leadml.model.training import train

    data = make_crm(n_leads=train_leads, seed=1)
    rows = []
    for name, overrides in SHAPES.items():
        cfg = LeadMLConfig().with_overrides(overrides)
        r = train(data, "prospect", cfg)
        if not overrides:
            save_bundle(r.model, workdir / "bundle-prospect", overwrite=True)
        X = r.test_frame.head(20_000)
        contributions(r.model, X.head(100))  # compile / warm the engines outside the timings
        speed = {}
        for engine in ("leadml", "lightgbm"):
            t, _ = timed(lambda m=r.model, e=engine, X=X: contributions(m, X, e))
            speed[engine] = len(X) / t
        rows.append(
            {
                "shape": name,
                "pr_auc": r.metrics["pr_auc"],
                "roc_auc": r.metrics["roc_auc"],
                "baseline_pr_auc": r.baseline_metrics["pr_auc"],
                "trees": r.metrics["n_trees"],
                "leadml_rows_s": speed["leadml"],
                "lightgbm_rows_s": speed["lightgbm"],
            }
        )
    save_bundle(train(data, "opportunity").model, workdir / "bundle-opportunity", overwrite=True)
    return rows


def _generate(n: int, workdir: Path) -> Path:
    from leadml.datasets import make_crm, write_crm

    out = workdir / f"crm-{n}"
    if not (out / "leads.parquet").exists():
        write_crm(make_crm(n_leads=n, seed=2), out, overwrite=True)
    return out


def _job(n: int, workdir: Path, mode: str, engine: str | None) -> dict[str, Any]:
    """One nightly job in this (fresh) process; returns its timings and peak RSS. Library imports
    (LightGBM, scikit-learn, SciPy: seconds on a busy machine) are timed apart."""
    t_import = time.perf_counter()
    import leadml.data.trainset  # noqa: F401
    import leadml.explain._treeshap  # noqa: F401
    import leadml.model.bundle  # noqa: F401
    from leadml.config import LeadMLConfig
    from leadml.jobs import run_score

    t_import = time.perf_counter() - t_import

    overrides = {"explain": {"n_positive": 0, "n_negative": 0}} if mode == "score" else {}
    cfg = LeadMLConfig().with_overrides(overrides)
    out = workdir / f"scores-{n}-{mode}.parquet"
    from leadml._timing import breakdown

    t0 = time.perf_counter()
    with breakdown() as spent:
        summary = run_score(
            workdir / f"crm-{n}",
            out,
            as_of=AS_OF,
            model_specs=[str(workdir / "bundle-prospect"), str(workdir / "bundle-opportunity")],
            overwrite=True,
            config=cfg,
            engine=engine,
            progress=False,
        )
    seconds = time.perf_counter() - t0
    scored = int(summary.split()[1].replace(",", ""))
    out.unlink()
    return {
        "seconds": seconds,
        "scored": scored,
        "peak_rss_gb": peak_rss_gb(),
        "import_seconds": t_import,
        "breakdown": spent.table(),
    }


def _shap(n: int, workdir: Path, rows: int) -> dict[str, Any]:
    from leadml.data.contracts import load_crm
    from leadml.data.trainset import build_scoring_set
    from leadml.explain.reasons import contributions
    from leadml.jobs import load_models

    models = load_models([str(workdir / "bundle-prospect")])
    m = models["prospect"]
    X = build_scoring_set(load_crm(workdir / f"crm-{n}"), AS_OF, spec=m.spec)
    X = X.loc[X["stage"] == "lead"]
    sub = X.head(rows)
    contributions(m, sub.head(100), "leadml")
    t_shap, ref = timed(lambda: contributions(m, sub, "shap"))
    t_ours, ours = timed(lambda: contributions(m, sub, "leadml"))
    t_lgb, _ = timed(lambda: contributions(m, sub, "lightgbm"))
    return {
        "rows": len(sub),
        "all_rows": len(X),
        "shap_rows_s": len(sub) / t_shap,
        "leadml_rows_s": len(sub) / t_ours,
        "lightgbm_rows_s": len(sub) / t_lgb,
        "max_abs_diff": float(np.max(np.abs(ours - ref))),
    }


def _child(args: list[str]) -> dict[str, Any]:
    """Run one step in a fresh interpreter (own peak RSS) and parse its JSON line."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scoring_speed", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-leads", type=int, default=20_000)
    ap.add_argument("--leads", type=int, nargs="+", default=[100_000])
    ap.add_argument("--shap-rows", type=int, default=20_000)
    ap.add_argument("--workdir", type=Path, default=Path("data/interim/bench-scoring"))
    ap.add_argument("--skip-train", action="store_true", help="Reuse the bundles in --workdir.")
    ap.add_argument("--step", nargs="+", help=argparse.SUPPRESS)  # internal: one child step
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    a.workdir.mkdir(parents=True, exist_ok=True)
    if a.step:
        kind, n = a.step[0], int(a.step[1])
        if kind == "generate":
            t0 = time.perf_counter()
            _generate(n, a.workdir)
            result: dict[str, Any] = {"seconds": time.perf_counter() - t0}
        elif kind == "job":
            result = _job(n, a.workdir, a.step[2], a.step[3] if len(a.step) > 3 else None)
        else:
            result = _shap(n, a.workdir, a.shap_rows)
        print(json.dumps(result))
        return

    if not a.skip_train:
        shapes = _train(a.train_leads, a.workdir)
        print(f"Prospect model shapes ({a.train_leads:,} training leads; explain speed on 20k")
        print("test rows, one process, machine shared):\n")
        print(
            "| model shape | trees | PR AUC | ROC AUC | baseline PR AUC | "
            "explain rows/s leadml | explain rows/s pred_contrib |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in shapes:
            print(
                f"| {r['shape']} | {r['trees']} | {r['pr_auc']:.4f} | {r['roc_auc']:.4f} | "
                f"{r['baseline_pr_auc']:.4f} | {r['leadml_rows_s']:,.0f} | "
                f"{r['lightgbm_rows_s']:,.0f} |"
            )
    print(
        "\n| leads in CRM | scored | job: scores only, leads/s | peak RSS | "
        "job: scores + reasons (leadml), leads/s | peak RSS | reasons via pred_contrib, leads/s |"
        " shap.TreeExplainer rows/s |\n|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for i, n in enumerate(sorted(a.leads)):
        gen = _child(["--workdir", str(a.workdir), "--step", "generate", str(n)])
        only = _child(["--workdir", str(a.workdir), "--step", "job", str(n), "score"])
        full = _child(["--workdir", str(a.workdir), "--step", "job", str(n), "explain"])
        lgb = (
            _child(["--workdir", str(a.workdir), "--step", "job", str(n), "explain", "lightgbm"])
            if i == 0
            else None
        )
        sh = _child(
            ["--workdir", str(a.workdir), "--shap-rows", str(a.shap_rows), "--step", "shap", str(n)]
        )
        scored = full["scored"]
        shap_note = (
            f"{sh['shap_rows_s']:,.0f} (on {sh['rows']:,} of {sh['all_rows']:,} rows, "
            f"extrapolated: {sh['all_rows'] / sh['shap_rows_s']:,.0f} s for all; "
            f"max |diff| vs leadml {sh['max_abs_diff']:.1e})"
        )
        lgb_text = f"{lgb['scored'] / lgb['seconds']:,.0f}" if lgb else "-"
        print(
            f"| {n:,} | {scored:,} | {only['scored'] / only['seconds']:,.0f} "
            f"({only['seconds']:.1f} s) | {only['peak_rss_gb']:.2f} GB | "
            f"{scored / full['seconds']:,.0f} ({full['seconds']:.1f} s) | "
            f"{full['peak_rss_gb']:.2f} GB | {lgb_text} | {shap_note} |"
        )
        print(
            f"  (imports before each job, not counted: {full['import_seconds']:.1f} s; "
            f"CRM generation {gen['seconds']:.0f} s, not counted; engines on the same "
            f"{sh['rows']:,} lead rows: leadml {sh['leadml_rows_s']:,.0f} rows/s, pred_contrib "
            f"{sh['lightgbm_rows_s']:,.0f} rows/s)",
            flush=True,
        )
        print(f"\n  breakdown of the {n:,}-lead job with reasons (leadml score -v):\n")
        print(
            "\n".join("    " + line for line in full["breakdown"].splitlines()) + "\n", flush=True
        )
    print(
        "\nJobs read the tables from Parquet, validate them, build features, score both models,"
        " explain (in chunks of scoring.chunk_size) and write one Parquet file atomically."
    )


if __name__ == "__main__":
    main()
