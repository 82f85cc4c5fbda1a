"""leadml: point-in-time-correct, calibrated and explained lead scoring with LightGBM.

The public API is re-exported here lazily, so ``import leadml`` stays fast (no LightGBM, MLflow or
SHAP import until a function that needs them is used).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "CRMData": "leadml.contracts",
    "DataContractError": "leadml.contracts",
    "validate": "leadml.contracts",
    "load_crm": "leadml.contracts",
    "LeadMLConfig": "leadml.config",
    "load_config": "leadml.config",
    "make_crm": "leadml.datasets",
    "build_features": "leadml.features",
    "build_training_set": "leadml.trainset",
    "build_scoring_set": "leadml.trainset",
    "train": "leadml.training",
    "load_stage_model": "leadml.tracking",
    "score": "leadml.scoring",
    "explain_lead": "leadml.scoring",
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
