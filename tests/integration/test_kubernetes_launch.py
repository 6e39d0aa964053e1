"""`mlflow run kubernetes --backend kubernetes` for real, against stand-in Docker and Kubernetes API
servers on 127.0.0.1: the image is pushed, the Job submitted, and the Job runs the pipeline."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import PROJECT_ROOT
from tests.unit.test_kubernetes_files import (
    FAKE_DIGEST,
    README_COMMAND,
    container,
    docker_image,
    dockerfile_env,
    job_template,
    lay_out_image,
)

FAKE_IMAGE_ID = "sha256:" + "1d" * 32
CLI_TIMEOUT_SECONDS = 300


class _JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    unexpected: list[str]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def not_found(self) -> None:
        self.body()
        self.unexpected.append(f"{self.command} {self.path}")
        self.reply(404, {"message": f"stand-in: unexpected {self.command} {self.path}"})


def docker_engine_handler(image: str, pushed: list[str], unexpected: list[str]) -> type[BaseHTTPRequestHandler]:
    """The Docker Engine API calls MLflow makes for a docker_env image it does not build.

    The image exists locally; pushing it to its registry succeeds with FAKE_DIGEST.
    """

    class Handler(_JsonHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/version":
                self.reply(200, {"ApiVersion": "1.45", "Version": "stand-in"})
            elif url.path.endswith("/images/json"):
                wanted = json.loads(parse_qs(url.query).get("filters", ["{}"])[0]).get("reference", [])
                self.reply(200, [{"Id": FAKE_IMAGE_ID, "RepoTags": [image]}] if image in wanted else [])
            elif (match := re.fullmatch(r"/v[\d.]+/images/(.+)/json", url.path)) and unquote(match[1]) in {image, FAKE_IMAGE_ID}:
                self.reply(200, {"Id": FAKE_IMAGE_ID, "RepoTags": [image]})
            elif (match := re.fullmatch(r"/v[\d.]+/distribution/(.+)/json", url.path)) and unquote(match[1]) == image:
                descriptor = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": FAKE_DIGEST, "size": 1234}
                self.reply(200, {"Descriptor": descriptor, "Platforms": [{"architecture": "amd64", "os": "linux"}]})
            else:
                self.not_found()

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            if match := re.fullmatch(r"/v[\d.]+/images/(.+)/push", url.path):
                self.body()
                tag = parse_qs(url.query)["tag"][0]
                pushed.append(f"{unquote(match[1])}:{tag}")
                self.reply(200, {"status": f"{tag}: digest: {FAKE_DIGEST} size: 1234"})
            else:
                self.not_found()

    Handler.unexpected = unexpected
    return Handler


def kubernetes_api_handler(run_pod: Callable[[dict], int], jobs: list[dict], unexpected: list[str]) -> type[BaseHTTPRequestHandler]:
    """Jobs created through the batch/v1 API run (``run_pod``) before the call returns; their status says how it ended."""
    outcomes: dict[str, int] = {}

    class Handler(_JsonHandler):
        def do_POST(self) -> None:
            match = re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs", urlsplit(self.path).path)
            if not match:
                self.not_found()
                return
            job = json.loads(self.body())
            jobs.append(job)
            outcomes[job["metadata"]["name"]] = run_pod(job)
            self.reply(201, {**job, "metadata": {**job["metadata"], "uid": "stand-in"}})

        def do_GET(self) -> None:
            match = re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs/([^/]+)/status", urlsplit(self.path).path)
            job = next((j for j in jobs if match and j["metadata"]["name"] == match[2]), None)
            if job is None:
                self.not_found()
                return
            succeeded = outcomes[job["metadata"]["name"]] == 0
            condition = {"type": "Complete" if succeeded else "Failed", "status": "True", "message": "stand-in pod exited"}
            status = {"startTime": "2025-01-01T00:00:00Z", "conditions": [condition], "succeeded" if succeeded else "failed": 1}
            self.reply(200, {**job, "status": status})

    Handler.unexpected = unexpected
    return Handler


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def pod_runner(image_dir: Path, home: Path, logs: list[subprocess.CompletedProcess]) -> Callable[[dict], int]:
    """Runs a Job's container as its pod would: its command and env plus the Dockerfile's ENV, no shell, in the WORKDIR."""

    def run_pod(job: dict) -> int:
        spec = container(job)
        env = {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            **dockerfile_env(),
            # Values only: the Secret is not there (optional), as with a server without auth.
            **{entry["name"]: entry["value"] for entry in spec["env"] if "value" in entry},
        }
        process = subprocess.run(
            spec["command"], cwd=image_dir, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_SECONDS, check=False
        )
        logs.append(process)
        return process.returncode

    return run_pod


def launcher_env(tmp_path: Path, tracking_uri: str, docker_port: int, kube_port: int) -> dict[str, str]:
    """The launching machine: a tracking URI, a kubeconfig, a Docker engine, and `docker info` that succeeds."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "stand-in", "cluster": {"server": f"http://127.0.0.1:{kube_port}"}}],
                "users": [{"name": "stand-in", "user": {"token": "stand-in-token"}}],
                "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "stand-in"}}],
                "current-context": "stand-in",
            }
        )
    )
    stub_bin = tmp_path / "bin"
    stub_bin.mkdir()
    docker_cli = stub_bin / "docker"  # MLflow only runs `docker info`, to see that an engine is there
    docker_cli.write_text('#!/bin/sh\n[ "$1" = info ] && exit 0\nexit 1\n')
    docker_cli.chmod(0o755)
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "KUBE", "DOCKER_")) and k.lower() not in proxies}
    return env | {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "KUBECONFIG": str(kubeconfig),
        "DOCKER_HOST": f"tcp://127.0.0.1:{docker_port}",
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
        "PATH": f"{stub_bin}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


@pytest.mark.e2e
def test_mlflow_run_kubernetes_pushes_the_image_submits_the_job_and_the_job_runs_the_pipeline(
    tmp_path: Path, mlflow_kubernetes: ModuleType
):
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = MlflowClient(tracking_uri).create_experiment("kubernetes", artifact_location=str(tmp_path / "artifacts"))
    image_dir = tmp_path / "image"  # the image's WORKDIR
    lay_out_image(image_dir)
    (tmp_path / "home").mkdir()
    # What MLflow would leave in the directory it runs in, were a store or artifacts to land there.
    strays = [PROJECT_ROOT / name for name in ("mlruns", "mlflow.db", "kubernetes/mlruns", "kubernetes/mlflow.db")]
    strays_before = [path for path in strays if path.exists()]
    pushed, jobs, pods, unexpected = [], [], [], []
    image = docker_image()
    with (
        serving(docker_engine_handler(image, pushed, unexpected)) as docker_port,
        serving(kubernetes_api_handler(pod_runner(image_dir, tmp_path / "home", pods), jobs, unexpected)) as kube_port,
    ):
        start = time.monotonic()
        process = subprocess.run(
            # The README's command, from the repository root; one step keeps it short.
            [sys.executable, "-m", *README_COMMAND, "--experiment-name", "kubernetes", "-P", "alpha=0.3", "-P", "steps=ingest"],
            cwd=PROJECT_ROOT,
            env=launcher_env(tmp_path, tracking_uri, docker_port, kube_port),
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_SECONDS,
            check=False,
        )
        elapsed = time.monotonic() - start
    pod_log = "\n".join(f"--- pod ---\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}" for p in pods)
    explain = f"exit {process.returncode}\n{process.stderr[-5000:]}\n{pod_log}\nunexpected: {unexpected}"
    assert process.returncode == 0, explain
    assert not unexpected
    assert [path for path in strays if path.exists()] == strays_before  # nothing written into the checkout

    # The launcher pushed the MLproject's image and submitted one Job that runs it by digest.
    assert pushed == [image]
    (job,) = jobs
    template = job_template()
    assert job["metadata"]["namespace"] == template["metadata"]["namespace"]
    assert job["spec"] == {**template["spec"], "template": job["spec"]["template"]}
    main = container(job)
    assert main["image"] == f"{image}@{FAKE_DIGEST}"
    assert main["command"][:4] == ["python", "-m", "steps", "main"]
    command = main["command"]
    assert {("--alpha", "0.3"), ("--steps", "ingest")} <= set(itertools.pairwise(command))
    client = MlflowClient(tracking_uri)
    (parent,) = client.search_runs([experiment_id], "tags.`mlflow.project.entryPoint` = 'main'")
    run_id = parent.info.run_id
    env = {entry["name"]: entry.get("value") for entry in main["env"]}
    assert env["MLFLOW_RUN_ID"] == run_id
    assert env["MLFLOW_TRACKING_URI"] == tracking_uri
    assert env["MLFLOW_EXPERIMENT_ID"] == experiment_id
    assert parent.data.tags["mlflow.project.backend"] == "kubernetes"
    assert parent.data.tags["mlflow.docker.image.uri"] == image
    assert parent.data.tags["mlflow.docker.image.id"] == FAKE_DIGEST

    # The pod ran the pipeline (the driver, and a step it launched from the root MLproject), and
    # `mlflow run` saw the Job complete.
    (pod,) = pods
    assert pod.returncode == 0, explain
    assert parent.info.status == "FINISHED"
    assert parent.data.params["alpha"] == "0.3"
    children = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}'")
    assert {(r.data.tags["mlflow.project.entryPoint"], r.info.status) for r in children} == {("ingest", "FINISHED")}
    # The launcher records the checkout's commit; the image has none (README: git.commit from a pod).
    assert "mlflow.source.git.commit" not in children[0].data.tags
    if (PROJECT_ROOT / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        assert parent.data.tags["mlflow.source.git.commit"] == head
    assert elapsed < 120, elapsed
