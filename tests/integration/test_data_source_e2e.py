"""End to end: a data source that changes, trickles or never answers while the pipeline reads it.

The driver reads ``data_uri`` to key ingest's cache; ingest reads it again. Whatever the source
does between the two reads, the ingest run must be keyed by what ingest read, and a download
must end within ``data.download_timeout``, paid once.
"""

from __future__ import annotations

import time

import pandas as pd
import pytest

from tests.conftest import PROJECT_ROOT, ScriptedServer, SilentServer
from tests.integration.conftest import PipelineRun, explain, run_pipeline

pytestmark = pytest.mark.e2e

ERROR_PREFIX = "error: "


def _csv(rows: int) -> bytes:
    return pd.read_csv(PROJECT_ROOT / "data" / "example_data.csv").head(rows).to_csv(index=False).encode()


def _ingest(run: PipelineRun):
    (parent,) = run.client.search_runs(["0"], "tags.`mlflow.project.entryPoint` = 'main'", order_by=["start_time DESC"], max_results=1)
    (ingest,) = run.client.search_runs(
        ["0"], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.`mlflow.project.entryPoint` = 'ingest'"
    )
    return ingest


def test_a_source_that_changes_between_the_two_reads_never_poisons_the_cache(tmp_path):
    """The server answers the driver with A (442 rows) and ingest with B (300 rows), then A."""
    a, b = _csv(442), _csv(300)
    with ScriptedServer([a, b, a]) as server:
        changed = run_pipeline(tmp_path, f"data_uri={server.url}", "steps=ingest")
        assert changed.process.returncode == 0, explain(changed)
        assert "changed between the driver's read and the step's" in changed.process.stderr, explain(changed)
        poisoned = _ingest(changed)
        assert poisoned.data.metrics["rows"] == 300  # B, what ingest read

        # Asked for A again: the plan must not reuse the run that holds B (it is keyed by B).
        plan = run_pipeline(tmp_path, f"data_uri={server.url}", "dry_run=true")
        assert plan.process.returncode == 0, explain(plan)
        (ingest_line,) = [line for line in plan.process.stdout.splitlines() if line.strip().startswith("ingest")]
        assert ingest_line.split()[1] == "run", explain(plan)  # e.g. "inputs changed since run <the poisoned one>"
        assert "inputs changed" in ingest_line, ingest_line
    assert server.requests == 3  # the driver and ingest, then the plan's driver


@pytest.mark.parametrize("source", ["trickling", "silent"])
def test_a_download_that_does_not_finish_in_time_fails_once_naming_the_url(tmp_path, source):
    """A server sending a byte a second, or never answering: the run fails after the deadline,
    which it pays once (one request), with one line naming the URL."""
    server = ScriptedServer(trickle_every=1.0) if source == "trickling" else SilentServer()
    url = server.url
    with server:
        start = time.monotonic()
        run = run_pipeline(tmp_path, f"data_uri={url}", "data.download_timeout=3")
        seconds = time.monotonic() - start
        requests = server.requests if source == "trickling" else len(server.connections)
    assert run.process.returncode != 0, explain(run)
    assert "Traceback" not in run.process.stderr, explain(run)
    errors = [line for line in run.process.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    expected = f"step ingest failed: ingest: dataset {url}: cannot download: not complete after 3 s (data.download_timeout)"
    assert errors == [ERROR_PREFIX + expected]
    assert requests == 1
    ingest = _ingest(run)
    assert ingest.info.status == "FAILED"
    assert seconds < 60, "the driver's and ingest's per-read timeouts (60 s each) must not be paid"
