"""The tutorial notebook runs from top to bottom against a fresh store and leaves nothing in the checkout.

It is executed the way Jupyter runs it (an ipykernel kernel, working directory notebooks/), so
its cells, and what it teaches, never go stale.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import nbformat
import pytest
from mlflow import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import cli_env

pytestmark = pytest.mark.e2e

NOTEBOOK = PROJECT_ROOT / "notebooks" / "01_mlflow_intro.ipynb"
MODEL_NAME = "diabetes-elasticnet"
CELL_TIMEOUT_SECONDS = 600
# Not the notebook's doing: caches of the test run itself, and virtual environments in the checkout.
IGNORED_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache"}
VENV_PATHSPECS = (":(exclude).venv", ":(exclude)venv")


def checkout_extras() -> set[str]:
    """Files in the checkout that git does not track, ignored ones (mlflow.db, mlruns/) included."""
    listing = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all", "--", ".", *VENV_PATHSPECS],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line[3:] for line in listing.splitlines() if line[:2] in ("??", "!!") and not IGNORED_PARTS.intersection(Path(line[3:]).parts)}


def fresh_store(root: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite store whose default experiment keeps its artifacts under ``root``.

    The store fixes the default experiment's artifact location (``./mlruns``, resolved against
    the working directory) when it is first opened. The notebook works in the project root, so
    the store is created here first, or its artifacts would land in the checkout.
    """
    root.mkdir()
    uri = f"sqlite:///{root / 'mlflow.db'}"
    monkeypatch.chdir(root)
    location = MlflowClient(uri).get_experiment("0").artifact_location
    assert Path(local_file_uri_to_path(location)).is_relative_to(root), location
    return uri


def code_output(cell: nbformat.NotebookNode) -> str:
    """Everything a code cell printed or displayed, as text (HTML included)."""
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        data = output.get("data", {})
        parts += [data.get("text/plain", ""), data.get("text/html", "")]
    return "\n".join(parts)


def test_notebook_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = checkout_extras()
    uri = fresh_store(tmp_path / "store", monkeypatch)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel starts with this environment: this interpreter first on PATH, the fresh store,
    # no run or pipeline driver of the test process.
    env = cli_env(uri)
    # ipykernel forwards what the pipeline's processes print to the notebook, as in Jupyter,
    # only when it does not think it runs under pytest.
    env.pop("PYTEST_CURRENT_TEST", None)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_SECONDS,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    started = time.monotonic()
    try:
        client.execute(env=env)
    except CellExecutionError as exc:
        pytest.fail(f"the notebook failed after {time.monotonic() - started:.0f} s:\n{exc}")

    cells = {cell.id: cell for cell in notebook.cells if cell.cell_type == "code"}
    assert all(cell.execution_count is not None for cell in cells.values()), "not every code cell ran"
    assert "served predictions equal the pyfunc predictions" in code_output(cells["serve"])
    # The pipeline's summary shows under the cell that ran it.
    assert "Pipeline run" in code_output(cells["run-first"])
    assert "REUSED" in code_output(cells["run-second"])

    store = MlflowClient(uri)
    runs = store.search_runs(["0"], max_results=1000)
    pipelines = [r for r in runs if r.data.tags.get("mlflow.project.entryPoint") == "main"]
    assert sorted(float(r.data.params["alpha"]) for r in pipelines) == [0.3, 1.0]
    assert all(r.info.status == "FINISHED" for r in pipelines)
    assert [r.info.status for r in runs if r.data.tags.get("mlflow.project.entryPoint") == "compare"] == ["FINISHED"]
    assert len(store.search_model_versions(f"name = '{MODEL_NAME}'")) == 2
    # alpha=1.0 scores worse than 0.3 on the test split: rejected, so version 1 stays the champion.
    assert int(store.get_model_version_by_alias(MODEL_NAME, "champion").version) == 1

    # The card cell shows the pipeline run's card.
    latest = max(pipelines, key=lambda r: r.info.start_time)
    has_card = any(a.path == "card.html" for a in store.list_artifacts(latest.info.run_id))
    assert has_card and "<iframe" in code_output(cells["card"])

    assert checkout_extras() - before == set(), "the notebook left files in the checkout"
