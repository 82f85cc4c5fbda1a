"""One calibrated LightGBM model per stage transition, chosen and measured by a rolling backtest.

One protocol for event and flat mode (:func:`fit_backtested`):

1. **Backtest** (:mod:`leadml.model.backtest`): ``training.n_folds`` expanding windows over time
   (event mode: the observation points' ``as_of``, with a purge gap of horizon + gap; flat mode:
   the time or order column, or a random order with a warning). Each fold fits on everything
   before its test window and is scored on it, beside the base rate, logistic regression,
   default LightGBM and a marketer's rule (event mode: most recent engagement first; flat mode:
   newest row first) on the same rows. The number of trees, the leaf settings (a handful of
   candidates), recency weighting and the calibration method are chosen there.
2. **Refit** on every labelled row (up to the data end minus the horizon: later points are
   censored by the training-set builder) with those choices: the newest data, the most like
   tomorrow, is in the shipped model.
3. **Calibration** is the mapping fitted on the pooled out-of-fold margins (Platt by default:
   affine in the margin, so TreeSHAP values explain the calibrated log-odds exactly).
4. **Tiers**: thresholds from the refit model's scores on the newest rows (the last fold's test
   window): A = top ``tier_shares[0]`` (10%), B = next 20%, C = next 30%, D = the rest; fixed
   at training time so tiers stay stable between scoring runs. ``score = round(100 * p)``.
   The opportunity model's tiers rank the prospects only (its call list: leads are tiered by
   the prospect model), so its cut-offs come from the newest prospects' scores (all newest
   rows when fewer than 200), and its tier rates from the out-of-fold prospects.
5. **Verdict**: ready or not (:func:`leadml.model.backtest.readiness`); the bundle records the
   backtest table and the verdict, and a model that is not ready never becomes champion.

LightGBM details: native categoricals; deterministic for a seed (``deterministic``, row-wise
histograms, fixed threads); early stopping watches the binary log loss. Small tables: unless
``model.min_child_samples`` / ``model.min_data_per_group`` are set, leaf and category-group sizes
scale with the training rows (:func:`effective_min_child_samples`,
:func:`effective_min_data_per_group`). Class imbalance is handled by **not** reweighting:
weights would distort the probabilities that calibration then has to undo.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from leadml.config import LeadMLConfig, ModelConfig
from leadml.data.contracts import CRMData
from leadml.data.features import FeatureSpec, model_frame
from leadml.data.flat import (
    FLAT_TRANSITION,
    FlatCleaning,
    FlatDataError,
    FlatSplit,
    check_columns,
    check_ids,
    flat_spec,
    flat_target,
    ordering_key,
    plan_cleaning,
    split_flat,
)
from leadml.data.layout import layout_reference
from leadml.data.leakage import LeakageReport, check_leakage
from leadml.data.trainset import build_training_set
from leadml.funnel import TIERS
from leadml.model.backtest import BacktestResult, Verdict, refit, run_backtest
from leadml.model.drift import reference as drift_reference
from leadml.model.evaluation import tier_conversion
from leadml.model.evidence import evidence_stats
from leadml.model.stage import Calibration, StageModel, tier_thresholds

__all__ = [
    "backtest_metrics",
    "Calibration",
    "StageModel",
    "TrainResult",
    "effective_min_child_samples",
    "effective_min_data_per_group",
    "fit_backtested",
    "fit_stage_model",
    "format_metrics_table",
    "lgb_params",
    "train",
    "train_flat",
]


#: Ceilings and floors of the automatic leaf and category-group sizes (see ModelConfig).
MIN_CHILD_SAMPLES_CAP, MIN_CHILD_SAMPLES_FLOOR = 400, 20
MIN_DATA_PER_GROUP_CAP, MIN_DATA_PER_GROUP_FLOOR = 200, 10


def effective_min_child_samples(m: ModelConfig, n_train: int | None) -> int:
    """Minimum rows per leaf: the configured number, or (when it is None) one row in a hundred
    of the training rows, clipped to [20, 400].

    >>> from leadml.config import ModelConfig
    >>> [effective_min_child_samples(ModelConfig(), n) for n in (900, 5_500, 200_000, None)]
    [20, 55, 400, 400]
    >>> effective_min_child_samples(ModelConfig(min_child_samples=7), 200_000)
    7
    """
    if m.min_child_samples is not None:
        return m.min_child_samples
    if n_train is None:
        return MIN_CHILD_SAMPLES_CAP
    return min(MIN_CHILD_SAMPLES_CAP, max(MIN_CHILD_SAMPLES_FLOOR, n_train // 100))


def effective_min_data_per_group(m: ModelConfig, n_train: int | None) -> int:
    """Minimum rows per categorical group: configured, or n_train // 200 clipped to [10, 200].

    >>> from leadml.config import ModelConfig
    >>> [effective_min_data_per_group(ModelConfig(), n) for n in (900, 5_500, 200_000)]
    [10, 27, 200]
    """
    if m.min_data_per_group is not None:
        return m.min_data_per_group
    if n_train is None:
        return MIN_DATA_PER_GROUP_CAP
    return min(MIN_DATA_PER_GROUP_CAP, max(MIN_DATA_PER_GROUP_FLOOR, n_train // 200))


def lgb_params(m: ModelConfig, n_train: int | None = None) -> dict[str, Any]:
    """LightGBM parameters from the model config (plain dict; estimators never see config).

    ``n_train`` (the training rows) sizes the leaves when the config leaves them automatic.
    Early stopping watches the first metric, the binary log loss; PR AUC is reported beside it.
    """
    return {
        "objective": "binary",
        "learning_rate": m.learning_rate,
        "num_leaves": m.num_leaves,
        "max_depth": m.max_depth,
        "min_child_samples": effective_min_child_samples(m, n_train),
        "subsample": m.subsample,
        "subsample_freq": m.subsample_freq,
        "colsample_bytree": m.colsample_bytree,
        "reg_lambda": m.reg_lambda,
        "seed": m.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": m.n_jobs,
        "verbosity": -1,
        "max_cat_to_onehot": 8,
        "cat_smooth": m.cat_smooth,
        "min_data_per_group": effective_min_data_per_group(m, n_train),
        "metric": ["binary_logloss", "average_precision"],
        "first_metric_only": True,
    }


@dataclass
class TrainResult:
    """What a training run produced, in either mode: the model, its metrics beside the
    baseline, the test rows (``lead_id``, event mode's ``as_of``, the features and the label)
    and context. Flat mode adds the cleaning plan and the leakage report."""

    model: StageModel
    metrics: dict[str, Any]
    baseline_metrics: dict[str, Any]
    split: FlatSplit | None
    summary: dict[str, Any]
    test_frame: pd.DataFrame
    test_proba: np.ndarray
    config: LeadMLConfig
    cleaning: FlatCleaning | None = None
    leakage: LeakageReport | None = None
    backtest: BacktestResult | None = None
    tracking: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        """Ready to ship or not, and why (:func:`leadml.model.backtest.readiness`)."""
        if self.backtest is None:
            return Verdict(False, "not ready: no backtest was run")
        return self.backtest.verdict

    @property
    def mode(self) -> str:
        """``"flat"`` or ``"event"``."""
        return "flat" if self.model.metadata.get("mode") == "flat" else "event"

    def report(self) -> str:
        """What the CLI prints for this model (flat mode: cleaning and leakage first)."""
        parts = []
        if self.cleaning is not None:
            parts += [self.cleaning.report(), ""]
        if self.leakage is not None:
            parts += [str(self.leakage), ""]
        if self.split is not None:
            parts += [
                f"Cleaning and leakage guard learned before the test part: "
                f"{self.split.description}.",
                "",
            ]
        return "\n".join([*parts, format_metrics_table([self])])


def _rule(X: pd.DataFrame) -> np.ndarray | None:
    """The marketer's rule for event mode: most recent engagement of any kind first."""
    recency = [c for c in X.columns if str(c).startswith("days_since_last_")]
    if not recency:
        return None
    days = X[recency].to_numpy(dtype=float)
    days = np.where(np.isnan(days), np.inf, days).min(axis=1)
    return -np.minimum(days, 1e6)


#: Fewer rows of a call list than this: tiers come from every row instead.
_MIN_LIST_ROWS = 200


def _call_list_rows(X: pd.DataFrame, transition: str) -> np.ndarray:
    """Rows of the call list ``transition``'s tiers rank: prospects for the opportunity model
    (event mode, by ``current_stage``); every row otherwise."""
    if transition == "opportunity" and "current_stage" in X.columns:
        return (X["current_stage"].astype("object") == "prospect").to_numpy(dtype=bool)
    return np.ones(len(X), dtype=bool)


def _or_all(mask: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    return mask if mask.sum() >= _MIN_LIST_ROWS else fallback


def fit_backtested(
    X: pd.DataFrame,
    y: np.ndarray,
    t: Any,
    *,
    spec: FeatureSpec,
    label: str,
    transition: str,
    purge: Any,
    config: LeadMLConfig,
    rule: np.ndarray | None = None,
) -> tuple[StageModel, BacktestResult, np.ndarray]:
    """The one training protocol of both modes (design.md §4).

    A rolling-origin backtest (:func:`leadml.model.backtest.run_backtest`) over ``t`` chooses the
    trees, leaf settings, recency weighting and calibration and measures the model beside the
    baselines on the same folds; the shipped booster is then refit on **every** labelled row
    with those choices, calibrated with the mapping fitted on the pooled out-of-fold margins,
    and tiered by the distribution of its scores on the newest rows (the last fold's test
    window), which are the most like tomorrow.

    Returns the model, the backtest and the mask of the newest rows (the last fold's test
    window: the tiers' reference and the rows a rep's tier rates describe).
    """
    tr = config.training
    params = lgb_params(config.model, len(y))
    bt = run_backtest(
        X,
        y,
        t,
        categorical=list(spec.categorical),
        params=params,
        purge=purge,
        n_folds=tr.n_folds,
        rule=rule,
        seed=config.model.seed,
        n_threads=config.model.n_jobs,
        max_trees=config.model.n_estimators,
        early_stopping_rounds=config.model.early_stopping_rounds,
        ece_bins=tr.ece_bins,
        allow_isotonic=tr.calibration == "isotonic",
    )
    booster, linear = refit(X, y, t, bt, params, n_threads=config.model.n_jobs)
    calibration = bt.calibration
    model = StageModel(
        booster, calibration, (0.0, 0.0, 0.0), spec, transition, label, linear=linear
    )
    p = model.probability(X)
    newest = bt.folds[-1].masks(t)[1]
    # Tiers rank the call list the model answers for: the opportunity model's list is the
    # prospects (leads are tiered by the prospect model), so its cut-offs come from them.
    listed = _call_list_rows(X, transition)
    model.tier_thresholds = tier_thresholds(p[_or_all(newest & listed, newest)], tr.tier_shares)
    oof = bt.oof
    on_list = _or_all(listed[oof["row"].to_numpy()], np.ones(len(oof), dtype=bool))
    oof_y = oof["y"].to_numpy(dtype=int)[on_list]
    oof_p = oof["proba"].to_numpy(dtype=float)[on_list]
    verdict = bt.verdict
    model.metadata["fit"] = {
        "min_child_samples": int(bt.params.get("min_child_samples", 0)),
        "min_data_per_group": int(bt.params.get("min_data_per_group", 0)),
        "best_iteration": booster.num_trees(),
        "rows": len(y),
        "candidate": bt.candidate,
        "linear_base": bt.linear,
        "linear_weight": bt.linear_weight,
        "calibration": bt.calibration_method,
    }
    model.metadata["backtest"] = bt.to_dict()
    # How past leads converted per level / value range: the evidence behind each reason.
    model.metadata["evidence"] = evidence_stats(X, y, dict(spec.kinds))
    # What the newest rows looked like: the monitor's drift reference (leadml.model.drift).
    model.metadata["reference"] = drift_reference(X[newest], p[newest], dict(spec.kinds))
    model.metadata["verdict"] = {"ready": verdict.ready, "reason": verdict.reason}
    # Tiers' conversion as a rep will see it: out-of-fold rows, tiered by the shipped thresholds.
    model.metadata["tier_info"] = {
        k: {"conversion_rate": v["conversion_rate"], "share": v["share"]}
        for k, v in tier_conversion(oof_y, model.tier(oof_p)).items()
    }
    return model, bt, newest


def backtest_metrics(bt: BacktestResult, who: str, n_trees: int | None = None) -> dict[str, Any]:
    """Mean out-of-fold metrics of one model (the keys ``evaluate`` gives), plus intervals."""
    rows = bt.per_fold[bt.per_fold["model"] == who]
    out: dict[str, Any] = {
        "rows": int(rows["rows"].sum()) if "rows" in rows else 0,
        "positive_rate": float(bt.oof["y"].mean()),
        "folds": len(bt.folds),
    }
    for metric in ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_10", "capture_10"):
        mean, lo, hi = bt.metric(who, metric)
        out[metric], out[f"{metric}_lo"], out[f"{metric}_hi"] = mean, lo, hi
    for tier in TIERS:
        col = f"conversion_tier_{tier}"
        if col in rows.columns:
            out[col] = float(rows[col].mean())
    pooled = bt.pooled.set_index("model")
    if who in pooled.index:
        # Calibration judged on every out-of-fold row at once (per-fold ECE is binning noise).
        out["ece_pooled"] = float(pooled.loc[who, "ece"])
    if n_trees is not None:
        out["n_trees"] = n_trees
    return out


def fit_stage_model(
    frame: pd.DataFrame,
    spec: FeatureSpec,
    label: str,
    transition: str,
    config: LeadMLConfig | None = None,
    *,
    summary: dict[str, Any] | None = None,
) -> TrainResult:
    """Event mode: backtest, refit on every labelled observation point, calibrate and tier
    (:func:`fit_backtested`) the rows of a training set."""
    cfg = config or LeadMLConfig()
    days = cfg.timeline.horizon_days.get(transition, 0) + cfg.timeline.gap_days  # type: ignore[call-overload]
    y = frame[label].to_numpy().astype(int)
    X = frame[list(spec.names)]
    t = pd.to_datetime(frame["as_of"]).to_numpy(dtype="datetime64[ns]")
    model, bt, newest = fit_backtested(
        X,
        y,
        t,
        spec=spec,
        label=label,
        transition=transition,
        purge=pd.Timedelta(days=days),
        config=cfg,
        rule=_rule(X),
    )
    oof = bt.oof.set_index("row")
    test_rows = np.flatnonzero(newest)
    metrics = backtest_metrics(bt, "leadml", model.booster.num_trees())
    model.metadata = {
        **model.metadata,
        "metrics": metrics,
        "baseline_metrics": backtest_metrics(bt, "logistic"),
        "rows": {"train": int(len(y)), "positives": int(y.sum())},
        "training_window": {"start": str(frame["as_of"].min()), "end": str(frame["as_of"].max())},
        "horizon_days": cfg.timeline.horizon_days.get(transition),  # type: ignore[call-overload]
        "gap_days": cfg.timeline.gap_days,
        "config": cfg.dump(),
    }
    return TrainResult(
        model=model,
        metrics=metrics,
        baseline_metrics=model.metadata["baseline_metrics"],
        split=None,
        summary=summary or {},
        test_frame=frame.iloc[test_rows].reset_index(drop=True),
        test_proba=oof["proba"].reindex(test_rows).to_numpy(),
        config=cfg,
        backtest=bt,
    )


def train(
    data: CRMData,
    transition: str,
    config: LeadMLConfig | None = None,
) -> TrainResult:
    """Build the training set for ``transition`` and fit, calibrate and evaluate its model.

    Nothing is tracked here: :func:`leadml.jobs.train_and_track` (what ``leadml train`` runs)
    logs the result to MLflow and applies the champion gate.
    """
    cfg = config or LeadMLConfig()
    tr = cfg.training
    ts = build_training_set(data, transition, tr.start, tr.end, cfg)
    result = fit_stage_model(ts.frame, ts.spec, ts.label, transition, cfg, summary=ts.summary)
    # What the training data looked like, for scoring's layout check (leadml.data.layout).
    result.model.metadata["layout"] = layout_reference(data, ts.spec)
    return result


def train_flat(
    table: pd.DataFrame,
    target: str,
    *,
    id_column: str | None = None,
    drop: Iterable[str] = (),
    time_column: str | None = None,
    order_column: str | None = None,
    allow_columns: Iterable[str] = (),
    positive: str | None = None,
    config: LeadMLConfig | None = None,
) -> TrainResult:
    """Train a calibrated lead-scoring model on a flat table (one row per lead).

    Steps, in this order so the backtest's test rows never inform a decision:

    1. order the rows (:func:`split_flat`): by ``time_column`` or ``order_column``, at random
       otherwise (with a :class:`RandomSplitWarning`: leads of one period then share folds);
    2. plan the cleaning (:func:`plan_cleaning`) on the oldest part (``flat.split_fractions[0]``,
       60%): the backtest tests on the newest 40%;
    3. run the leakage guard (:func:`leadml.data.leakage.check_leakage`) on those rows and drop
       every flagged column that ``allow_columns`` does not keep;
    4. the event mode's protocol (:func:`fit_backtested`): rolling backtest over the order
       beside the baselines (the rule: newest row first), refit on every row, calibration,
       tiers and the readiness verdict.

    Parameters
    ----------
    table : DataFrame
        One row per lead with the outcome column.
    target : str
        The 0/1 outcome column (e.g. ``Converted``).
    id_column : str, optional
        Lead id; never a feature, copied to the scores as ``lead_id``.
    drop : iterable of str
        Columns to leave out (known leaks, columns you do not want as reasons).
    time_column, order_column : str, optional
        Creation time, or a number growing with arrival (e.g. a sequential lead number), for an
        out-of-time split. Never features.
    allow_columns : iterable of str
        Columns the leakage guard flags but you keep on purpose (they stay in the report).
    positive : str, optional
        The outcome value that counts as a conversion ("Won", "Converted"); without it the
        target may be 0/1, true/false, yes/no or y/n (:func:`leadml.data.flat.flat_target`).
    config : LeadMLConfig, optional
        ``flat`` (placeholders, leakage AUC threshold, split shares), ``model`` (LightGBM),
        ``training`` (calibration, tiers, ECE bins), ``features`` (``max_category_levels``,
        ``identifier_columns``, ``exclude_columns``), ``tracking``.

    Returns
    -------
    TrainResult
        ``result.model`` is a StageModel ready for :func:`leadml.model.bundle.save_bundle` and
        :func:`leadml.serve.scoring.score_flat`; ``result.report()`` is what the CLI prints.

    Raises
    ------
    FlatDataError
        Unknown columns, a target that is not 0/1, missing or duplicate ids, an unusable time
        or order column, or no feature left after cleaning and the leakage guard.
    """
    from leadml.config import LeadMLConfig

    cfg = config or LeadMLConfig()
    allow, drop = list(allow_columns), list(drop)
    if target not in table.columns:
        raise FlatDataError(
            f"target column {target!r} not in the table (it has "
            f"{', '.join(map(repr, list(table.columns)[:12]))}). Check the spelling."
        )
    check_columns(
        table,
        id_column=id_column,
        time_column=time_column,
        order_column=order_column,
        drop_column=drop,
        allow_column=allow,
    )
    y = flat_target(table, target, positive)
    if id_column is not None:
        check_ids(table, id_column)
    split = split_flat(
        table,
        target,
        time_column=time_column,
        order_column=order_column,
        fractions=cfg.flat.split_fractions,
        seed=cfg.model.seed,
    )
    # Cleaning and the leakage guard learn from the oldest part only: the backtest's test
    # windows lie in the newest 40%, so no decision there has seen the rows it is scored on.
    fit_rows = np.sort(split.train)
    if len(np.unique(y[fit_rows])) < 2:
        # Outcomes only in the newest rows (a young funnel): the guard needs both classes.
        warnings.warn(
            f"the oldest {len(fit_rows):,} rows hold only one outcome; cleaning and the leakage "
            "guard learn from every row, so the backtest's newest folds are slightly optimistic",
            UserWarning,
            stacklevel=2,
        )
        fit_rows = np.arange(len(table))
    fit_table = table.iloc[fit_rows]
    fc = cfg.features
    ordering = [c for c in (time_column, order_column) if c]
    excluded = [c for c in fc.exclude_columns if c in table.columns]
    plan = plan_cleaning(
        fit_table,
        target=target,
        id_column=id_column,
        drop=[*drop, *ordering, *excluded],
        placeholders=cfg.flat.placeholders,
        identifier_columns=[c for c in fc.identifier_columns if c in table.columns],
    )
    X_fit = plan.apply(fit_table)
    leak = check_leakage(
        X_fit.assign(**{target: y[fit_rows]}),
        target,
        columns=list(X_fit.columns),
        allow_columns=[c for c in allow if c in X_fit.columns],
        auc_threshold=cfg.flat.leakage_auc_threshold,
        seed=cfg.model.seed,
    )
    plan = plan.without(leak.excluded, reason="leaky")
    if not plan.features:
        raise FlatDataError(
            "no feature column is left after cleaning and the leakage guard "
            f"(dropped: {plan.dropped}). Keep a column with allow_columns or add fit attributes."
        )
    X = plan.apply(table)
    spec = flat_spec(X.iloc[fit_rows], fc.max_category_levels)
    features = model_frame(X, spec).reset_index(drop=True)
    if split.kind == "random":
        # No time in the table: the folds run over a random order (the split's warning says why
        # that is optimistic).
        t = np.random.default_rng(cfg.model.seed).permutation(len(table)).astype(float)
    else:
        column = time_column if time_column is not None else order_column
        key = ordering_key(table, str(column), split.kind).reset_index(drop=True)
        t = key.to_numpy(dtype="datetime64[ns]" if split.kind == "time" else float)
    # The marketer's rule in flat mode: the newest row first (none without an order).
    rule: np.ndarray | None = None
    if split.kind == "time":
        rule = t.astype("datetime64[ns]").astype(float)
    elif split.kind != "random":
        rule = t
    model, bt, test = fit_backtested(
        features,
        y,
        t,
        spec=spec,
        label=target,
        transition=FLAT_TRANSITION,
        purge=pd.Timedelta(0) if split.kind == "time" else 0.0,
        config=cfg,
        rule=rule,
    )
    metrics = backtest_metrics(bt, "leadml", model.booster.num_trees())
    base = backtest_metrics(bt, "logistic")
    model.metadata = {
        **model.metadata,
        "mode": "flat",
        "target": target,
        "positive": positive,
        "id_column": id_column,
        "time_column": time_column,
        "order_column": order_column,
        "cleaning": plan.to_dict(),
        "leakage": leak.to_dict(),
        "split": split.to_dict(),
        "rows": {"train": int(len(y)), "positives": int(y.sum())},
        "metrics": metrics,
        "baseline_metrics": base,
        "config": cfg.dump(),
    }
    oof = bt.oof.set_index("row")
    test_frame = features.loc[test].reset_index(drop=True)
    ids = table[id_column].to_numpy()[test] if id_column else np.flatnonzero(test)
    test_frame.insert(0, "lead_id", ids)
    test_frame[target] = y[test]
    summary = {
        "rows": len(table),
        "positive_rate": float(y.mean()),
        "features": len(spec.names),
        "leaky_columns_excluded": len(leak.excluded),
        "columns_dropped_by_cleaning": len(plan.dropped),
    }
    return TrainResult(
        model=model,
        metrics=metrics,
        baseline_metrics=base,
        split=split,
        summary=summary,
        test_frame=test_frame,
        test_proba=oof["proba"].reindex(np.flatnonzero(test)).to_numpy(),
        config=cfg,
        cleaning=plan,
        leakage=leak,
        backtest=bt,
    )


def format_metrics_table(results: list[TrainResult]) -> str:
    """What ``leadml train`` prints per model: the backtest table (leadml beside every
    baseline, mean and 95% interval over the folds), the verdict and where it was tracked."""
    lines = []
    for r in results:
        lines.append(
            f"{r.model.label}  ({r.metrics['rows']:,} out-of-fold points, positive rate "
            f"{r.metrics['positive_rate']:.3f}; shipped model refit on "
            f"{r.model.metadata.get('rows', {}).get('train', 0):,} rows, "
            f"{r.model.booster.num_trees()} trees)"
        )
        if r.backtest is not None:
            lines.extend("  " + line for line in r.backtest.format().splitlines())
        tiers = "  ".join(
            f"{x}={r.metrics.get(f'conversion_tier_{x}', float('nan')):.3f}" for x in TIERS
        )
        lines.append(f"  conversion by tier (out of fold): {tiers}")
        if r.tracking:
            lines.append(f"  run: {r.tracking.get('run_url', r.tracking.get('run_id'))}")
            lines.append(f"  model: {r.tracking['model_uri']}  champion: {r.tracking['decision']}")
        lines.append("")
    return "\n".join(lines).rstrip()
