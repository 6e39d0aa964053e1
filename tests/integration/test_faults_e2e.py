"""Faults: a step killed mid-run, Ctrl-C and SIGTERM on `mlflow run`.

Each test starts the real `mlflow run` CLI, waits until the `train` step is running (watching the
tracking store), interrupts it, and checks that no run is left RUNNING, that the summary says
what the runs say, and that no process lingers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow
import pyarrow.csv
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run

from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import cli_env, explain, run_pipeline

pytestmark = pytest.mark.e2e

WAIT_SECONDS = 300


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One tracking store (MLflow's default, in this directory) for the module's pipelines.

    Created here, so the test's polling and `mlflow run` never both create its tables, with its
    artifacts beside it.
    """
    path = tmp_path_factory.mktemp("faults")
    with contextlib.chdir(path):  # the Default experiment's artifact root is ./mlruns of the creator
        MlflowClient(f"sqlite:///{path / 'mlflow.db'}").search_experiments()
    return path


@pytest.fixture(scope="module")
def slow_data(store) -> str:
    """The example data 5,000 times over (2.2 million rows): long enough a `train` step (several
    seconds) to be interrupted reliably while it works."""
    path = store / "example_x5000.csv"
    example = pd.read_csv(PROJECT_ROOT / "data" / "example_data.csv")
    pyarrow.csv.write_csv(pyarrow.Table.from_pandas(pd.concat([example] * 5000, ignore_index=True), preserve_index=False), path)
    return f"data_uri={path}"


@pytest.fixture(autouse=True)
def no_pipeline_left_behind(store) -> Iterator[None]:
    """A failed test must not leave its pipeline running into the next test's store."""
    yield
    for pid in _pipeline_processes(store):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def test_the_store_keeps_its_artifacts_beside_it(store):
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    assert client.get_experiment("0").artifact_location == str(store / "mlruns" / "0")


def _all_runs(store: Path) -> list[Run]:
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)


def _step_run(store: Path, step: str, after: int) -> Run | None:
    runs = [r for r in _all_runs(store) if r.data.tags.get("mlflow.project.entryPoint") == step and r.info.start_time >= after]
    return runs[0] if runs else None


def _pipeline_processes(store: Path) -> list[int]:
    """Processes (other than the test's) whose environment points at this store."""
    marker = f"sqlite:///{store / 'mlflow.db'}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue  # gone, or not ours
    return found


def _start(store: Path, *params: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "mlflow", "run", str(PROJECT_ROOT), "--env-manager", "local"]
    for param in params:
        args += ["-P", param]
    env = cli_env(f"sqlite:///{store / 'mlflow.db'}")
    # Its own session: a Ctrl-C can then be sent to its whole process group, as a terminal does.
    return subprocess.Popen(args, cwd=store, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for_running_step(store: Path, process: subprocess.Popen, step: str, after: int) -> Run:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        run = _step_run(store, step, after)
        if run is not None and run.info.status == "RUNNING" and _step_process(store, step):
            return run
        if process.poll() is not None:
            pytest.fail(f"the pipeline ended before {step} ran:\n{process.stdout.read()[-3000:]}\n{process.stderr.read()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"{step} did not start within {WAIT_SECONDS} s")


def _step_process(store: Path, step: str) -> int | None:
    """The process doing ``step``'s work: the child the pipeline's warm process forked for the
    step's launcher (``python -m steps <step> ...``); the warm process serves one step at
    a time, so while that launcher runs, the warm process's child is its step."""
    processes = {pid: _cmdline(pid) for pid in _pipeline_processes(store)}
    if not any(f"\0-m\0steps\0{step}\0".encode() in cmd for cmd in processes.values()):
        return None
    warm = {pid for pid, cmd in processes.items() if b"\0-m\0steps.runtime.warm\0" in cmd}  # the warm process and its child
    server = next((pid for pid in warm if _parent(pid) not in warm), None)
    return next((pid for pid in warm if _parent(pid) == server), None)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""  # gone


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _wait_until_gone(store: Path) -> None:
    deadline = time.monotonic() + 60
    while _pipeline_processes(store):
        if time.monotonic() > deadline:
            pytest.fail(f"processes still running: {_pipeline_processes(store)}")
        time.sleep(0.2)


def _statuses(store: Path, after: int) -> Iterator[tuple[str, str]]:
    for run in _all_runs(store):
        if run.info.start_time >= after:
            yield run.data.tags.get("mlflow.project.entryPoint", "?"), run.info.status


def _warm_token(store: Path, step: str) -> str:
    """The warm process's token, as ``step``'s launcher (``python -m steps <step>``) got it: in its environment."""
    for pid in _pipeline_processes(store):
        if f"\0-m\0steps\0{step}\0".encode() in _cmdline(pid):
            variables = dict(v.partition(b"=")[::2] for v in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if v)
            return variables[b"PIPELINE_WARM_SOCKET"].decode().partition("#")[2]
    pytest.fail(f"no launcher of {step} is running")


def _summary(store: Path, stdout: str, after: int) -> tuple[str, dict[str, list[str]]]:
    """The pipeline's summary (printed, and logged as summary.txt: the same): its first line, and
    each step's row as [run id, status, time, why]."""
    parent = next(r for r in _all_runs(store) if r.info.start_time >= after and r.data.tags.get("mlflow.project.entryPoint") == "main")
    logged = MlflowClient(f"sqlite:///{store / 'mlflow.db'}").download_artifacts(parent.info.run_id, "summary.txt", str(store))
    text = Path(logged).read_text()
    assert text.splitlines()[0] in stdout.splitlines(), stdout[-3000:]
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["step", "run"])
    rows = {}
    for line in lines[header + 1 :]:
        if not line.startswith("  "):
            break
        name, run_id, status, seconds, why = line.split(maxsplit=4)
        rows[name] = [run_id, status, seconds, why]
    return lines[0], rows


def test_a_step_killed_with_sigkill_ends_killed_fails_the_pipeline_run_and_the_next_run_resumes_from_the_cache(store, slow_data):
    started = int(time.time() * 1000)
    process = _start(store, "alpha=0.7", slow_data)
    _wait_for_running_step(store, process, "train", started)
    # The warm process serves the step (its child does the work) though its token is on no command line.
    token = _warm_token(store, "train")
    assert len(token) >= 32
    assert not [pid for pid in _pipeline_processes(store) if token.encode() in _cmdline(pid)]
    os.kill(_step_process(store, "train"), signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=WAIT_SECONDS)
    assert process.returncode == 1
    reason = "the step's process was killed (SIGKILL: kill -9, or the system ran out of memory)"
    assert f"error: step train failed: train: {reason}" in stderr, stderr[-3000:]
    # The step was killed; the pipeline run, which nobody stopped, failed because of it.
    statuses = dict(_statuses(store, started))
    assert statuses == {"main": "FAILED", "ingest": "FINISHED", "featurize": "FINISHED", "train": "KILLED"}, statuses
    first_line, rows = _summary(store, stdout, started)
    assert first_line.startswith("Pipeline run ") and first_line.split()[3] == "FAILED", first_line
    train = next(r for r in _all_runs(store) if r.info.start_time >= started and r.data.tags.get("mlflow.project.entryPoint") == "train")
    assert rows["train"][:2] == [train.info.run_id, "KILLED"], rows
    assert float(rows["train"][2].removesuffix("s")) > 0
    assert rows["train"][3] == reason
    assert (rows["ingest"][1], rows["featurize"][1]) == ("FINISHED", "FINISHED"), rows
    assert train.data.tags["pipeline.error"] == f"train: {reason}"
    assert train.data.tags["pipeline.exit_signal"] == "SIGKILL"
    _wait_until_gone(store)

    resumed = run_pipeline(store, "alpha=0.7", slow_data)
    assert resumed.process.returncode == 0, explain(resumed)
    parent = max((r for r in _all_runs(store) if r.data.tags.get("mlflow.project.entryPoint") == "main"), key=lambda r: r.info.start_time)
    assert parent.data.tags["pipeline.ingest.status"] == "REUSED"
    assert parent.data.tags["pipeline.featurize.status"] == "REUSED"
    assert parent.data.tags["pipeline.train.status"] == "FINISHED"


@pytest.mark.parametrize(
    ("how", "alpha"),
    [
        pytest.param("sigterm", "0.8", id="SIGTERM to mlflow run (a scheduler or kill)"),
        pytest.param("ctrl-c", "0.9", id="Ctrl-C (SIGINT to the process group)"),
    ],
)
def test_stopping_mlflow_run_stops_the_step_and_marks_the_runs_killed(store, slow_data, how, alpha):
    started = int(time.time() * 1000)
    process = _start(store, f"alpha={alpha}", slow_data)
    _wait_for_running_step(store, process, "train", started)
    if how == "sigterm":
        process.send_signal(signal.SIGTERM)
    else:
        os.killpg(process.pid, signal.SIGINT)
    stdout, _ = process.communicate(timeout=WAIT_SECONDS)
    assert process.returncode != 0
    _wait_until_gone(store)  # the step did not go on without the CLI
    statuses = dict(_statuses(store, started))
    assert statuses["main"] == "KILLED", statuses
    assert statuses["train"] == "KILLED", statuses
    assert "evaluate" not in statuses and "register" not in statuses, statuses
    parent = next(r for r in _all_runs(store) if r.info.start_time >= started and r.data.tags.get("mlflow.project.entryPoint") == "main")
    assert parent.data.tags["pipeline.error"].startswith("main: interrupted"), parent.data.tags["pipeline.error"]
    # The summary says what the runs say: the pipeline run KILLED, and the stopped step's row.
    first_line, rows = _summary(store, stdout, started)
    assert first_line.split()[3] == "KILLED", first_line
    assert rows["train"][1] == "KILLED", rows
    assert rows["train"][3].startswith("interrupted (stopped by SIG"), rows  # the step's reason or the driver's
    assert parent.data.tags["pipeline.train.status"] == "KILLED"


def test_an_unreachable_tracking_server_fails_within_seconds_with_bounded_retries(tmp_path, unused_port):
    """The README's advice for a manual `mlflow run`: bound MLflow's retries (run-pipeline.sh does)."""
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    start = time.monotonic()
    process = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(PROJECT_ROOT), "--env-manager", "local"],
        cwd=tmp_path,
        env=cli_env(f"http://127.0.0.1:{unused_port}", env),
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
        check=False,
    )
    assert process.returncode != 0
    assert time.monotonic() - start < 60  # MLflow's default retries take about four minutes
    last = process.stderr.strip().splitlines()[-1]
    assert f"http://127.0.0.1:{unused_port}" in last and "Connection refused" in last, last
