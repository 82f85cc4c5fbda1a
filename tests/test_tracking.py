"""MLflow against a real temporary SQLite store: runs, registry, champion gate, pyfunc, no PII."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from leadml.jobs import load_stage_model
from leadml.tracking import log_training_run

pytestmark = pytest.mark.slow


def test_first_run_takes_champion_and_a_worse_one_does_not(trained, mlflow_uri) -> None:
    import mlflow

    good = trained["prospect"]
    first = log_training_run(good)
    assert first["promoted"] and first["model_version"] == "1"
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("leadml-prospect", "champion").version) == "1"
    # What the backtest chose is on the run, for the team to compare runs by.
    params = client.get_run(first["run_id"]).data.params
    bt = good.backtest
    assert params["chosen_model"] == bt.chosen and params["chosen_n_trees"] == str(bt.n_trees)
    assert params["chosen_calibration"] == bt.calibration_method

    # A crippled model on the same window: predicts the base rate for everyone.
    worse_model = dataclasses.replace(good.model)
    worse_model.calibration = dataclasses.replace(good.model.calibration, a=0.0)
    worse = dataclasses.replace(
        good,
        model=worse_model,
        metrics={**good.metrics, "pr_auc": 0.01},
        test_proba=good.test_proba * 0,
    )
    second = log_training_run(worse)
    assert not second["promoted"] and second["decision"].startswith("kept champion v1")
    assert str(client.get_model_version_by_alias("leadml-prospect", "champion").version) == "1"
    run = client.get_run(second["run_id"])
    assert run.data.tags["leadml.promoted"] == "false"
    assert "gate_champion_pr_auc" in run.data.metrics and "gate_new_pr_auc" in run.data.metrics

    forced = log_training_run(worse, force=True)
    assert forced["promoted"] and forced["decision"].startswith("forced")
    assert str(client.get_model_version_by_alias("leadml-prospect", "champion").version) == "3"


def test_pyfunc_returns_the_batch_scorers_rows(trained, crm_medium, mlflow_uri) -> None:
    import mlflow

    from leadml.data.trainset import build_scoring_set
    from leadml.serve.scoring import score_features

    log_training_run(trained["prospect"])
    model = load_stage_model("models:/leadml-prospect@champion")
    assert model.metadata["model_version"] == "leadml-prospect:1"
    frame = build_scoring_set(crm_medium, "2025-04-01", spec=model.spec)
    frame = frame.loc[frame["stage"] == "lead"].head(50).reset_index(drop=True)
    expected = score_features(frame, {"prospect": model})
    pyfunc = mlflow.pyfunc.load_model("models:/leadml-prospect@champion")
    sent = frame.copy()
    for col in model.spec.categorical:
        sent[col] = sent[col].astype(object).where(sent[col].notna(), None).astype(str)
    sent["lead_id"] = sent["lead_id"].astype(str)
    got = pyfunc.predict(sent)
    assert got["score"].tolist() == expected["score"].tolist()
    assert got["tier"].tolist() == expected["tier"].tolist()
    np.testing.assert_allclose(got["p_prospect"], expected["p_prospect"], rtol=0, atol=1e-12)
    assert list(got["reasons"]) == list(expected["reasons"])


def test_no_pii_is_logged(trained, crm_medium, mlflow_uri, tmp_path) -> None:
    import mlflow

    info = log_training_run(trained["prospect"])
    client = mlflow.MlflowClient()
    run = client.get_run(info["run_id"])
    leads = crm_medium.leads
    secrets = (
        set(leads["email"].head(200)) | set(leads["name"].head(200)) | set(leads["phone"].head(200))
    )
    logged = " ".join([*map(str, run.data.params.values()), *map(str, run.data.tags.values())])
    run_files = mlflow.artifacts.download_artifacts(
        run_id=info["run_id"], dst_path=str(tmp_path / "a")
    )
    model_files = mlflow.artifacts.download_artifacts(
        artifact_uri=info["model_uri"], dst_path=str(tmp_path / "m")
    )
    for root in (Path(run_files), Path(model_files)):
        for f in root.rglob("*"):
            if f.is_file() and f.suffix != ".png":
                logged += f.read_text(errors="ignore")
    assert logged.count("n_pricing_page_view_7d") > 0  # the bundle's spec really was read
    assert not [s for s in secrets if s in logged]


def test_a_champion_in_a_local_registry_loads_without_importing_mlflow(
    trained, mlflow_uri, tmp_path
) -> None:
    import os
    import subprocess
    import sys

    from leadml import tracking
    from leadml._registry import find_local_version

    log_training_run(trained["prospect"])
    uri = "models:/leadml-prospect@champion"
    found = find_local_version(uri)
    assert found is not None and found.label == "leadml-prospect:1"
    # The same model MLflow gives, named the same way.
    fast, slow = load_stage_model(uri), tracking.load_registered_model(uri)
    assert fast.metadata["model_version"] == slow.metadata["model_version"] == "leadml-prospect:1"
    assert fast.booster.model_to_string() == slow.booster.model_to_string()
    X = trained["prospect"].test_frame.head(500)
    np.testing.assert_array_equal(fast.probability(X), slow.probability(X))
    # A nightly job's process never imports MLflow for it.
    code = (
        "import sys; from leadml.jobs import load_models; "
        "m = load_models(['prospect=models:/leadml-prospect@champion']); "
        "print(m['prospect'].metadata['model_version'], 'mlflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=tmp_path,
        check=True,
    )
    assert out.stdout.split() == ["leadml-prospect:1", "False"], out.stderr
    # What the shortcut does not know is left to MLflow (which also words the errors).
    assert find_local_version("models:/leadml-prospect/1") == found
    for other in ("models:/leadml-prospect@nope", "models:/leadml-prospect/7", "runs:/abc/model"):
        assert find_local_version(other) is None, other
    import mlflow

    mlflow.MlflowClient().delete_model_version("leadml-prospect", "1")
    assert find_local_version("models:/leadml-prospect/1") is None


def test_bad_model_uri_is_a_clear_error(mlflow_uri) -> None:
    import mlflow

    from leadml.model.bundle import BundleError

    # An existing registry without the model (a missing registry: test_tracking_hostile.py).
    mlflow.MlflowClient().search_experiments()
    with pytest.raises(
        BundleError, match="could not load MLflow model 'models:/leadml-prospect@champion'"
    ):
        load_stage_model("models:/leadml-prospect@champion")
    with pytest.raises(BundleError, match="neither an existing bundle directory nor an MLflow"):
        load_stage_model("nowhere")


def test_tracking_uri_defaults_to_sqlite_in_working_dir(tmp_path, monkeypatch) -> None:
    import mlflow

    from leadml.tracking import set_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(None)
    assert set_tracking_uri(None).startswith("sqlite:")
