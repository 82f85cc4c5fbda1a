"""Exact TreeSHAP contributions -> grouped, ranked, plain-language reasons.

Contributions are exact path-dependent TreeSHAP values of the raw margin (log-odds): LightGBM's
``pred_contrib`` (default engine; identical to ``shap.TreeExplainer`` in its default mode, which is
kept as the ``shap`` reference engine). They are additive: ``expected value + Σ contributions =
margin``.

A **reason** is a group of features (all windows and the recency of one event type; one fit
attribute; overall engagement; stage history; tenure). Its contribution is the sum over its
features. Its **effect** is in probability points and defined as the change in the lead's
calibrated probability when the group's contribution is removed from the margin::

    effect_g = calibrate(margin) - calibrate(margin - φ_g)

With Platt calibration that is ``sigmoid(a·m + b) - sigmoid(a·(m - φ_g) + b)``. Effects of
different groups do not add up to the probability (the sigmoid is not linear); they say how much
each reason alone moves this lead's score. Reasons are ranked by effect: the top ``n_positive``
positive ones, then the top ``n_negative`` negative ones. The sentence is rendered from the lead's
own value of the group's most influential feature (largest |contribution|).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from leadml.training import StageModel

__all__ = [
    "ENGINES",
    "additivity_error",
    "contributions",
    "global_importance",
    "group_contributions",
    "reasons",
]

ENGINES = ("lightgbm", "shap")


def contributions(model: StageModel, X: pd.DataFrame, engine: str = "lightgbm") -> np.ndarray:
    """Exact TreeSHAP of the raw margin: shape (rows, features + 1), last column the expected
    value."""
    Xf = model.features(X)
    if engine == "lightgbm":
        return np.asarray(model.booster.predict(Xf, pred_contrib=True), dtype=float)
    if engine == "shap":
        import shap

        explainer = shap.TreeExplainer(model.booster)
        values = np.asarray(explainer.shap_values(Xf), dtype=float)
        if values.ndim == 3:  # some shap versions return one matrix per class
            values = values[..., -1]
        base = np.full((len(Xf), 1), float(np.ravel(explainer.expected_value)[-1]))
        return np.hstack([values, base])
    raise ValueError(f"unknown explainer {engine!r}; expected one of {', '.join(ENGINES)}")


def additivity_error(model: StageModel, X: pd.DataFrame, contrib: np.ndarray) -> float:
    """Largest |expected value + Σ contributions − margin| over the rows."""
    return float(np.max(np.abs(contrib.sum(axis=1) - model.predict_margin(X)), initial=0.0))


def _membership(model: StageModel) -> tuple[list[str], np.ndarray]:
    spec = model.spec
    groups = list(spec.group_names)
    index = {g: i for i, g in enumerate(groups)}
    member = np.zeros((len(spec.names), len(groups)))
    for j, n in enumerate(spec.names):
        member[j, index[spec.groups[n]]] = 1.0
    return groups, member


def group_contributions(model: StageModel, contrib: np.ndarray) -> pd.DataFrame:
    """Per-row contribution (log-odds) of each reason group."""
    groups, member = _membership(model)
    return pd.DataFrame(contrib[:, :-1] @ member, columns=groups)


def global_importance(model: StageModel, X: pd.DataFrame, engine: str = "lightgbm") -> pd.Series:
    """Mean |SHAP| (log-odds) per reason group over the rows of ``X``, largest first."""
    g = group_contributions(model, contributions(model, X, engine))
    return g.abs().mean().sort_values(ascending=False).rename("mean_abs_shap")


def reasons(
    model: StageModel,
    X: pd.DataFrame,
    contrib: np.ndarray,
    *,
    n_positive: int = 4,
    n_negative: int = 2,
) -> list[list[dict[str, Any]]]:
    """Ranked reasons per row: ``{group, text, direction, effect}`` (effect in probability
    points, signed), positives first (largest first), then negatives (most negative first)."""
    spec = model.spec
    groups, member = _membership(model)
    phi = contrib[:, :-1]
    margin = contrib.sum(axis=1)
    G = phi @ member
    p = model.calibration(margin)
    effect = p[:, None] - model.calibration(margin[:, None] - G)
    # Most influential feature of each group, per row, for the sentence.
    names = list(spec.names)
    cols = [np.flatnonzero(member[:, k]) for k in range(len(groups))]
    top_feature = np.empty((len(X), len(groups)), dtype=np.int64)
    absphi = np.abs(phi)
    for k, idx in enumerate(cols):
        top_feature[:, k] = idx[np.argmax(absphi[:, idx], axis=1)]
    values = model.features(X)
    value_cols = [values[n].to_numpy(dtype=object) for n in names]

    order_pos = np.argsort(-effect, axis=1, kind="stable")[:, :n_positive]
    order_neg = np.argsort(effect, axis=1, kind="stable")[:, :n_negative]
    out: list[list[dict[str, Any]]] = []
    for i in range(len(X)):
        row: list[dict[str, Any]] = []
        for ks, sign in ((order_pos[i], 1), (order_neg[i], -1)):
            for k in ks:
                e = float(effect[i, k])
                if sign * e <= 0:
                    break
                f = int(top_feature[i, k])
                row.append(
                    {
                        "group": groups[k],
                        "text": spec.describe(names[f], _py(value_cols[f][i])),
                        "direction": "+" if sign > 0 else "-",
                        "effect": round(e, 6),
                    }
                )
        out.append(row)
    return out


def _py(v: Any) -> Any:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return float("nan")
    if isinstance(v, np.floating):
        return float(v)
    return v
