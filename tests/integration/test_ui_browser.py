"""The README's tour of `mlflow ui`, in a real browser: headless Chromium on a real `mlflow ui`.

One `mlflow run` of the pipeline into MLflow's default store in a fresh directory, then `mlflow ui`
in that directory, as the README says. The pages are opened by the links the project writes in its
cards (``steps.mlflow_io.cards``), pointed at this server: they must open MLflow 3's Model
training view (its default, GenAI, lists a pipeline run under "Evaluation runs"), show the
pipeline run with its steps nested under it, and show each card with its plots drawn.

Chromium is Debian's package (``.ci/run`` installs it), driven by Playwright without Playwright's
own browser downloads.
"""

from __future__ import annotations

import html
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Frame, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from steps.mlflow_io.cards import CARD_FILE, artifact_url, experiment_url, run_url
from tests.conftest import free_port
from tests.integration.conftest import STEPS, PipelineRun, background_server, cli_env, explain, run_pipeline

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (.ci/run installs Debian's chromium package)")

# How long one page may take to show what is looked for (the UI loads its runs after the page).
PAGE_SECONDS = 60
# Cards drawn with plots: every image in them must load.
CARDS_WITH_PLOTS = ("main", "ingest", "train", "evaluate")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    run = run_pipeline(tmp_path_factory.mktemp("ui-browser"))
    assert run.process.returncode == 0, explain(run)
    return run


@pytest.fixture(scope="module")
def ui(pipeline: PipelineRun) -> Iterator[str]:
    """`mlflow ui` in the pipeline's directory (it reads ./mlflow.db there); yields its address."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "mlflow", "ui", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with background_server(args, cwd=pipeline.workdir, env=cli_env(), ready_url=f"{url}/health", what="mlflow-ui"):
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, tmp_path: Path) -> Iterator[Page]:
    """A fresh browser context (nothing remembered from another test); a screenshot into tmp_path at the end."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(PAGE_SECONDS * 1000)
    page = context.new_page()
    yield page
    page.screenshot(path=tmp_path / "last-page.png", full_page=True)
    context.close()


def card_frame(page: Page, title: str) -> Frame:
    """The frame in which the UI shows the card titled ``title`` (an iframe of its artifact viewer)."""
    deadline = time.monotonic() + PAGE_SECONDS
    while time.monotonic() < deadline:
        for frame in page.frames[1:]:
            try:
                if frame.title() == title:
                    return frame
            except PlaywrightError:  # a frame detached while being read: look again
                continue
        page.wait_for_timeout(200)
    pytest.fail(f"no card titled {title!r} on {page.url}; frames: {[f.url for f in page.frames]}")


def image_widths(frame: Frame) -> list[int]:
    """The natural width of every image in ``frame`` once all have loaded (0: an image that failed)."""
    frame.wait_for_function("() => [...document.images].every(image => image.complete)")
    return frame.evaluate("() => [...document.images].map(image => image.naturalWidth)")


def assert_model_training_view(page: Page) -> None:
    """The page is in the UI's Model training view: its navigation has the model registry, not GenAI's entries."""
    for genai_entry in ("Evaluation runs", "Training runs", "Judges"):
        assert page.get_by_text(genai_entry, exact=True).count() == 0, f"the GenAI view's {genai_entry!r} on {page.url}"
    page.get_by_text("Model registry", exact=True).first.wait_for()
    assert "workflowType=machine_learning" in page.url, page.url


def test_every_card_opens_in_the_ui_with_its_plots_drawn(pipeline, ui, page, tmp_path):
    runs = {"main": pipeline.parent(), **pipeline.children()}
    seen = {}
    for name, run in runs.items():
        stored = pipeline.artifact_text(run.info.run_id, CARD_FILE)
        title = html.unescape(re.search(r"<title>(.*?)</title>", stored, re.S).group(1))
        page.goto(artifact_url(ui, run.info.experiment_id, run.info.run_id))
        widths = image_widths(card_frame(page, title))
        assert len(widths) == stored.count("<img "), (name, widths)
        assert all(width > 0 for width in widths), (name, widths)
        seen[name] = len(widths)
        page.screenshot(path=tmp_path / f"card-{name}.png")
    assert all(seen[name] > 0 for name in CARDS_WITH_PLOTS), seen
    assert_model_training_view(page)


def test_the_runs_table_lists_the_pipeline_run_with_its_steps_nested(pipeline, ui, page, tmp_path):
    parent, children = pipeline.parent(), pipeline.children()
    assert sorted(children) == sorted(STEPS)
    page.goto(experiment_url(ui, parent.info.experiment_id))
    parent_row = page.locator(f'[role=row][row-id="{parent.info.run_id}"]').first
    parent_row.get_by_text(parent.info.run_name, exact=True).wait_for()
    assert_model_training_view(page)
    # Steps are nested: hidden until their pipeline run is expanded (the button beside its name).
    for run in children.values():
        assert page.locator(f'[role=row][row-id="{run.info.run_id}"]').count() == 0, run.info.run_name
    parent_row.locator("button").first.click()
    for name, run in children.items():
        page.locator(f'[role=row][row-id="{run.info.run_id}"]').first.get_by_text(name, exact=True).wait_for()
    page.screenshot(path=tmp_path / "runs-table.png", full_page=True)
    # The pipeline run's own page, from its link in a card: in the same view.
    page.goto(run_url(ui, parent.info.experiment_id, parent.info.run_id))
    page.get_by_text(parent.info.run_name, exact=True).first.wait_for()
    assert_model_training_view(page)
