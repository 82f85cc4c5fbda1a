"""leadml: point-in-time-correct, calibrated and explained lead scoring with LightGBM.

The public API is re-exported here lazily, so ``import leadml`` stays fast (no LightGBM, MLflow or
SHAP import until a function that needs them is used).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "LeadScorer": "leadml.estimator",
    "FlatLeadScorer": "leadml.estimator",
    "CRMData": "leadml.data.contracts",
    "DataContractError": "leadml.data.contracts",
    "validate": "leadml.data.contracts",
    "load_crm": "leadml.data.contracts",
    "LeadMLConfig": "leadml.config",
    "load_config": "leadml.config",
    "make_crm": "leadml.datasets",
    "build_features": "leadml.data.features",
    "build_training_set": "leadml.data.trainset",
    "build_scoring_set": "leadml.data.trainset",
    "train": "leadml.model.training",
    "train_flat": "leadml.model.training",
    "load_stage_model": "leadml.jobs",
    "load_models": "leadml.jobs",
    "score": "leadml.serve.scoring",
    "score_flat": "leadml.serve.scoring",
    "read_scores": "leadml.serve.contract",
    "write_scores": "leadml.serve.contract",
    "explain_lead": "leadml.serve.scoring",
    "build_report": "leadml.report",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'leadml' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
