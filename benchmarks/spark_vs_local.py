"""Local pandas vs Spark (local mode) on the same files: features at one as_of, then scores.

    python -m benchmarks.spark_vs_local [--leads 50000] [--master local[2]] [--partitions N]
        [--train-leads 20000] [--no-score]

Writes a synthetic CRM as Parquet (what a nightly job reads), trains both stage models on a
smaller CRM, then times, on the same files and the same as_of:

- local: ``load_crm`` + ``build_scoring_set`` (features), ``load_crm`` + ``score`` (scores);
- Spark: ``load_crm_spark`` + ``build_scoring_set_spark`` / ``score_spark``, run to completion
  through Spark's ``noop`` sink (everything computed, nothing collected).

Spark's session start and the first job's Python worker start (imports) are timed apart: a
nightly job pays them once. On one machine Spark can at best use the same cores as pandas, so the
ratio here is Spark's overhead; the point of Spark is that buckets of leads run on many machines.
Use ``--leads 1000000`` for the 1M-lead run (minutes: the explanations dominate).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

AS_OF = "2025-04-01"


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leads", type=int, default=50_000)
    ap.add_argument("--train-leads", type=int, default=20_000)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument(
        "--partitions", type=int, help="lead buckets (default: about 5,000 leads per bucket)"
    )
    ap.add_argument("--no-score", action="store_true", help="time features only")
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    from leadml.config import LeadMLConfig
    from leadml.data.contracts import load_crm
    from leadml.data.trainset import build_scoring_set
    from leadml.datasets import make_crm, write_crm
    from leadml.model.training import train
    from leadml.serve.scoring import score

    cfg = LeadMLConfig()
    partitions = a.partitions or max(4, a.leads // 5_000)
    with tempfile.TemporaryDirectory(prefix="leadml-bench-") as tmp:
        t_gen, crm = _timed(lambda: make_crm(n_leads=a.leads, seed=1))
        write_crm(crm, Path(tmp) / "crm")
        n_events = len(crm.events)
        del crm
        print(f"data: {a.leads:,} leads, {n_events:,} events (generated in {t_gen:.0f}s)")
        train_crm = make_crm(n_leads=a.train_leads, seed=2)
        models = {t: train(train_crm, t, cfg).model for t in ("prospect", "opportunity")}
        spec = models["prospect"].spec
        del train_crm

        rows: list[tuple[str, float, float]] = []
        t_feat_local, feats = _timed(
            lambda: build_scoring_set(load_crm(Path(tmp) / "crm"), AS_OF, cfg, spec=spec)
        )
        n_scored = len(feats)
        del feats
        t_score_local = float("nan")
        if not a.no_score:
            t_score_local, _ = _timed(
                lambda: score(load_crm(Path(tmp) / "crm"), AS_OF, models, cfg)
            )

        from leadml.serve.spark import (
            build_scoring_set_spark,
            get_spark,
            load_crm_spark,
            score_spark,
        )

        t_session, spark = _timed(
            lambda: get_spark(
                a.master,
                app_name="leadml-bench",
                conf={
                    "spark.ui.enabled": "false",
                    "spark.driver.memory": "4g",
                    "spark.sql.shuffle.partitions": str(partitions),
                },
            )
        )

        def run_spark(kind: str) -> None:
            leads, events, stage_changes = load_crm_spark(spark, str(Path(tmp) / "crm"))
            if kind == "features":
                frame = build_scoring_set_spark(
                    leads, events, stage_changes, AS_OF, spec=spec, config=cfg
                )
            else:
                frame = score_spark(leads, events, stage_changes, AS_OF, models, config=cfg)
            frame.write.format("noop").mode("overwrite").save()

        # The first job starts the Python workers (imports leadml, pandas, LightGBM): once per job.
        t_first, _ = _timed(lambda: run_spark("features"))
        t_feat_spark, _ = _timed(lambda: run_spark("features"))
        rows.append(("features at one as_of", t_feat_local, t_feat_spark))
        if not a.no_score:
            t_score_spark, _ = _timed(lambda: run_spark("scores"))
            rows.append(("scores + reasons", t_score_local, t_score_spark))
        spark.stop()

    print(
        f"\nSpark {a.master}, {partitions} lead buckets; session start {t_session:.1f}s, "
        f"first features job (workers starting) {t_first:.1f}s\n"
    )
    print("| workload | leads scored | local (s) | Spark (s) | Spark / local | Spark leads/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, local, remote in rows:
        print(
            f"| {name} | {n_scored:,} | {local:.1f} | {remote:.1f} | {remote / local:.2f}x | "
            f"{n_scored / remote:,.0f} |"
        )


if __name__ == "__main__":
    main()
