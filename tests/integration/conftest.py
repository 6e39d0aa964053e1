"""Helpers for end-to-end tests: run the real `mlflow run` CLI and inspect what it recorded."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Run

from tests.conftest import PROJECT_ROOT

STEPS = ("ingest", "featurize", "train", "evaluate", "register")
CLI_TIMEOUT_SECONDS = 900


@dataclass
class PipelineRun:
    """One `mlflow run` invocation and the tracking store it wrote to."""

    process: subprocess.CompletedProcess
    tracking_uri: str
    workdir: Path

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.tracking_uri)

    def runs(self) -> list[Run]:
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        return self.client.search_runs(experiments, max_results=1000)

    def parent(self) -> Run:
        """The one pipeline (parent) run in the store."""
        parents = [r for r in self.runs() if r.data.tags.get("mlflow.project.entryPoint") == "main"]
        assert len(parents) == 1, [r.info.run_id for r in parents]
        return parents[0]

    def children(self) -> dict[str, Run]:
        parent_id = self.parent().info.run_id
        kids = [r for r in self.runs() if r.data.tags.get("mlflow.parentRunId") == parent_id]
        return {r.data.tags["mlflow.project.entryPoint"]: r for r in kids}

    def registered_versions(self) -> list:
        return self.client.search_model_versions()


def mlflow_cli(
    *args: str, workdir: Path, tracking_uri: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``mlflow <args>`` with this interpreter's environment first on PATH.

    ``tracking_uri=None`` leaves MLFLOW_TRACKING_URI unset, so MLflow uses its embedded default
    (``mlflow.db`` in ``workdir``).
    """
    full_env = {**os.environ, **(env or {})}
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
    full_env.pop("MLFLOW_TRACKING_URI", None)
    full_env.pop("MLFLOW_RUN_ID", None)
    if tracking_uri:
        full_env["MLFLOW_TRACKING_URI"] = tracking_uri
    return subprocess.run(
        [sys.executable, "-m", "mlflow", *args],
        cwd=workdir,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )


def run_pipeline(
    workdir: Path,
    *params: str,
    env_manager: str = "local",
    tracking_uri: str | None = None,
    env: dict[str, str] | None = None,
    project: Path = PROJECT_ROOT,
) -> PipelineRun:
    """``mlflow run <project> --env-manager <m> -P <params>`` in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    args = ["run", str(project), "--env-manager", env_manager]
    for param in params:
        args += ["-P", param]
    process = mlflow_cli(*args, workdir=workdir, tracking_uri=tracking_uri, env=env)
    return PipelineRun(process=process, tracking_uri=tracking_uri or f"sqlite:///{workdir / 'mlflow.db'}", workdir=workdir)


def explain(run: PipelineRun) -> str:
    """The tail of the CLI's output, for assertion messages."""
    return f"exit {run.process.returncode}\n--- stdout ---\n{run.process.stdout[-4000:]}\n--- stderr ---\n{run.process.stderr[-6000:]}"


@pytest.fixture(scope="session")
def default_store_run(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """The full pipeline, `-P alpha=0.3`, into MLflow's default store in a fresh directory."""
    run = run_pipeline(tmp_path_factory.mktemp("default-store"), "alpha=0.3")
    assert run.process.returncode == 0, explain(run)
    return run
