"""`mlflow run <git url>` (with and without -v) against a git daemon on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from tests.conftest import PROJECT_ROOT, free_port
from tests.integration.conftest import STEPS, PipelineRun, explain, mlflow_cli

pytestmark = pytest.mark.e2e

TAG = "v0.0.0-test"


def _git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def git_server(tmp_path_factory) -> Iterator[tuple[str, str, str]]:
    """A bare clone of this repository served by `git daemon`: (URL, tagged commit, HEAD commit).

    The tag points at HEAD~1 when there is one, so `-v <tag>` is seen to run another commit.
    """
    root = tmp_path_factory.mktemp("git")
    bare = root / "pipeline.git"
    _git("clone", "--quiet", "--bare", str(PROJECT_ROOT), str(bare))
    head = _git("rev-parse", "HEAD", cwd=bare)
    tagged = _git("rev-parse", "HEAD~1", cwd=bare) if _git("rev-list", "--count", "HEAD", cwd=bare) != "1" else head
    _git("tag", TAG, tagged, cwd=bare)
    port = free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={root}", "--listen=127.0.0.1", f"--port={port}", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("git daemon did not start")
        yield f"git://127.0.0.1:{port}/pipeline.git", tagged, head
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def run_from_git(workdir: Path, url: str, *extra: str) -> PipelineRun:
    workdir.mkdir(parents=True, exist_ok=True)
    process = mlflow_cli("run", url, *extra, "--env-manager", "local", "-P", "alpha=0.3", workdir=workdir)
    return PipelineRun(process=process, tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", workdir=workdir)


def test_run_from_a_git_url_records_the_commit_that_ran(tmp_path, git_server):
    url, _, head = git_server
    run = run_from_git(tmp_path, url)
    assert run.process.returncode == 0, explain(run)
    parent, children = run.parent(), run.children()
    assert set(children) == set(STEPS)
    for r in [parent, *children.values()]:
        assert r.data.tags["mlflow.source.git.commit"] == head
    # The default data path resolved inside the fetched project, not in the working directory.
    mlflow.set_tracking_uri(run.tracking_uri)
    manifest = mlflow.artifacts.load_dict(f"runs:/{children['ingest'].info.run_id}/data/manifest.json")
    assert manifest["source"] == "data/example_data.csv"
    assert not manifest["resolved_source"].startswith(str(tmp_path))
    champion = run.client.get_model_version_by_alias("diabetes-elasticnet", "champion")
    assert champion.tags["git.commit"] == head


def test_run_a_tag_from_a_git_url(tmp_path, git_server):
    url, tagged, _ = git_server
    run = run_from_git(tmp_path, url, "-v", TAG)
    assert run.process.returncode == 0, explain(run)
    assert run.parent().data.tags["mlflow.source.git.commit"] == tagged
    assert all(child.data.tags["mlflow.source.git.commit"] == tagged for child in run.children().values())
