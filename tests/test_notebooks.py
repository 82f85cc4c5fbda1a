"""Notebooks never rot: each runs top to bottom in a fresh kernel and ends with cells that assert,
and the committed copies carry no outputs.

The executed copies, pictures included, are kept in pytest's temporary directory (the failure
message says where) for a look at what a data scientist would see.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from leadml._nbcheck import dirty_cells

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# cookiecutter-data-science: <step>-<initials>-<topic>.ipynb
NAME = re.compile(r"^\d+\.\d+-[a-z]{2,3}-[a-z0-9]+(-[a-z0-9]+)*\.ipynb$")
# What an execution could leave behind if a notebook wrote into the repository.
STRAY = ("mlflow.db", "mlruns", "mlartifacts")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def test_there_are_four_notebooks_named_by_step_and_topic() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "1.0-ld-explore-funnel.ipynb",
        "2.0-ld-train-evaluate.ipynb",
        "3.0-ld-explain.ipynb",
        "4.0-ld-score-batch.ipynb",
    ]
    assert all(NAME.match(p.name) for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_is_stripped_and_ends_with_checks(path: Path) -> None:
    assert dirty_cells(path) == [], f"{path.name} has outputs; run python -m leadml._nbcheck"
    meta = json.loads(path.read_text(encoding="utf-8"))["metadata"]
    assert meta["kernelspec"]["name"] == "python3"
    code = [c for c in _cells(path) if c["cell_type"] == "code"]
    last = "".join(code[-1]["source"])
    assert "assert " in last, f"{path.name}: the last code cell should check something"


@pytest.fixture
def venv_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ``python3`` kernelspec that runs this interpreter, first on JUPYTER_PATH, so a user's own
    ``python3`` kernel (another Python, without leadml) can never be picked instead."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "Python 3 (leadml venv)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "python3"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, venv_kernel: str
) -> None:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the notebooks switch to inline themselves
    monkeypatch.setenv("LEADML_NOTEBOOK_TMP", str(work))
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = {p.name for p in (REPO / "notebooks").iterdir()}
    stray_before = {s for s in STRAY if (REPO / s).exists()}

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, kernel_name=venv_kernel, timeout=600, resources={"metadata": {"path": str(work)}}
    )
    executed = tmp_path / path.name
    try:
        client.execute()
    except CellExecutionError as e:
        pytest.fail(f"{path.name} failed (executed copy: {executed}):\n{e}", pytrace=False)
    finally:
        nbformat.write(nb, executed)  # with its pictures, also when a cell failed

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} drew no picture"
    assert {p.name for p in (REPO / "notebooks").iterdir()} == before, (
        "notebook wrote into notebooks/"
    )
    assert {s for s in STRAY if (REPO / s).exists()} == stray_before, "notebook wrote into the repo"
    assert dirty_cells(path) == [], "executing must not touch the committed notebook"
