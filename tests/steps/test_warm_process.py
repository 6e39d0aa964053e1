"""The warm process: steps really run in it and give the outputs they give on their own; it declines
what it must (a wrong token, an environment other than the one it imported its libraries with);
PIPELINE_WARM=0 switches it off.

Which process did a step's work is read from /proc, with no change to the steps: the step reads
its schema from a link to its own /dev/stdin, a pipe only this test writes to. Until the test writes
the schema, the step waits in the process doing its work, which is then the one that holds that
pipe both as its stdin and as the file it opened: the warm process's child, or the launcher itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run

from steps.core.conf import PROJECT_ROOT
from steps.mlflow_io.contracts import Tag
from steps.mlflow_io.step_run import PARENT_RUN_ENV
from steps.orchestration.driver import EXPERIMENT_NAME_VARIABLE
from steps.runtime import launch
from steps.runtime.exits import SIGNAL_TAG
from steps.runtime.launch import WARM_SOCKET_ENV, WARM_SWITCH_ENV, WarmProcess, warm_enabled, warm_process
from steps.runtime.warm import RUN_TIME_VARIABLES, differing_variables

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; abstract Unix sockets")

SCHEMA = PROJECT_ROOT / "conf" / "schema.yaml"
INGEST = ("ingest", "--data_uri", "data/example_data.csv", "--test_size", "0.2", "--seed", "42")
WAIT_SECONDS = 60.0
# The environment of the warm process and of the launchers: this one without other tests' stores,
# runs, drivers and pytest's per-test variables; the project importable from any directory.
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PIPELINE_", "PYTEST_", "_MLFLOW_"))}
BASE_ENV["PYTHONPATH"] = str(PROJECT_ROOT)


@pytest.fixture(scope="module")
def warm() -> Iterator[WarmProcess]:
    """A warm process started with BASE_ENV, as a driver's starts with the driver's environment."""
    with pytest.MonkeyPatch.context() as patch:
        for name in set(os.environ) - set(BASE_ENV):
            patch.delenv(name)
        for name, value in BASE_ENV.items():
            patch.setenv(name, value)
        stack = contextlib.ExitStack()
        process = stack.enter_context(warm_process(PROJECT_ROOT))
    with stack:
        _wait_until_listening(process)
        yield process


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty tracking store, copied for each test: creating its tables costs seconds. (Its default
    experiment's artifacts would go where it was created: the tests use an experiment of their own.)"""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def _wait_until_listening(process: WarmProcess) -> None:
    address = process.environment_value.partition("#")[0]
    deadline = time.monotonic() + WAIT_SECONDS
    while address not in Path("/proc/net/unix").read_text():
        assert time.monotonic() < deadline, "the warm process did not listen"
        time.sleep(0.02)


def _env(store: Path, tmp_path: Path, warm_value: str | None, **changes: str) -> dict[str, str]:
    """A launcher's environment: BASE_ENV, a store of its own in ``tmp_path`` (with an experiment whose
    artifacts land there, as mlflow.run names one), the warm process's socket, ``changes``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    if not (tmp_path / "mlflow.db").exists():
        shutil.copyfile(store, tmp_path / "mlflow.db")
        MlflowClient(uri).create_experiment("warm", artifact_location=str(tmp_path / "artifacts"))
    experiment = MlflowClient(uri).get_experiment_by_name("warm").experiment_id
    env = {**BASE_ENV, "MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_ID": experiment}
    if warm_value is not None:
        env[WARM_SOCKET_ENV] = warm_value
    return env | changes


def _run(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``python -m steps <args>`` in ``tmp_path`` (where its artifacts land), to the end."""
    return subprocess.run(
        [sys.executable, "-m", "steps", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _runs(tmp_path: Path) -> list[Run]:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return client.search_runs([client.get_experiment_by_name("warm").experiment_id])


@dataclass
class Ingest:
    launcher: int  # the pid of `python -m steps ingest`
    worker: int  # the pid of the process that read the schema: did the step's work
    worker_parent: int
    launcher_has_pandas: bool  # whether the launcher has pandas loaded while the step works
    worker_has_pandas: bool
    returncode: int
    stderr: str
    run: Run


def _ingest_from_stdin(tmp_path: Path, env: dict[str, str]) -> Ingest:
    """Run ingest with its schema read from its stdin; see which process reads it, then give it the schema."""
    link = tmp_path / "schema.yaml"
    link.symlink_to("/dev/stdin")
    err = tmp_path / "stderr.txt"
    with err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "steps", *INGEST, "--schema", str(link)],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        worker = _reader(os.readlink(f"/proc/{process.pid}/fd/0"), process, err)
        seen = (worker, _parent(worker), _has_pandas(process.pid), _has_pandas(worker))
        process.stdin.write(SCHEMA.read_bytes())
        process.stdin.close()
        returncode = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    (run,) = _runs(tmp_path)
    return Ingest(process.pid, *seen, returncode=returncode, stderr=err.read_text(), run=run)


def _reader(pipe: str, launcher: subprocess.Popen, err: Path) -> int:
    """The process that holds ``pipe`` as its stdin and has also opened it (through the link)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        assert launcher.poll() is None, f"the launcher ended before reading the schema:\n{err.read_text()[-3000:]}"
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fds = {int(fd.name): os.readlink(fd) for fd in (entry / "fd").iterdir()}
            except OSError:
                continue  # gone, or changing its descriptors right now
            if fds.get(0) == pipe and any(fd > 2 and target == pipe for fd, target in fds.items()):
                return int(entry.name)
        time.sleep(0.02)
    pytest.fail("no process read the schema")


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _has_pandas(pid: int) -> bool:
    """Whether pandas' compiled modules are mapped into ``pid`` (it imported pandas)."""
    return "/pandas/" in Path(f"/proc/{pid}/maps").read_text()


def test_a_step_runs_in_a_child_of_the_warm_process_with_the_launchers_streams(warm, tmp_path, store):
    # As under mlflow.run: the shell's variables differ from the warm process's; they may.
    env = _env(store, tmp_path, warm.environment_value, PWD=str(tmp_path), SHLVL="1", _=sys.executable)
    done = _ingest_from_stdin(tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert done.worker_parent == warm.pid
    assert done.worker != done.launcher
    # The launcher never imported the step's libraries; the process that did the work has them.
    assert (done.launcher_has_pandas, done.worker_has_pandas) == (False, True)
    # It read the launcher's stdin (the schema came through it), wrote to its stderr, used its
    # environment (this test's store and experiment).
    assert done.run.info.status == "FINISHED"
    assert f"run {done.run.info.run_id} finished" in done.stderr
    assert "runs in its own process" not in done.stderr


def test_ingest_records_the_same_outputs_and_metrics_with_and_without_the_warm_process(warm, tmp_path, store):
    args = (*INGEST, "--schema", "conf/schema.yaml")
    warmed = _run(tmp_path / "warm", _env(store, tmp_path / "warm", warm.environment_value), *args)
    cold = _run(tmp_path / "cold", _env(store, tmp_path / "cold", warm.environment_value, PIPELINE_WARM="0"), *args)
    assert (warmed.returncode, cold.returncode) == (0, 0), warmed.stderr + cold.stderr
    (warm_run,), (cold_run,) = _runs(tmp_path / "warm"), _runs(tmp_path / "cold")

    def digests(run: Run) -> dict[str, str]:
        return {k: v for k, v in run.data.tags.items() if k.startswith(Tag.DIGEST)}

    def metrics(run: Run) -> dict[str, float]:
        # Not step_*: what the step's process cost (start-up, time, memory) is what the warm process changes.
        return {k: v for k, v in run.data.metrics.items() if not k.startswith("step_")}

    def source(run: Run) -> dict[str, str]:
        return {k: v for k, v in run.data.tags.items() if k.startswith("mlflow.source.")}

    assert set(digests(warm_run)) == {f"{Tag.DIGEST}{name}" for name in ("train_uri", "test_uri", "manifest_uri")}
    assert digests(warm_run) == digests(cold_run)
    assert metrics(warm_run) == metrics(cold_run)
    assert metrics(warm_run)["rows"] == 442
    assert source(warm_run) == source(cold_run)  # the program MLflow names the run's source after, its git commit
    # And the first was forked (no interpreter start-up, no imports), the second was not.
    warm_startup, cold_startup = warm_run.data.metrics["step_startup_seconds"], cold_run.data.metrics["step_startup_seconds"]
    assert warm_startup < cold_startup / 2, (warm_startup, cold_startup)


def test_a_step_whose_import_time_environment_differs_runs_in_its_own_process_and_says_why(warm, tmp_path, store):
    env = _env(store, tmp_path, warm.environment_value, OMP_NUM_THREADS="1", EXAMPLE_API_KEY="secret-value-4f1d")
    done = _ingest_from_stdin(tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert done.worker == done.launcher
    assert done.run.info.status == "FINISHED"
    said = [line for line in done.stderr.splitlines() if "runs in its own process" in line]
    assert said == ["ingest runs in its own process: the warm process was started with other values of EXAMPLE_API_KEY, OMP_NUM_THREADS"]
    assert "secret-value-4f1d" not in done.stderr


def test_only_the_run_time_variables_may_differ():
    started = {"HOME": "/home/a", "OMP_NUM_THREADS": "4", "MLFLOW_EXPERIMENT_NAME": "x", "PWD": "/a"}
    requested = {"HOME": "/home/a", "OMP_NUM_THREADS": "1", "MLFLOW_RUN_ID": "r1", "PWD": "/b", "LC_ALL": "C"}
    assert differing_variables(requested, started) == ["LC_ALL", "OMP_NUM_THREADS"]
    assert differing_variables(started, started) == []
    assert differing_variables({}, {"HOME": "/home/a"}) == ["HOME"]  # removed counts too
    # The driver's own names for what it sets and removes are in the list.
    assert {WARM_SOCKET_ENV, PARENT_RUN_ENV, EXPERIMENT_NAME_VARIABLE} <= RUN_TIME_VARIABLES


def test_what_mlflow_run_adds_to_a_steps_environment_may_differ(tracking_uri, tmp_path):
    """What ``mlflow.run(..., env_manager="local", synchronous=True)`` changes: only RUN_TIME_VARIABLES."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "dump.py").write_text("import json, os, sys\njson.dump(dict(os.environ), open(sys.argv[1], 'w'))\n")
    (project / "MLproject").write_text(
        f"name: env\nentry_points:\n  main:\n    command: {sys.executable} dump.py {tmp_path / 'env.json'}\n"
    )
    before = dict(os.environ)
    mlflow.run(str(project), env_manager="local", synchronous=True)
    after = json.loads((tmp_path / "env.json").read_text())
    changed = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
    assert {"MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"} <= changed
    assert changed <= RUN_TIME_VARIABLES, changed - RUN_TIME_VARIABLES


def test_the_token_is_not_on_the_warm_processs_command_line_nor_in_its_environment(warm):
    address, _, token = warm.environment_value.partition("#")
    command_line = Path(f"/proc/{warm.pid}/cmdline").read_bytes()
    assert address.encode() in command_line  # the right process
    assert token.encode() not in command_line
    assert token.encode() not in Path(f"/proc/{warm.pid}/environ").read_bytes()


def test_an_unreachable_warm_process_falls_back_to_the_launchers_process(tmp_path, store):
    done = _ingest_from_stdin(tmp_path, _env(store, tmp_path, "@no-such-pipeline-socket#x"))
    assert done.returncode == 0, done.stderr
    assert done.worker == done.launcher
    assert done.run.info.status == "FINISHED"


def test_a_request_with_a_wrong_token_is_refused_and_the_step_runs_in_its_own_process(warm, tmp_path, store):
    address = warm.environment_value.partition("#")[0]
    done = _ingest_from_stdin(tmp_path, _env(store, tmp_path, f"{address}#not-the-token"))
    assert done.returncode == 0, done.stderr
    assert done.worker == done.launcher
    assert done.run.info.status == "FINISHED"


def test_with_pipeline_warm_off_the_launcher_does_not_use_a_running_warm_process(warm, tmp_path, store):
    done = _ingest_from_stdin(tmp_path, _env(store, tmp_path, warm.environment_value, PIPELINE_WARM="Off"))
    assert done.returncode == 0, done.stderr
    assert done.worker == done.launcher
    assert done.run.info.status == "FINISHED"


@pytest.mark.parametrize(
    ("value", "enabled"),
    [(None, True), ("", True), ("1", True), ("yes", True), ("0", False), ("false", False), ("No", False), (" OFF ", False)],
)
def test_pipeline_warm_switch(monkeypatch, value, enabled):
    if value is None:
        monkeypatch.delenv(WARM_SWITCH_ENV, raising=False)
    else:
        monkeypatch.setenv(WARM_SWITCH_ENV, value)
    assert warm_enabled() is enabled


@pytest.mark.parametrize("value", ["0", "1"])
def test_a_driver_starts_a_warm_process_unless_pipeline_warm_is_off(monkeypatch, value):
    monkeypatch.setenv(WARM_SWITCH_ENV, value)
    monkeypatch.delenv(WARM_SOCKET_ENV, raising=False)
    seen = []
    monkeypatch.setitem(
        sys.modules, "fake_driver", types.SimpleNamespace(main=lambda args: seen.append(os.environ.get(WARM_SOCKET_ENV)) or 0)
    )
    assert launch.run_driver("fake_driver", []) == 0
    assert bool(seen[0]) is (value == "1")
    assert WARM_SOCKET_ENV not in os.environ
    # The chain starts its own (a driver not started by the launcher) the same way: off, it starts nothing.
    with warm_process(PROJECT_ROOT) as process:
        assert (process.pid is None, process.environment_value == "") == (value == "0", value == "0")


def test_a_failing_step_reports_and_exits_as_if_started_from_scratch(warm, tmp_path, store):
    warmed = _run(tmp_path, _env(store, tmp_path, warm.environment_value), "ingest", "--test_size=abc")
    cold = _run(tmp_path, _env(store, tmp_path, None), "ingest", "--test_size=abc")
    assert (warmed.returncode, cold.returncode) == (1, 1)
    line = "error: ingest: argument --test_size: invalid float value: 'abc'"
    assert [x for x in warmed.stderr.splitlines() if x.startswith("error:")] == [line], warmed.stderr
    assert [x for x in cold.stderr.splitlines() if x.startswith("error:")] == [line], cold.stderr
    assert sorted(r.info.status for r in _runs(tmp_path)) == ["FAILED", "FAILED"]


def test_the_launcher_names_the_steps_it_knows(tmp_path, store):
    done = _run(tmp_path, _env(store, tmp_path, None), "deploy")
    assert done.returncode == 2
    assert "usage: python -m steps <main|sweep|ingest|featurize|train|evaluate|register|rollback|predict|compare|schema>" in done.stderr


def test_variables_that_the_imports_set_themselves_do_not_differ():
    """MLflow sets KMP_DUPLICATE_LIB_OK and KMP_INIT_AT_FORK when imported: in the warm process and
    in the driver alike. Refusing every step for them would lose the warm process silently."""
    started = {"OMP_NUM_THREADS": "2"}
    after_imports = {**started, "KMP_DUPLICATE_LIB_OK": "True", "KMP_INIT_AT_FORK": "FALSE"}
    driver = dict(after_imports)
    assert differing_variables(driver, started, after_imports) == []
    assert differing_variables({**driver, "KMP_INIT_AT_FORK": "TRUE"}, started, after_imports) == ["KMP_INIT_AT_FORK"]
    assert differing_variables({**driver, "OMP_NUM_THREADS": "8"}, started, after_imports) == ["OMP_NUM_THREADS"]
    assert differing_variables({"KMP_DUPLICATE_LIB_OK": "True"}, started, after_imports) == ["OMP_NUM_THREADS"]  # removed


def test_a_step_killed_in_the_warm_process_has_its_run_say_so(warm, tmp_path, store):
    """The step cannot record its own SIGKILL; its launcher, told by the warm process, does."""
    link, err = tmp_path / "schema.yaml", tmp_path / "stderr.txt"
    link.symlink_to("/dev/stdin")
    env = _env(store, tmp_path, warm.environment_value)
    # The step's run made beforehand and named in its environment, as mlflow.run does.
    run_id = MlflowClient(env["MLFLOW_TRACKING_URI"]).create_run(env["MLFLOW_EXPERIMENT_ID"]).info.run_id
    with err.open("w") as stderr:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "steps", *INGEST, "--schema", str(link)],
            cwd=tmp_path,
            env={**env, "MLFLOW_RUN_ID": run_id},
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        worker = _reader(os.readlink(f"/proc/{launcher.pid}/fd/0"), launcher, err)  # waits for its schema
        assert _parent(worker) == warm.pid
        os.kill(worker, signal.SIGKILL)
        returncode = launcher.wait(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert returncode == 128 + signal.SIGKILL, err.read_text()
    (run,) = _runs(tmp_path)
    assert (run.info.run_id, run.info.status) == (run_id, "KILLED")
    assert run.data.tags["pipeline.error"] == "ingest: the step's process was killed (SIGKILL: kill -9, or the system ran out of memory)"
    assert run.data.tags[SIGNAL_TAG] == "SIGKILL"
