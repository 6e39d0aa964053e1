"""The layout is the architecture: imports go one way, and no entry point imports another.

    entry points (steps/<name>.py, main.py)   the steps and the other MLproject entry points
        -> mlflow_io/      MLflow I/O: artifacts, contracts (tag names, manifest, result), registry, cards
        -> core/           no MLflow: data checks, features, the model, the gate's rules, conf
    orchestration/ (drivers only: main.py, steps/sweep.py)  config, step runner, cache, report
    runtime/           process start, warm process, signals, locks, tracking server checks

Each layer may import the layers listed for it below and itself. Read from the source (AST), so a
new module is held to the rule the moment it exists.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from steps.core.conf import PROJECT_ROOT

STEPS = PROJECT_ROOT / "steps"
ENTRY_POINTS = ("ingest", "featurize", "train", "evaluate", "register", "predict", "rollback", "compare", "schema", "sweep")
DRIVERS = ("main", "sweep")  # drive steps: the only entry points that use orchestration
ALLOWED = {
    "core": {"core"},
    "runtime": {"core", "runtime"},
    "mlflow_io": {"core", "runtime", "mlflow_io"},
    "orchestration": {"core", "runtime", "mlflow_io", "orchestration"},
    "entry point": {"core", "mlflow_io"},
    "driver": {"core", "runtime", "mlflow_io", "orchestration"},
    "launcher": {"runtime"},
}


def layer_of(path: Path) -> str:
    relative = path.relative_to(PROJECT_ROOT)
    if relative.parts[0] == "main.py":
        return "driver"
    if len(relative.parts) == 2:  # steps/<module>.py
        name = relative.stem
        return "launcher" if name == "__main__" else "driver" if name in DRIVERS else "entry point"
    return relative.parts[1]


def imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + ([f"{node.module}.{alias.name}" for alias in node.names] if node.module == "steps" else [])
    return names


def project_modules() -> list[Path]:
    return sorted([PROJECT_ROOT / "main.py", *(p for p in STEPS.rglob("*.py") if p.name != "__init__.py")])


def target_layer(module: str) -> str | None:
    """The layer a ``steps...`` import lands in; None for outside the project."""
    parts = module.split(".")
    if parts[0] != "steps" or len(parts) < 2:
        return None
    if parts[1] in ENTRY_POINTS:
        return "driver" if parts[1] in DRIVERS else "entry point"
    return parts[1]


def violations(layer: str, modules: list[str]) -> list[str]:
    """The imports among ``modules`` that ``layer`` may not make, each with the rule it breaks."""
    wrong = []
    for module in modules:
        target = target_layer(module)
        if target in ("entry point", "driver"):
            wrong.append(f"{module} (an entry point imports no other entry point)")
        elif target is not None and target not in ALLOWED[layer]:
            wrong.append(f"{module} ({layer} may import {', '.join(sorted(ALLOWED[layer]))})")
        elif layer == "core" and module.split(".")[0] == "mlflow":
            wrong.append(f"{module} (core has no MLflow)")
    return wrong


@pytest.mark.parametrize("path", project_modules(), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_imports_go_one_way(path):
    assert not violations(layer_of(path), imported_modules(path))
    relative = [
        node.module for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, ast.ImportFrom) and node.level
    ]
    assert not relative, f"relative imports {relative}: the rule above reads absolute ones (steps.<layer>...)"


def test_the_rule_catches_each_kind_of_wrong_import():
    assert violations("entry point", ["steps.featurize"]) == ["steps.featurize (an entry point imports no other entry point)"]
    assert violations("driver", ["steps.compare"]) == ["steps.compare (an entry point imports no other entry point)"]
    assert violations("core", ["mlflow.models"]) == ["mlflow.models (core has no MLflow)"]
    assert violations("core", ["steps.mlflow_io.contracts"]) == ["steps.mlflow_io.contracts (core may import core)"]
    assert violations("mlflow_io", ["steps.orchestration.config"])
    assert violations("entry point", ["steps.orchestration.runner", "steps.runtime.signals"]) != []
    assert violations("entry point", ["steps.core.model", "steps.mlflow_io.artifacts", "mlflow", "pandas"]) == []
    assert layer_of(STEPS / "train.py") == "entry point" and layer_of(STEPS / "sweep.py") == "driver"
    assert layer_of(PROJECT_ROOT / "main.py") == "driver" and layer_of(STEPS / "core" / "gate.py") == "core"
