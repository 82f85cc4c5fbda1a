"""Scoring and explanation speed, and the quality/speed trade-off of the model's shape.

    python -m benchmarks.scoring_speed [--train-leads 20000] [--leads 100000 1000000]

Trains both stage models on a synthetic CRM, then scores every eligible lead of larger CRMs:
score only, score + explain (LightGBM pred_contrib) and shap.TreeExplainer on the same rows (on a
subset when slow, extrapolated and said so).
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from benchmarks._common import peak_rss_gb, timed
from leadml.config import LeadMLConfig
from leadml.datasets import make_crm
from leadml.explain import contributions
from leadml.scoring import score
from leadml.training import train
from leadml.trainset import build_scoring_set


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-leads", type=int, default=20_000)
    ap.add_argument("--leads", type=int, nargs="+", default=[100_000])
    ap.add_argument("--shap-rows", type=int, default=20_000)
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    data = make_crm(n_leads=a.train_leads, seed=1)
    shapes = {
        "default (depth 4, 15 leaves)": {},
        "depth 6, 31 leaves": {
            "model": {"max_depth": 6, "num_leaves": 31, "min_child_samples": 100}
        },
        "unbounded, 63 leaves": {
            "model": {"max_depth": -1, "num_leaves": 63, "min_child_samples": 50}
        },
    }
    trained = {}
    print(
        "| model shape | PR AUC prospect | baseline | trees | explain rows/s (pred_contrib) |\n|---|---:|---:|---:|---:|"
    )
    for name, ov in shapes.items():
        cfg = LeadMLConfig().with_overrides(ov)
        r = train(data, "prospect", cfg)
        trained[name] = (r, cfg)
        X = r.test_frame.head(50_000)
        t, _ = timed(lambda m=r.model, X=X: contributions(m, X))
        print(
            f"| {name} | {r.metrics['pr_auc']:.4f} | {r.baseline_metrics['pr_auc']:.4f} | {r.metrics['n_trees']} | {len(X) / t:,.0f} |"
        )

    cfg = LeadMLConfig()
    models = {
        "prospect": trained["default (depth 4, 15 leaves)"][0].model,
        "opportunity": train(data, "opportunity", cfg).model,
    }
    print(
        "\n| leads in CRM | scored | score only rows/s | score + explain rows/s | shap.TreeExplainer rows/s | explain vs shap |\n|---:|---:|---:|---:|---:|---:|"
    )
    for n in a.leads:
        big = make_crm(n_leads=n, seed=2)
        as_of = big.end.floor("D")
        X = build_scoring_set(big, as_of, cfg, spec=models["prospect"].spec)
        t_pred, _ = timed(lambda X=X: [m.predict_proba(X) for m in models.values()])
        t_all, s = timed(
            lambda big=big, as_of=as_of: score(big, as_of, models, cfg, progress=False)
        )
        sub = X.head(a.shap_rows)
        t_shap, ref = timed(lambda sub=sub: contributions(models["prospect"], sub, "shap"))
        ours = contributions(models["prospect"], sub)
        assert np.allclose(ours, ref, atol=1e-9)
        shap_rate = len(sub) / t_shap
        rate = len(s) / t_all
        print(
            f"| {n:,} | {len(s):,} | {len(X) / t_pred:,.0f} | {rate:,.0f} | {shap_rate:,.0f} (on {len(sub):,} rows) | {rate / shap_rate:.1f}x |"
        )
    print(f"\npeak RSS of the whole run: {peak_rss_gb():.1f} GB")
    print(
        "score + explain includes feature building, both models, grouping and sentence rendering."
    )


if __name__ == "__main__":
    main()
