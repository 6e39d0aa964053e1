"""Helpers for end-to-end tests: run the real `mlflow run` CLI and inspect what it recorded."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run

from tests.conftest import PROJECT_ROOT, free_port

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

    def artifact_text(self, run_id: str, path: str) -> str:
        """The text of artifact ``path`` of run ``run_id`` in this store."""
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=tmp, tracking_uri=self.tracking_uri)
            return Path(local).read_text(encoding="utf-8")


def cli_env(tracking_uri: str | None = None, env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for an `mlflow` command: this interpreter first on PATH, no run inherited."""
    full_env = {**os.environ, **(env or {})}
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
    full_env.pop("MLFLOW_TRACKING_URI", None)
    full_env.pop("MLFLOW_RUN_ID", None)
    for name in [n for n in full_env if n.startswith("PIPELINE_") and n not in (env or {})]:
        full_env.pop(name)  # no driver's run or warm process: each command is a pipeline of its own
    if tracking_uri:
        full_env["MLFLOW_TRACKING_URI"] = tracking_uri
    return full_env


def mlflow_cli(
    *args: str, workdir: Path, tracking_uri: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``mlflow <args>`` with this interpreter's environment first on PATH.

    ``tracking_uri=None`` leaves MLFLOW_TRACKING_URI unset, so MLflow uses its embedded default
    (``mlflow.db`` in ``workdir``).
    """
    return subprocess.run(
        [sys.executable, "-m", "mlflow", *args],
        cwd=workdir,
        env=cli_env(tracking_uri, env),
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
    entry_point: str = "main",
) -> PipelineRun:
    """``mlflow run <project> -e <entry point> --env-manager <m> -P <params>`` in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    args = ["run", str(project), "-e", entry_point, "--env-manager", env_manager]
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


@dataclass
class TrackingServer:
    """A real `mlflow server` on 127.0.0.1: SQLite backend (or the one given), proxied artifacts on local disk."""

    url: str
    root: Path
    process: subprocess.Popen
    # With basic auth: the admin's and a pipeline user's (username, password).
    admin: tuple[str, str] | None = None
    user: tuple[str, str] | None = None

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def credentials_env(self, user: tuple[str, str] | None = None) -> dict[str, str]:
        username, password = user or self.user or ("", "")
        return {"MLFLOW_TRACKING_USERNAME": username, "MLFLOW_TRACKING_PASSWORD": password} if username else {}

    def call(self, path: str, payload: dict, user: tuple[str, str] | None = None) -> dict:
        """POST ``payload`` to the server's REST API as ``user`` (default: the admin)."""
        request = urllib.request.Request(
            f"{self.url}{path}", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        username, password = user or self.admin or ("", "")
        if username:
            token = base64.b64encode(f"{username}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")


SERVER_START_SECONDS = 180


@contextmanager
def background_server(args: list[str], *, cwd: Path, env: dict[str, str], ready_url: str, what: str) -> Iterator[subprocess.Popen]:
    """Run ``args`` in its own process group until the block ends; wait until ``ready_url`` answers."""
    log = cwd / f"{what}.log"
    with log.open("w") as out:
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            try:
                with urllib.request.urlopen(ready_url, timeout=5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{what} did not start (exit {process.poll()}):\n{log.read_text()[-3000:]}")
                time.sleep(0.3)
        yield process
    finally:
        with suppress(ProcessLookupError):  # it may have exited already (failed to start)
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def post_json(url: str, payload: dict) -> tuple[int, dict]:
    """POST ``payload`` as JSON; the status and the JSON body (of an error too)."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


SERVE_COMMAND = ("models", "serve", "--env-manager", "local", "-h", "127.0.0.1")


@contextmanager
def served_model(model_uri: str, *, workdir: Path, env: dict[str, str]) -> Iterator[str]:
    """``mlflow models serve -m <model_uri> --env-manager local`` on 127.0.0.1; yields its base URL."""
    port = free_port()
    full_env = {**os.environ, **env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    args = [sys.executable, "-m", "mlflow", *SERVE_COMMAND, "-m", model_uri, "-p", str(port)]
    with background_server(args, cwd=workdir, env=full_env, ready_url=f"http://127.0.0.1:{port}/ping", what="model-server"):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def tracking_server(
    root: Path, *, basic_auth: bool = False, backend_store_uri: str | None = None, auth_database_uri: str | None = None
) -> Iterator[TrackingServer]:
    """Start `mlflow server` (optionally with `--app-name basic-auth`) in ``root``; stop it after.

    The runs and the registry go to ``backend_store_uri``, the users to ``auth_database_uri``
    (both default to SQLite files in ``root``).
    """
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    args = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend_store_uri or f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    admin = user = None
    if basic_auth:
        admin, user = ("admin", "admin-Pa55-" + secrets.token_hex(8)), ("pipeline-bot", "bot-Pa55-" + secrets.token_hex(8))
        config = root / "basic_auth.ini"
        users = auth_database_uri or f"sqlite:///{root / 'basic_auth.db'}"
        config.write_text(
            "[mlflow]\ndefault_permission = READ\n"
            f"database_uri = {users}\n"
            f"admin_username = {admin[0]}\nadmin_password = {admin[1]}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        env |= {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)}
        args += ["--app-name", "basic-auth"]
    with background_server(args, cwd=root, env=env, ready_url=f"{url}/health", what="tracking-server") as process:
        server = TrackingServer(url=url, root=root, process=process, admin=admin)
        if basic_auth:
            server.call("/api/2.0/mlflow/users/create", {"username": user[0], "password": user[1]})
            server.user = user
        yield server
