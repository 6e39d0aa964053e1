"""Steps started through the warm process behave like steps started from scratch."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from steps.core.conf import PROJECT_ROOT
from steps.runtime.launch import WARM_SOCKET_ENV, WarmProcess, warm_process


@pytest.fixture(scope="module")
def warm() -> Iterator[WarmProcess]:
    with warm_process(PROJECT_ROOT) as process:
        yield process


def _launch(tmp_path: Path, warm_value: str | None, *args: str) -> subprocess.CompletedProcess:
    # Nothing from other tests' pipelines: their store, run ids, or driver (which reports step errors itself).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PIPELINE_"))}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env.pop(WARM_SOCKET_ENV, None)
    if warm_value is not None:
        env[WARM_SOCKET_ENV] = warm_value
    return subprocess.run(
        [sys.executable, "-m", "steps", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_step_runs_in_the_warm_process_with_the_launchers_streams_and_exit_status(warm, tmp_path):
    done = _launch(tmp_path, warm.environment_value, "register", "--help")
    assert done.returncode == 0, done.stderr
    assert "usage: register" in done.stdout


def test_a_failing_step_reports_and_exits_as_if_started_from_scratch(warm, tmp_path):
    warmed = _launch(tmp_path, warm.environment_value, "train", "--alpha=abc")
    cold = _launch(tmp_path, None, "train", "--alpha=abc")
    assert (warmed.returncode, cold.returncode) == (1, 1)
    line = "error: train: argument --alpha: invalid float value: 'abc'"
    assert [x for x in warmed.stderr.splitlines() if x.startswith("error:")] == [line], warmed.stderr
    assert [x for x in cold.stderr.splitlines() if x.startswith("error:")] == [line], cold.stderr
    # The launcher's environment reached the step: its run is in this test's store.
    runs = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_runs(["0"])
    assert sorted(r.info.status for r in runs) == ["FAILED", "FAILED"]


def test_a_request_without_the_token_is_refused_and_the_step_runs_in_its_own_process(warm, tmp_path):
    address = warm.environment_value.partition("#")[0]
    done = _launch(tmp_path, f"{address}#not-the-token", "register", "--help")
    assert done.returncode == 0
    assert "usage: register" in done.stdout


def test_an_unreachable_warm_process_falls_back_to_this_process(tmp_path):
    done = _launch(tmp_path, "@no-such-pipeline-socket#x", "register", "--help")
    assert done.returncode == 0
    assert "usage: register" in done.stdout


def test_the_launcher_names_the_steps_it_knows(tmp_path):
    done = _launch(tmp_path, None, "deploy")
    assert done.returncode == 2
    assert "usage: python -m steps <main|sweep|ingest|featurize|train|evaluate|register|rollback|predict|compare>" in done.stderr
