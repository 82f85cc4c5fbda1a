"""Estimators for notebooks, in scikit-learn's manner: ``fit`` learns, ``predict`` scores.

:class:`LeadScorer` wraps the event mode (three tables -> one model per stage transition) and
:class:`FlatLeadScorer` the flat mode (one row per lead with an outcome column). Both follow
scikit-learn's conventions: ``__init__`` only stores its arguments, ``fit`` returns ``self`` and
sets attributes ending in ``_`` (``models_`` or ``model_``, ``results_``, ``metrics_``), and
calling ``predict`` before ``fit`` raises scikit-learn's ``NotFittedError`` with what to call
first. ``predict`` returns the scores frame of the scores-file contract
(:mod:`leadml.serve.contract`), the same rows ``leadml score`` writes.

Examples
--------
>>> from leadml import LeadScorer, make_crm
>>> crm = make_crm(n_leads=600, seed=3)
>>> scorer = LeadScorer(transitions=("prospect",)).fit(crm)        # doctest: +SKIP
>>> scorer.predict(crm, as_of="2025-06-01").head()                 # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from leadml.config import LeadMLConfig
from leadml.data.contracts import CRMData
from leadml.funnel import TRANSITIONS
from leadml.model.bundle import load_bundle, save_bundle
from leadml.model.stage import StageModel
from leadml.model.training import TrainResult, train, train_flat
from leadml.serve.scoring import explain_lead, score, score_flat

__all__ = ["FlatLeadScorer", "LeadScorer"]


def _not_fitted(name: str, what: str) -> Exception:
    from sklearn.exceptions import NotFittedError

    return NotFittedError(
        f"this {name} is not fitted yet; call {what} first (or {name}.load / from_registry)"
    )


class LeadScorer:
    """Event-mode lead scoring: one calibrated LightGBM model per stage transition.

    Parameters
    ----------
    config : LeadMLConfig, optional
        The configuration (timeline, features, model, training, explain); default the defaults.
    transitions : sequence of str
        Which transitions to model: ``"prospect"`` (lead -> prospect) and/or ``"opportunity"``.

    Attributes
    ----------
    models_ : dict
        ``{transition: StageModel}``.
    results_ : dict
        ``{transition: TrainResult}`` (only after ``fit``).
    metrics_ : DataFrame
        Out-of-time metrics per transition (rows) beside the logistic-regression baseline.
    """

    def __init__(
        self, config: LeadMLConfig | None = None, transitions: Sequence[str] = TRANSITIONS
    ) -> None:
        self.config = config
        self.transitions = transitions

    def fit(self, crm: CRMData) -> LeadScorer:
        """Build point-in-time training sets and train, calibrate and evaluate each model."""
        unknown = [t for t in self.transitions if t not in TRANSITIONS]
        if unknown or not self.transitions:
            raise ValueError(
                f"transitions={list(self.transitions)!r}: expected 'prospect' and/or 'opportunity'"
            )
        cfg = self.config or LeadMLConfig()
        self.results_ = {t: train(crm, t, cfg) for t in self.transitions}
        self.models_ = {t: r.model for t, r in self.results_.items()}
        return self

    @property
    def metrics_(self) -> pd.DataFrame:
        results = self._fitted_results()
        return _metrics_frame(results)

    def _fitted_models(self) -> dict[str, StageModel]:
        if not hasattr(self, "models_"):
            raise _not_fitted(type(self).__name__, "fit(crm)")
        return self.models_

    def _fitted_results(self) -> Mapping[str, TrainResult]:
        if not hasattr(self, "results_"):
            raise _not_fitted(type(self).__name__, "fit(crm)")
        return self.results_

    def predict(self, crm: CRMData, as_of: Any = None) -> pd.DataFrame:
        """Score and explain every lead eligible at ``as_of`` (default now): the scores frame."""
        return score(crm, as_of, self._fitted_models(), self.config)

    def explain(self, lead_id: Any, crm: CRMData, as_of: Any = None, *, plot: bool = True) -> Any:
        """Every reason of one lead and a waterfall of how they build its score."""
        return explain_lead(
            lead_id, crm, as_of, self._fitted_models(), config=self.config, plot=plot
        )

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """One bundle per model under ``path`` (``path/leadml-<transition>``)."""
        root = Path(path)
        for t, m in self._fitted_models().items():
            save_bundle(m, root / f"leadml-{t}", overwrite=overwrite)
        return root

    @classmethod
    def load(cls, path: str | Path, config: LeadMLConfig | None = None) -> LeadScorer:
        """The scorer :meth:`save` wrote (no training results, only the models)."""
        root = Path(path)
        found = {t: root / f"leadml-{t}" for t in TRANSITIONS if (root / f"leadml-{t}").is_dir()}
        if not found:
            raise FileNotFoundError(
                f"{str(root)!r} holds no leadml-prospect or leadml-opportunity bundle; "
                "write one with LeadScorer.save"
            )
        return cls._with_models({t: load_bundle(p) for t, p in found.items()}, config)

    @classmethod
    def from_registry(
        cls, config: LeadMLConfig | None = None, alias: str = "champion"
    ) -> LeadScorer:
        """The registry's ``alias`` versions of ``<prefix>-prospect`` and ``-opportunity``."""
        from leadml.jobs import load_models  # MLflow is imported only for the registry

        cfg = config or LeadMLConfig()
        prefix = cfg.tracking.model_name_prefix
        specs = [f"{t}=models:/{prefix}-{t}@{alias}" for t in TRANSITIONS]
        return cls._with_models(
            load_models(specs, prefix=prefix, tracking_uri=cfg.tracking.tracking_uri), config
        )

    @classmethod
    def _with_models(
        cls, models: Mapping[str, StageModel], config: LeadMLConfig | None
    ) -> LeadScorer:
        scorer = cls(config, transitions=tuple(models))
        scorer.models_ = dict(models)
        return scorer


class FlatLeadScorer:
    """Flat-mode lead scoring: one row per lead, pre-aggregated columns and an outcome.

    Parameters
    ----------
    target : str
        The outcome column (0/1).
    id_column, time_column, order_column : str, optional
        Lead id; a creation time or a sequential number for an out-of-time evaluation.
    drop, allow_columns : iterable of str
        Columns to leave out; columns the leakage guard flags but you keep on purpose.
    config : LeadMLConfig, optional

    Attributes
    ----------
    model_ : StageModel
    result_ : TrainResult
    metrics_ : DataFrame
    """

    def __init__(
        self,
        target: str,
        *,
        id_column: str | None = None,
        time_column: str | None = None,
        order_column: str | None = None,
        drop: Iterable[str] = (),
        allow_columns: Iterable[str] = (),
        config: LeadMLConfig | None = None,
    ) -> None:
        self.target = target
        self.id_column = id_column
        self.time_column = time_column
        self.order_column = order_column
        self.drop = drop
        self.allow_columns = allow_columns
        self.config = config

    def fit(self, table: pd.DataFrame) -> FlatLeadScorer:
        """Clean, guard against leaks, train, calibrate and evaluate on ``table``."""
        self.result_ = train_flat(
            table,
            self.target,
            id_column=self.id_column,
            drop=self.drop,
            time_column=self.time_column,
            order_column=self.order_column,
            allow_columns=self.allow_columns,
            config=self.config,
        )
        self.model_ = self.result_.model
        return self

    @property
    def metrics_(self) -> pd.DataFrame:
        if not hasattr(self, "result_"):
            raise _not_fitted(type(self).__name__, "fit(table)")
        return _metrics_frame({"flat": self.result_})

    def _fitted_model(self) -> StageModel:
        if not hasattr(self, "model_"):
            raise _not_fitted(type(self).__name__, "fit(table)")
        return self.model_

    def predict(self, table: pd.DataFrame, as_of: Any = None) -> pd.DataFrame:
        """Score and explain every row of ``table``: the scores frame, sorted by score."""
        return score_flat(table, self._fitted_model(), self.config, as_of=as_of)

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """The model as a bundle directory."""
        return save_bundle(self._fitted_model(), path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path, config: LeadMLConfig | None = None) -> FlatLeadScorer:
        """The scorer :meth:`save` wrote."""
        model = load_bundle(path)
        meta = model.metadata
        scorer = cls(
            meta.get("target", model.label),
            id_column=meta.get("id_column"),
            time_column=meta.get("time_column"),
            order_column=meta.get("order_column"),
            config=config,
        )
        scorer.model_ = model
        return scorer


def _metrics_frame(results: Mapping[str, TrainResult]) -> pd.DataFrame:
    rows = []
    for t, r in results.items():
        for who, m in (("leadml", r.metrics), ("logistic", r.baseline_metrics)):
            rows.append({"transition": t, "model": who, **dict(m.items())})
    return pd.DataFrame(rows).set_index(["transition", "model"])
