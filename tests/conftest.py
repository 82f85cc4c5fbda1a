"""Shared fixtures: small deterministic synthetic CRMs, trained models, a real temporary MLflow."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import settings

# Locally, property tests draw new examples every run (that is how they find bugs); CI replays a
# fixed, seed-derived set so a red build always means a reproducible failure.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Spark (tests marked spark) must run executors on this venv's Python.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture(scope="session")
def crm():
    """1,500 synthetic leads over 18 months (about 75k events)."""
    from leadml.datasets import make_crm

    return make_crm(n_leads=1500, seed=3)


@pytest.fixture(scope="session")
def crm_medium():
    """5,000 synthetic leads: enough to train both stage models in a few seconds."""
    from leadml.datasets import make_crm

    return make_crm(n_leads=5000, seed=11)


@pytest.fixture(scope="session")
def trained(crm_medium):
    """Both stage models trained on ``crm_medium`` (no tracking; a 3-fold backtest)."""
    from leadml.config import LeadMLConfig
    from leadml.data.features import IdentifierColumnsExcluded
    from leadml.model.training import train

    cfg = LeadMLConfig().with_overrides({"training": {"n_folds": 3}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifierColumnsExcluded)
        return {t: train(crm_medium, t, cfg) for t in ("prospect", "opportunity")}


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real MLflow tracking store on SQLite in a temporary directory (artifacts beside it)."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    import mlflow

    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)
