"""MLflow when things go wrong, against real MLflow (no mocks): a tracking server that does not
answer fails fast with its URI, reading a registry that does not exist creates nothing, and the
logged pyfunc is code, not a pickle."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from leadml.cli import main

CHAMPION = "models:/leadml-prospect@champion"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def dead_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The URI of a local port nobody listens on (connections are refused at once), as
    ``$MLFLOW_TRACKING_URI``; the working directory is ``tmp_path``."""
    import mlflow

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(None)  # the environment variable decides
    yield uri
    mlflow.set_tracking_uri(None)


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--data", "{missing}"],
        ["train", "--table", "{missing}.csv", "--target", "Converted"],
        ["backtest", "--data", "{missing}", "--out", "{tmp}/bt.csv"],
        ["score", "--data", "{missing}", "--model", CHAMPION, "--out", "{tmp}/s.csv"],
        ["score", "--table", "{missing}.csv", "--model", CHAMPION, "--out", "{tmp}/s.csv"],
    ],
    ids=["train", "train-flat", "backtest", "score", "score-flat"],
)
def test_an_unreachable_server_fails_before_any_work(tmp_path, dead_uri, command) -> None:
    # The data do not exist: the command must stop at the server, before it reads anything.
    args = [a.format(missing=tmp_path / "no-data", tmp=tmp_path) for a in command]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    line = _one_error_line(r.output)
    assert f"MLflow server '{dead_uri}' is unreachable (Connection refused)" in line
    assert "MLFLOW_TRACKING_URI" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_mlflow_http_knobs_fail_fast_by_default_and_a_users_values_win(tmp_path) -> None:
    code = (
        "import os, leadml.tracking\n"
        "print(*(os.environ[f'MLFLOW_HTTP_REQUEST_{k}'] for k in "
        "('MAX_RETRIES', 'BACKOFF_FACTOR', 'TIMEOUT')))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST_")}
    env["PYTHONPATH"] = str(ROOT)  # this checkout's leadml

    def run(**extra: str) -> list[str]:
        return subprocess.run(
            [sys.executable, "-c", code],
            env={**env, **extra},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()

    # MLflow's own are 7 retries, backoff factor 2 and 120 s: about four minutes.
    assert run(MLFLOW_HTTP_REQUEST_TIMEOUT="120") == ["3", "1", "120"]


@pytest.mark.parametrize("where", ["mlflow.db", "missing/folder/mlflow.db"])
def test_reading_a_registry_that_does_not_exist_creates_nothing(
    tmp_path, monkeypatch, where
) -> None:
    import mlflow

    from leadml.jobs import load_stage_model
    from leadml.tracking import TrackingError

    db = tmp_path / where
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    try:
        with pytest.raises(TrackingError) as caught:
            load_stage_model(CHAMPION)
    finally:
        mlflow.set_tracking_uri(None)
    message = str(caught.value)
    assert f"cannot load MLflow model '{CHAMPION}': no MLflow registry at '{uri}'" in message
    assert "train first (leadml train), pass --model PATH" in message
    assert "MLFLOW_TRACKING_URI" in message and "\n" not in message
    assert not db.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_score_with_the_default_registry_in_a_fresh_directory_creates_nothing(
    tmp_path, monkeypatch
) -> None:
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(None)  # MLflow's default: sqlite:///mlflow.db here
    r = CliRunner().invoke(main, ["score", "--data", "crm", "--out", "scores.csv"])
    assert r.exit_code == 2, r.output
    line = _one_error_line(r.output)
    db = (tmp_path / "mlflow.db").resolve()
    assert f"no MLflow registry at 'sqlite:///{db}' ({db} does not exist" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_logged_pyfunc_is_code_not_a_pickle(
    trained, crm_medium, mlflow_uri, tmp_path, monkeypatch
) -> None:
    import mlflow
    import yaml

    from leadml.data.trainset import build_scoring_set
    from leadml.serve.scoring import score_features
    from leadml.tracking import log_training_run

    info = log_training_run(trained["prospect"])
    local = Path(mlflow.artifacts.download_artifacts(info["model_uri"], dst_path=str(tmp_path)))
    files = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
    assert not [f for f in files if f.endswith((".pkl", ".pickle"))], files
    assert "_pyfunc_model.py" in files and "artifacts/bundle/model.txt" in files
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert "python_model" not in flavor

    # MLflow refuses to unpickle anything now, and the model still loads and predicts.
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    pyfunc = mlflow.pyfunc.load_model(CHAMPION)
    model = trained["prospect"].model
    frame = build_scoring_set(crm_medium, "2025-04-01", spec=model.spec)
    frame = frame.loc[frame["stage"] == "lead"].head(50).reset_index(drop=True)
    sent = frame.copy()
    for col in model.spec.categorical:
        sent[col] = sent[col].astype(object).where(sent[col].notna(), None).astype(str)
    sent["lead_id"] = sent["lead_id"].astype(str)
    got = pyfunc.predict(sent)
    p = got["p_prospect"].to_numpy()
    assert len(p) == 50 and np.all((p > 0) & (p < 1))
    expected = score_features(frame, {"prospect": model})
    np.testing.assert_allclose(p, expected["p_prospect"], rtol=0, atol=1e-12)
