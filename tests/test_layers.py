"""The package's layering (design.md §3): every import, function-level ones and type-only ones
included, points down or sideways within a layer, never up, and no modules import each other
in a circle. Only ``leadml.tracking`` imports mlflow; ``import leadml`` imports none of the
heavy libraries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "leadml"

#: Lowest first. A module may import modules of its own layer or of a lower one.
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "leadml",
        "leadml.config",
        "leadml._io",
        "leadml._json",
        "leadml._kernels",
        "leadml._timing",
        "leadml.funnel",
    ),
    ("leadml.data", "leadml.datasets"),
    ("leadml.model",),
    ("leadml.explain",),
    ("leadml.serve",),
    # The pyfunc as code, run by MLflow; the registry read without MLflow.
    ("leadml.tracking", "leadml._pyfunc_model", "leadml._registry"),
    ("leadml.report", "leadml.jobs", "leadml.estimator"),
    ("leadml.cli", "leadml.__main__", "leadml._nbcheck"),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    best, best_len = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            matches = module == p or (p != "leadml" and module.startswith(p + "."))
            if matches and len(p) > best_len:
                best, best_len = i, len(p)
    if best < 0:
        raise AssertionError(f"module {module} is in no layer; add it to LAYERS")
    return best


def _imports(path: Path) -> set[str]:
    """Every leadml module ``path`` imports, anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # ``from leadml.data import flat`` imports the submodule leadml.data.flat
            found.update(f"{node.module}.{a.name}" for a in node.names)
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in found if m in modules and m != "leadml"}


def _graph() -> dict[str, set[str]]:
    return {
        _module_name(p): _imports(p) - {_module_name(p)}
        for p in sorted(PACKAGE.rglob("*.py"))
        if not _module_name(p).endswith("__init__")
    }


def test_every_module_is_in_a_layer() -> None:
    for module in _graph():
        _layer(module)


def test_no_import_points_up_a_layer() -> None:
    upward = [
        f"{m} (layer {_layer(m)}) imports {dep} (layer {_layer(dep)})"
        for m, deps in _graph().items()
        for dep in sorted(deps)
        if _layer(dep) > _layer(m)
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycle() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for dep in sorted(graph.get(m, ())):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_only_tracking_imports_mlflow() -> None:
    offenders = []
    for p in PACKAGE.rglob("*.py"):
        tree = ast.parse(p.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "mlflow" or n.startswith("mlflow.") for n in names):
                offenders.append(_module_name(p))
    assert set(offenders) <= {"leadml.tracking"}, sorted(set(offenders))


ALL_HEAVY = (
    "mlflow",
    "shap",
    "lightgbm",
    "sklearn",
    "matplotlib",
    "pyspark",
    # Database drivers load only when --data or --out-table is a URL (leadml.data.sql).
    "duckdb",
    "sqlalchemy",
    "psycopg",
)


@pytest.mark.parametrize(
    ("statement", "heavy"),
    [
        ("import leadml", ALL_HEAVY),
        ("import leadml.cli", ALL_HEAVY),
        # The scoring job checks its models and starts reading data before LightGBM (and,
        # through it, scikit-learn and SciPy: a second or more) is imported.
        (
            "import leadml.jobs, leadml.serve.stream",
            ("lightgbm", "sklearn", "scipy", "mlflow", "shap", "numba", "pyspark"),
        ),
        # A notebook's estimator needs LightGBM, never MLflow (seconds) until the registry is used.
        (
            "from leadml import LeadScorer, FlatLeadScorer, load_stage_model",
            ("mlflow", "shap", "pyspark"),
        ),
    ],
)
def test_import_is_light(statement: str, heavy: tuple[str, ...]) -> None:
    code = (
        f"{statement}\nimport sys\n"
        f"heavy = [m for m in {heavy!r} if m in sys.modules]\nprint(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"{statement!r} imported {out}"
