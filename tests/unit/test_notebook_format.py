"""The committed tutorial notebook is valid nbformat 4 and carries no outputs (a small, stable diff).

tests/integration/test_notebook.py executes it.
"""

from __future__ import annotations

import nbformat

from tests.conftest import PROJECT_ROOT

NOTEBOOK = PROJECT_ROOT / "notebooks" / "01_mlflow_intro.ipynb"


def test_notebook_is_valid_nbformat_4() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=nbformat.NO_CONVERT)
    assert notebook.nbformat == 4
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"


def test_notebook_has_no_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=nbformat.NO_CONVERT)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells
    dirty = [cell.id for cell in code_cells if cell.outputs or cell.execution_count is not None]
    assert dirty == [], f"clear the outputs of these cells before committing: {dirty}"
