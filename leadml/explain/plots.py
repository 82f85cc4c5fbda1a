"""Evaluation pictures as PNG files (matplotlib, imported lazily, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadml.funnel import TIERS
from leadml.model.evaluation import calibration_table

__all__ = ["save_evaluation_plots"]


def _plt() -> Any:
    # Figures drawn off-screen on their own canvas: no pyplot state and no backend switch, so a
    # notebook's inline backend keeps working after training logs its plots.
    from matplotlib.figure import Figure

    class _Offscreen:
        @staticmethod
        def subplots(figsize: tuple[float, float]) -> tuple[Any, Any]:
            fig = Figure(figsize=figsize)
            return fig, fig.subplots()

        @staticmethod
        def close(fig: Any) -> None:
            del fig

    return _Offscreen


def save_evaluation_plots(
    y: np.ndarray,
    p: np.ndarray,
    tiers: np.ndarray,
    importance: pd.Series,
    out_dir: str | Path,
    *,
    title: str = "",
    baseline_p: np.ndarray | None = None,
) -> list[Path]:
    """Calibration curve, cumulative gains/lift, score distribution per tier, SHAP importance."""
    plt = _plt()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    y = np.asarray(y, float)
    p = np.asarray(p, float)

    fig, ax = plt.subplots(figsize=(5, 5))
    t = calibration_table(y, p, 10).dropna()
    hi = max(float(t["predicted"].max()), float(t["observed"].max()), 0.05)
    ax.plot([0, hi], [0, hi], "--", color="grey", lw=1, label="perfect")
    ax.plot(t["predicted"], t["observed"], "o-", label="leadml")
    ax.set(xlabel="predicted probability", ylabel="observed rate", title=f"Calibration {title}")
    ax.legend()
    paths.append(_save(fig, out / "calibration.png", plt))

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, scores in (("leadml", p), ("baseline", baseline_p)):
        if scores is None:
            continue
        order = np.argsort(-np.asarray(scores), kind="stable")
        gains = np.cumsum(y[order]) / max(y.sum(), 1)
        ax.plot(np.arange(1, len(y) + 1) / len(y), gains, label=name)
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="random")
    ax.set(
        xlabel="share of leads contacted (by score)",
        ylabel="share of promotions captured",
        title=f"Cumulative gains {title}",
    )
    ax.legend()
    paths.append(_save(fig, out / "gains.png", plt))

    fig, ax = plt.subplots(figsize=(6, 4))
    for tier in TIERS:
        m = np.asarray(tiers) == tier
        if m.any():
            ax.hist(100 * p[m], bins=40, alpha=0.6, label=f"tier {tier}")
    ax.set(xlabel="score (0-100)", ylabel="observation points", title=f"Scores by tier {title}")
    ax.set_yscale("log")
    ax.legend()
    paths.append(_save(fig, out / "score_by_tier.png", plt))

    fig, ax = plt.subplots(figsize=(6, max(3, 0.3 * len(importance))))
    imp = importance.sort_values()
    ax.barh(imp.index.astype(str), imp.to_numpy())
    ax.set(xlabel="mean |SHAP| (log-odds)", title=f"Global importance by reason {title}")
    paths.append(_save(fig, out / "shap_importance.png", plt))
    return paths


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


BACKTEST_METRICS: tuple[str, ...] = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_10")


def save_backtest_plot(per_fold: pd.DataFrame, path: Path, title: str = "") -> Path:
    """One panel per metric: each model's value per backtest fold (leadml beside the baselines
    on the same folds and rows), as a PNG."""
    from matplotlib.figure import Figure

    metrics = [m for m in BACKTEST_METRICS if m in per_fold.columns]
    fig = Figure(figsize=(4 * len(metrics), 3.4))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for model, rows in per_fold.groupby("model", sort=False):
            style = {"linewidth": 2.5} if model == "leadml" else {"linewidth": 1, "alpha": 0.8}
            ax.plot(rows["fold"], rows[metric], marker="o", label=str(model), **style)
        ax.set(title=metric, xlabel="fold (older to newer)")
        ax.set_xticks(sorted(per_fold["fold"].unique()))
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path
