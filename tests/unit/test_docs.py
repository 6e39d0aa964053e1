"""The docs say true things about the repository: the files they name exist, their links land,
the pt-BR README gives the same commands, and the README stays short."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
README_PT_BR = PROJECT_ROOT / "README.pt-BR.md"
DOCS = sorted([README, README_PT_BR, *(PROJECT_ROOT / "docs").glob("*.md")])
NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))
README_MAX_LINES = 350

# Top-level names and folders a backticked path must start with to count as a repository path.
REPO_FILES = {"MLproject", "main.py", "requirements.txt", "requirements-dev.txt", "requirements-spark.txt", "python_env.yaml"}
REPO_FILES |= {"conda.yaml", "pyproject.toml", "README.md", "README.pt-BR.md"}
REPO_FOLDERS = ("steps", "conf", "data", "notebooks", "docs", "tests", "schedule", "kubernetes", "benchmarks", ".ci", ".github")
# Backticked names under those folders that are not repository files: artifact paths inside a run,
# and the files the docs' own examples (the schema draft of a user's file) would create.
NOT_REPO_PATHS = {
    "data/train.parquet",
    "data/test.parquet",
    "data/manifest.json",
    "conf/resolved.yaml",
    "conf/houses.schema.yaml",
    "conf/my_rows.schema.yaml",
    "data/my_rows.csv",
}
PLACEHOLDER = re.compile(r"[<>*{}…]|\.\.\.")

FENCE = re.compile(r"^ *(```|~~~)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")


def prose(text: str) -> str:
    """The text outside fenced code blocks (a `# comment` in a bash block is no heading)."""
    kept, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            kept.append(line)
    return "\n".join(kept)


def code_lines(text: str) -> list[str]:
    """The lines inside fenced code blocks."""
    kept, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif fenced:
            kept.append(line)
    return kept


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[`*_]{1,2}(?=\S)|(?<=\S)[`*_]{1,2}", "", heading.strip()).lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor, with GitHub's -1, -2 … suffixes for repeated ones."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose(text).splitlines():
        match = re.match(r"^#{1,6} +(.+?) *#*$", line)
        if match:
            base = anchor(match.group(1))
            count = seen.get(base, 0)
            found.add(base if count == 0 else f"{base}-{count}")
            seen[base] = count + 1
    return found


def notebook_markdown(path: Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown")


def documents() -> list[tuple[Path, str]]:
    return [(path, path.read_text(encoding="utf-8")) for path in DOCS] + [(path, notebook_markdown(path)) for path in NOTEBOOKS]


def looks_like_repo_path(span: str) -> bool:
    if " " in span or PLACEHOLDER.search(span) or "://" in span or span in NOT_REPO_PATHS:
        return False
    return span in REPO_FILES or (span.split("/", 1)[0] in REPO_FOLDERS and "/" in span)


def named_paths(text: str) -> list[str]:
    return [span for span in CODE_SPAN.findall(prose(text)) if looks_like_repo_path(span)]


def relative_links(text: str) -> list[str]:
    return [target for target in LINK.findall(prose(text)) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def test_the_docs_exist():
    for path in (README, README_PT_BR, PROJECT_ROOT / "docs/development.md", PROJECT_ROOT / "docs/reliability.md"):
        assert path.is_file(), path


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_repository_path_a_doc_names_exists(doc):
    text = doc.read_text(encoding="utf-8")
    paths = named_paths(text)
    missing = [path for path in paths if not (PROJECT_ROOT / path.rstrip("/")).exists()]
    assert not missing, f"{doc.name} names files that do not exist: {missing}"


@pytest.mark.parametrize(("doc", "text"), [pytest.param(doc, text, id=doc.name) for doc, text in documents()])
def test_every_relative_link_and_anchor_lands(doc, text):
    broken = []
    for target in relative_links(text):
        file_part, _, fragment = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif fragment and linked.suffix == ".md":
            page = text if linked == doc and doc.suffix == ".md" else linked.read_text(encoding="utf-8")
            if fragment not in anchors(page):
                broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{doc.name}: {broken}"


def test_the_anchor_rule_matches_githubs():
    assert anchor("Sweeps: `-e sweep`") == "sweeps--e-sweep"
    assert anchor("What you see in `mlflow ui`") == "what-you-see-in-mlflow-ui"
    assert anchor("Team setup: a shared tracking server") == "team-setup-a-shared-tracking-server"
    assert anchor("Início rápido") == "início-rápido"
    assert anchors("# A\n```\n# not a heading\n```\n## A\n") == {"a", "a-1"}


def mlflow_run_commands(text: str) -> list[str]:
    """Every `mlflow run` command line: in code blocks, and inline code that starts with one."""
    lines = [line.strip() for line in code_lines(text) if "mlflow run " in line]
    spans = [span.strip() for span in CODE_SPAN.findall(prose(text)) if span.startswith("mlflow run ")]
    return lines + spans


def test_every_mlflow_run_command_of_the_readme_is_in_the_pt_br_readme():
    commands = mlflow_run_commands(README.read_text(encoding="utf-8"))
    translated = README_PT_BR.read_text(encoding="utf-8")
    assert len(commands) >= 5
    missing = [command for command in commands if command not in translated]
    assert not missing, f"README.pt-BR.md lacks: {missing}"


def test_the_readme_links_the_pt_br_readme_at_the_top_and_stays_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"
    assert any("(README.pt-BR.md)" in line for line in lines[:5])


@pytest.mark.parametrize("page", sorted((PROJECT_ROOT / "docs").glob("*.md")), ids=lambda path: path.name)
def test_every_docs_page_is_linked_from_both_readmes_and_links_back(page):
    for readme in (README, README_PT_BR):
        assert f"(docs/{page.name})" in readme.read_text(encoding="utf-8"), f"{readme.name} does not link docs/{page.name}"
    opening = "\n".join(page.read_text(encoding="utf-8").splitlines()[:10])
    assert "](../README.md" in opening, f"docs/{page.name} does not link back to the README in its first lines"
