"""Shared fixtures: small deterministic synthetic CRMs, trained models, a real temporary MLflow."""

from __future__ import annotations

import fcntl
import os
import pickle
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import settings

# Locally, property tests draw new examples every run (that is how they find bugs); CI replays a
# fixed, seed-derived set so a red build always means a reproducible failure.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Two xdist workers share two cores, and LightGBM's OpenMP threads spin while they wait: with
# both workers training, the spinning starves the other worker (a 27 s CLI test took 349 s).
# Passive waiting, set before lightgbm loads (subprocesses inherit it), removes that.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
def fast_config():
    """The configuration trained fixtures use: monthly observation points (a quarter of the
    weekly training rows; scoring is unaffected), one LightGBM thread (the suite runs two
    xdist workers on two cores), at most 150 trees and a 3-fold backtest."""
    from leadml.config import LeadMLConfig

    return LeadMLConfig().with_overrides(
        {
            "timeline": {"cadence_days": 28},
            "model": {"n_jobs": 1, "n_estimators": 150},
            "training": {"n_folds": 3},
        }
    )


@pytest.fixture(scope="session")
def trained(crm_medium, fast_config, tmp_path_factory):
    """Both stage models trained on ``crm_medium`` with ``fast_config`` (no tracking).

    Trained once per run: under xdist the first worker to ask trains and pickles the results
    beside the workers' temporary directories; the others wait on a lock and load them.
    """
    from leadml.data.features import IdentifierColumnsExcluded
    from leadml.model.training import train

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IdentifierColumnsExcluded)
            return {t: train(crm_medium, t, fast_config) for t in ("prospect", "opportunity")}

    if not os.environ.get("PYTEST_XDIST_WORKER"):  # one process (also with -p no:xdist)
        return fit()
    shared = tmp_path_factory.getbasetemp().parent
    with open(shared / "trained.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / "trained.pkl"
        if done.exists():
            return pickle.loads(done.read_bytes())
        result = fit()
        done.write_bytes(pickle.dumps(result))
        return result


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
