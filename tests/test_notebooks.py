"""Notebooks never rot: each runs top to bottom in a fresh kernel (its last cells assert), and the
committed copies carry no outputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from leadml._nbcheck import dirty_cells

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks_and_they_are_stripped() -> None:
    assert len(NOTEBOOKS) >= 4
    for path in NOTEBOOKS:
        assert dirty_cells(path) == [], f"{path.name} has outputs; strip them before committing"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("LEADML_NOTEBOOK_TMP", str(tmp_path))
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    nbformat.write(nb, tmp_path / path.name)  # the executed copy, with its pictures
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    assert images, f"{path.name} rendered no picture"
    assert not list(Path(os.getcwd()).glob("mlflow.db")) or Path(os.getcwd()) == tmp_path
