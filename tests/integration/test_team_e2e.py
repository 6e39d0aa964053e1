"""Team mode: the pipeline against a real `mlflow server` with basic auth, started by the test.

The server keeps runs in SQLite and artifacts on local disk behind its proxy (`mlflow-artifacts:/`
URIs); the pipeline authenticates from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD.
test_team_postgres_e2e.py runs the scenarios that depend on the store again on PostgreSQL.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run

from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import (
    CLI_TIMEOUT_SECONDS,
    STEPS,
    PipelineRun,
    TrackingServer,
    cli_env,
    explain,
    mlflow_cli,
    post_json,
    run_pipeline,
    served_model,
    tracking_server,
)

pytestmark = pytest.mark.e2e

MODEL = "diabetes-elasticnet"
EXPERIMENT = "team-pipeline"


@dataclass
class Team:
    server: TrackingServer
    workdir: Path
    first: PipelineRun
    again: PipelineRun

    @property
    def env(self) -> dict[str, str]:
        return {**self.server.credentials_env(), "MLFLOW_EXPERIMENT_NAME": EXPERIMENT}

    @property
    def client(self) -> MlflowClient:
        return self.first.client

    def pipeline_runs(self) -> list[Run]:
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        runs = self.client.search_runs([experiment.experiment_id], max_results=1000)
        return [r for r in runs if r.data.tags.get("mlflow.project.entryPoint") == "main"]

    def children(self, parent: Run) -> dict[str, Run]:
        experiment = parent.info.experiment_id
        kids = self.client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'", max_results=100)
        return {r.data.tags["mlflow.project.entryPoint"]: r for r in kids}


@contextmanager
def team_against(
    root: Path, *, backend_store_uri: str | None = None, auth_database_uri: str | None = None, basic_auth: bool = True
) -> Iterator[Team]:
    """A server (basic auth unless told), the pipeline run against it (as a user), then the same command again.

    The server's stores are those of :func:`tracking_server` (SQLite unless given); everything
    stops when the block ends.
    """
    # Credentials reach MLflow through the environment, as the README says; the client in this
    # process (for the assertions) uses them too.
    stores = {"backend_store_uri": backend_store_uri, "auth_database_uri": auth_database_uri}
    with tracking_server(root / "server", basic_auth=basic_auth, **stores) as server, pytest.MonkeyPatch.context() as patch:
        for name, value in server.credentials_env().items():
            patch.setenv(name, value)
        env = {**server.credentials_env(), "MLFLOW_EXPERIMENT_NAME": EXPERIMENT}
        workdir = root / "work"
        first = run_pipeline(workdir, "alpha=0.3", tracking_uri=server.url, env=env)
        assert first.process.returncode == 0, explain(first)
        again = run_pipeline(workdir, "alpha=0.3", tracking_uri=server.url, env=env)
        assert again.process.returncode == 0, explain(again)
        mlflow.set_tracking_uri(server.url)
        try:
            yield Team(server=server, workdir=workdir, first=first, again=again)
        finally:
            mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def team(tmp_path_factory) -> Iterator[Team]:
    """The team setup on SQLite (tests/integration/test_team_postgres_e2e.py: the same on PostgreSQL)."""
    with team_against(tmp_path_factory.mktemp("team")) as team:
        yield team


def test_the_pipeline_runs_unchanged_against_the_server_with_proxied_artifacts(team):
    first, _ = sorted(team.pipeline_runs(), key=lambda r: r.info.start_time)
    assert first.info.status == "FINISHED"
    assert first.info.artifact_uri.startswith("mlflow-artifacts:/"), first.info.artifact_uri
    children = team.children(first)
    assert set(children) == set(STEPS)
    for step, child in children.items():
        assert child.info.status == "FINISHED", step
        assert child.info.artifact_uri.startswith("mlflow-artifacts:/"), (step, child.info.artifact_uri)
    # Artifacts went through the server to its --artifacts-destination, not to the client's disk.
    ingest = children["ingest"]
    assert list(team.server.artifacts.rglob(f"{ingest.info.run_id}/artifacts/data/train.parquet"))
    assert not (team.workdir / "mlruns").exists()
    champion = team.client.get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == "1"
    assert champion.tags["pipeline.run_id"] == first.info.run_id
    assert "Decision: promoted to champion" in team.first.process.stdout


def test_the_same_command_again_reuses_every_step_through_the_server(team):
    _, second = sorted(team.pipeline_runs(), key=lambda r: r.info.start_time)
    assert second.info.status == "FINISHED"
    for step in STEPS:
        assert second.data.tags[f"pipeline.{step}.status"] == "REUSED", step
    assert [v.version for v in team.client.search_model_versions(f"name = '{MODEL}'")] == ["1"]


def test_the_champion_is_served_from_the_server(team):
    env = {"MLFLOW_TRACKING_URI": team.server.url, **team.server.credentials_env()}
    raw = pd.read_csv(PROJECT_ROOT / "data/example_data.csv").drop(columns=["target"]).head(10)
    with served_model(f"models:/{MODEL}@champion", workdir=team.workdir, env=env) as url:
        status, body = post_json(f"{url}/invocations", {"dataframe_split": raw.to_dict(orient="split", index=False)})
    assert status == 200, body
    expected = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion").predict(raw)
    np.testing.assert_allclose(np.asarray(body["predictions"]), np.asarray(expected), rtol=1e-9)


def _everything_logged(client: MlflowClient, destination: Path) -> Iterator[tuple[str, str]]:
    """(where, text) for every param, tag, metric name, artifact, logged model and registry entry."""
    for experiment in client.search_experiments():
        yield f"experiment {experiment.name}", f"{experiment.name} {experiment.tags}"
        for run in client.search_runs([experiment.experiment_id], max_results=1000):
            where = f"run {run.info.run_id}"
            yield where, f"{run.info.run_name} {run.data.params} {run.data.tags} {list(run.data.metrics)}"
            local = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(destination / run.info.run_id)))
            for file in (p for p in local.rglob("*") if p.is_file()):
                yield f"{where} artifact {file.relative_to(local)}", file.read_bytes().decode("latin-1")
        for model in client.search_logged_models([experiment.experiment_id]):
            yield f"logged model {model.model_id}", f"{model.name} {model.tags} {model.params}"
            local = Path(mlflow.artifacts.download_artifacts(f"models:/{model.model_id}", dst_path=str(destination / model.model_id)))
            for file in (p for p in local.rglob("*") if p.is_file()):
                yield f"logged model {model.model_id} file {file.relative_to(local)}", file.read_bytes().decode("latin-1")
    for registered in client.search_registered_models():
        yield f"registered model {registered.name}", f"{registered.description} {registered.tags} {registered.aliases}"
    for version in client.search_model_versions():
        yield f"model version {version.name}/{version.version}", f"{version.description} {version.tags} {version.source}"


def test_credentials_appear_nowhere_in_what_the_pipeline_logged(team, tmp_path):
    username, password = team.server.user
    secrets = {password, base64.b64encode(f"{username}:{password}".encode()).decode()}
    searched = []
    for where, text in _everything_logged(team.client, tmp_path):
        searched.append(where)
        for secret in secrets:
            assert secret not in text, f"a credential appears in {where}"
    # The search reached every kind of record: runs, their artifacts, the model files, the registry.
    for expected in ("artifact summary.txt", "artifact data/manifest.json", "file MLmodel", "model version diabetes-elasticnet/1"):
        assert any(where.endswith(expected) for where in searched), expected
    for run in (team.first, team.again):
        for secret in secrets:
            assert secret not in run.process.stdout and secret not in run.process.stderr


def test_wrong_credentials_give_a_clear_error(team):
    username, _ = team.server.user
    wrong = {"MLFLOW_TRACKING_USERNAME": username, "MLFLOW_TRACKING_PASSWORD": "not-the-password"}
    # The scheduler's script checks the server first: one line, exit 2, within seconds.
    script = subprocess.run(
        [str(PROJECT_ROOT / "schedule/run-pipeline.sh")],
        env=cli_env(team.server.url, wrong),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert script.returncode == 2
    assert script.stderr.strip() == (
        f"error: the tracking server {team.server.url} rejected the credentials (HTTP 401): "
        "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    )
    # Plain `mlflow run` fails in MLflow's own code, before the pipeline starts; it says why.
    process = mlflow_cli("run", str(PROJECT_ROOT), "--env-manager", "local", workdir=team.workdir, tracking_uri=team.server.url, env=wrong)
    assert process.returncode != 0
    assert "401" in process.stderr.splitlines()[-1] and "not authenticated" in process.stderr.splitlines()[-1]


def three_pipelines_at_once_on_three_machines_leave_the_best_as_champion(team: Team, tmp_path: Path) -> None:
    """Three schedulers on different machines (no shared lock file), different alpha, one server.

    Run on the PostgreSQL server (test_team_postgres_e2e.py), the team setup the docs describe:
    the same scenario on this SQLite server took another 3.5 minutes of the suite.
    """
    model = "team-concurrent"
    alphas = ("0.05", "0.5", "2.0")  # test RMSE about 53.6, 53.4 and 55.1: 0.5 is the best
    processes = []
    for alpha in alphas:
        machine = tmp_path / f"machine-{alpha}"
        (machine / "tmp").mkdir(parents=True)
        env = cli_env(team.server.url, {**team.env, "TMPDIR": str(machine / "tmp")})
        args = [sys.executable, "-m", "mlflow", "run", str(PROJECT_ROOT), "--env-manager", "local", "-P", f"alpha={alpha}"]
        args += ["-P", f"model_name={model}"]
        processes.append(subprocess.Popen(args, cwd=machine, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [process.communicate(timeout=CLI_TIMEOUT_SECONDS) for process in processes]
    for alpha, process, (stdout, stderr) in zip(alphas, processes, outputs, strict=True):
        assert process.returncode == 0, f"alpha={alpha}\n{stdout[-3000:]}\n{stderr[-5000:]}"

    client = team.client
    versions = {v.version: client.get_model_version(model, v.version) for v in client.search_model_versions(f"name = '{model}'")}
    assert sorted(versions) == ["1", "2", "3"]
    parents = {r.info.run_id: r for r in team.pipeline_runs() if r.data.params.get("registry.model_name") == model}
    assert len(parents) == 3
    # Every run ended: the three pipelines and each one's five steps.
    for parent in parents.values():
        steps = team.children(parent)
        assert set(steps) == set(STEPS), parent.info.run_id
        for run in (parent, *steps.values()):
            assert run.info.status == "FINISHED" and run.info.end_time, (run.info.run_id, run.info.status)
    required = ("pipeline.run_id", "data.digest", "git.commit", "evaluation.passed", "evaluation.test_digest")
    required += ("evaluation.root_mean_squared_error", "decision", "decision.reason")
    for version in versions.values():
        missing = [tag for tag in required if tag not in version.tags]
        assert not missing, (version.version, missing)
        assert version.tags["pipeline.run_id"] in parents
    assert {v.tags["pipeline.run_id"] for v in versions.values()} == set(parents)  # each its own version

    def rmse(version: str) -> float:
        return float(versions[version].tags["evaluation.root_mean_squared_error"])

    # Whatever the order in which they evaluated and registered (a late one may have been compared
    # with an earlier one's champion and rejected), the best that passed ends as champion.
    decisions = {v: (versions[v].tags["decision"], versions[v].tags["decision.reason"]) for v in versions}
    passed = [v for v in versions if versions[v].tags["evaluation.passed"] == "true"]
    best = min(passed, key=rmse)
    champion = client.get_model_version_by_alias(model, "champion")
    assert str(champion.version) == best, decisions
    assert champion.tags["evaluation.passed"] == "true"
    assert versions[best].tags["decision"] == "promoted", decisions
    # One champion at a time: each promotion replaced the champion of the one before (no two
    # replaced the same one), and the chain of promotions from "no champion" ends at the champion.
    replaced = {versions[v].tags["champion.previous"]: v for v, (decision, _) in decisions.items() if decision == "promoted"}
    assert len(replaced) == sum(decision == "promoted" for decision, _ in decisions.values()), decisions
    chain = ["none"]
    while chain[-1] in replaced:
        chain.append(replaced[chain[-1]])
    assert sorted(chain[1:]) == sorted(replaced.values()) and chain[-1] == best, (chain, decisions)
    assert all(decision in {"promoted", "rejected", "not promoted"} for decision, _ in decisions.values()), decisions
    assert str(client.get_model_version_by_alias(model, "challenger").version) == "3"  # the newest
    assert not client.search_registered_models(f"name = '{model}.alias-lock'")  # every lease was released
