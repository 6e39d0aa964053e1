"""The committed tutorial notebooks are valid nbformat 4 and carry no outputs (a small, stable diff).

The pt-BR notebook is a translation of the English one: the same cells in the same order, code
cells identical (so tests/integration/test_notebook.py, which executes the English notebook,
covers its code too), every markdown cell with prose translated, and each points to the other.
"""

from __future__ import annotations

import difflib
import functools
import re
from pathlib import Path

import nbformat
import pytest

from tests.conftest import PROJECT_ROOT

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOK = NOTEBOOKS_DIR / "01_mlflow_intro.ipynb"
NOTEBOOK_PT_BR = NOTEBOOKS_DIR / "01_mlflow_intro.pt-BR.ipynb"
ALL_NOTEBOOKS = pytest.mark.parametrize("path", [NOTEBOOK, NOTEBOOK_PT_BR], ids=lambda path: path.name)

# Below this many words a cell is a heading or a label, not prose that must be translated.
MIN_PROSE_WORDS = 3
# This many words in a row, as in the English cell, were left untranslated; shorter runs can be
# terms and names that stay in English ("tracking server", "Run All Cells").
UNTRANSLATED_RUN_WORDS = 7

FENCED_CODE = re.compile(r"```.*?```", re.DOTALL)
INLINE_CODE = re.compile(r"`[^`]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)]*)\)")
BARE_URL = re.compile(r"https?://\S+")
WORD = re.compile(r"[^\W\d_]+")


@functools.cache
def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=nbformat.NO_CONVERT)


def cells(path: Path, cell_type: str) -> list[nbformat.NotebookNode]:
    return [cell for cell in read(path).cells if cell.cell_type == cell_type]


def translatable_text(markdown: str) -> str:
    """The cell's text without what a translation keeps: code, links (they name their target) and URLs."""
    for pattern in (FENCED_CODE, LINK, INLINE_CODE, BARE_URL):
        markdown = pattern.sub(" ", markdown)
    return markdown


def words(markdown: str) -> list[str]:
    return WORD.findall(translatable_text(markdown).lower())


def word_runs(markdown: str) -> set[str]:
    """Every UNTRANSLATED_RUN_WORDS consecutive words of the cell's text."""
    cell_words = words(markdown)
    return {" ".join(cell_words[start : start + UNTRANSLATED_RUN_WORDS]) for start in range(len(cell_words) - UNTRANSLATED_RUN_WORDS + 1)}


def link_targets(markdown: str) -> list[str]:
    return LINK.findall(markdown)


@ALL_NOTEBOOKS
def test_notebook_is_valid_nbformat_4(path: Path) -> None:
    notebook = read(path)
    assert notebook.nbformat == 4
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"


@ALL_NOTEBOOKS
def test_notebook_has_no_outputs(path: Path) -> None:
    code_cells = cells(path, "code")
    assert code_cells
    dirty = [cell.id for cell in code_cells if cell.outputs or cell.execution_count is not None]
    assert dirty == [], f"clear the outputs of these cells of {path.name} before committing: {dirty}"


def test_pt_br_notebook_has_the_english_cells_in_order() -> None:
    english = [(cell.cell_type, cell.id) for cell in read(NOTEBOOK).cells]
    pt_br = [(cell.cell_type, cell.id) for cell in read(NOTEBOOK_PT_BR).cells]
    assert pt_br == english, f"{NOTEBOOK_PT_BR.name} must have the cells (type, id) of {NOTEBOOK.name}, in the same order"


def test_pt_br_code_cells_equal_the_english_ones() -> None:
    english, pt_br = cells(NOTEBOOK, "code"), cells(NOTEBOOK_PT_BR, "code")
    for number, (expected, actual) in enumerate(zip(english, pt_br, strict=False), start=1):
        diff = "\n".join(difflib.unified_diff(expected.source.splitlines(), actual.source.splitlines(), "English", "pt-BR", lineterm=""))
        assert actual.source == expected.source, f"code cell {number} (id {expected.id!r}) differs from the English notebook's:\n{diff}"
    missing = [cell.id for cell in english[len(pt_br) :]]
    extra = [cell.id for cell in pt_br[len(english) :]]
    assert (missing, extra) == ([], []), f"code cells missing from {NOTEBOOK_PT_BR.name}: {missing}; not in {NOTEBOOK.name}: {extra}"


def test_pt_br_markdown_cells_are_translated() -> None:
    english, pt_br = cells(NOTEBOOK, "markdown"), cells(NOTEBOOK_PT_BR, "markdown")
    assert len(pt_br) == len(english), f"{NOTEBOOK_PT_BR.name} has {len(pt_br)} markdown cells, {NOTEBOOK.name} {len(english)}"
    with_prose = [(source, target) for source, target in zip(english, pt_br, strict=True) if len(words(source.source)) >= MIN_PROSE_WORDS]
    assert with_prose, "no English markdown cell has prose: the check below would check nothing"
    for source, target in with_prose:
        assert words(target.source) != words(source.source), f"markdown cell {source.id!r} is not translated"
        left = sorted(word_runs(source.source) & word_runs(target.source))
        assert left == [], f"markdown cell {source.id!r} still has English text: {left}"


@pytest.mark.parametrize(("path", "other"), [(NOTEBOOK, NOTEBOOK_PT_BR), (NOTEBOOK_PT_BR, NOTEBOOK)], ids=["English", "pt-BR"])
def test_each_notebook_points_to_the_other_in_its_first_cell(path: Path, other: Path) -> None:
    first = read(path).cells[0]
    assert first.cell_type == "markdown"
    targets = link_targets(first.source)
    assert other.name in targets, f"the first cell of {path.name} should link to {other.name}; its links: {targets}"
