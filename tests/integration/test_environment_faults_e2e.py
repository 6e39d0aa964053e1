"""End to end: a failing environment (a full disk, a read-only artifact store) and extreme data.

Each case runs the real `mlflow run` CLI into one SQLite store, in an experiment of its own whose
artifact root is where the fault is:

- a full disk: a small tmpfs as the artifact root, which fills while ingest logs its splits;
- a read-only artifact store: a tmpfs remounted read-only (``chmod`` does not stop root);

and must end as a bad input does: exit non-zero with exactly one ``error: `` line naming the store
and the problem, no traceback, the parent run and the failed step FAILED, nothing registered.
Mounting needs root: without it (or where mounting is not allowed) those tests are skipped.

A regression target near 1e300 is no fault of the environment but of plotting and printing: the
pipeline must draw its cards and say the same numbers in the summary and the verdict.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import Run

from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import PipelineRun, explain, run_pipeline

pytestmark = pytest.mark.e2e

ERROR_PREFIX = "error: "
EXPERIMENT_VARIABLE = "MLFLOW_EXPERIMENT_NAME"
# Big enough for the parent run's first artifact (conf/resolved.yaml, one 4 KiB page), too small for ingest's train split.
FULL_DISK_SIZE = "96k"
# The example data this many times over: a train split of several hundred KiB in Parquet.
BIG_DATA_COPIES = 40


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of the tracking store (its database stays off every tmpfs)."""
    path = tmp_path_factory.mktemp("environment-faults")
    MlflowClient(_tracking_uri(path)).search_experiments()  # create the tables once, here
    return path


def _tracking_uri(store: Path) -> str:
    return f"sqlite:///{store / 'mlflow.db'}"


@pytest.fixture(scope="module")
def big_data(store: Path) -> str:
    path = store / "example_x40.csv"
    example = pd.read_csv(PROJECT_ROOT / "data" / "example_data.csv")
    pd.concat([example] * BIG_DATA_COPIES, ignore_index=True).to_csv(path, index=False)
    return str(path)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` for the block: a real disk that can fill, unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs (a real full or read-only disk) needs root")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("no mount and umount commands here")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(path)], check=False, capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], check=False, capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", str(path)], check=True)


def remount_read_only(path: Path) -> None:
    remounted = subprocess.run(["mount", "-o", "remount,ro", str(path)], check=False, capture_output=True, text=True)
    if remounted.returncode != 0:
        pytest.skip(f"cannot remount a tmpfs read-only here: {remounted.stderr.strip()}")
    with pytest.raises(OSError, match="Read-only file system"):
        (path / "probe").touch()  # as root too


def run_in_experiment(store: Path, name: str, artifact_root: Path | None, *params: str, env: dict[str, str] | None = None) -> PipelineRun:
    """The pipeline in a new experiment ``name`` whose artifacts go to ``artifact_root`` (else beside the store)."""
    client = MlflowClient(_tracking_uri(store))
    client.create_experiment(name, artifact_location=str(artifact_root or store / "artifacts" / name))
    return run_pipeline(store, *params, tracking_uri=_tracking_uri(store), env={EXPERIMENT_VARIABLE: name, **(env or {})})


def runs_of(run: PipelineRun, experiment: str) -> tuple[Run, dict[str, Run]]:
    """The one pipeline run in ``experiment`` and its step runs by entry point."""
    experiment_id = run.client.get_experiment_by_name(experiment).experiment_id
    runs = run.client.search_runs([experiment_id], max_results=100)
    (parent,) = [r for r in runs if r.data.tags.get("mlflow.project.entryPoint") == "main"]
    steps = {r.data.tags["mlflow.project.entryPoint"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    return parent, steps


def the_error_line(run: PipelineRun) -> str:
    """The one ``error:`` line of a failed run, after checking it failed cleanly."""
    stderr = run.process.stderr
    assert run.process.returncode != 0, explain(run)
    assert "Traceback (most recent call last)" not in stderr, explain(run)
    errors = [line for line in stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(errors) == 1, explain(run)
    return errors[0]


def assert_failed_and_registered_nothing(run: PipelineRun, experiment: str, line: str, failed_step: str | None) -> None:
    parent, steps = runs_of(run, experiment)
    assert parent.info.status == "FAILED"
    assert parent.data.tags["pipeline.error"] == line.removeprefix(ERROR_PREFIX)
    if failed_step is None:
        assert steps == {}, "the driver's failure must stop the pipeline before any step runs"
    else:
        assert {name: step.info.status for name, step in steps.items()} == {failed_step: "FAILED"}
        assert line == f"{ERROR_PREFIX}step {failed_step} failed: {steps[failed_step].data.tags['pipeline.error']}"
    assert run.client.search_registered_models() == []


@pytest.mark.parametrize(
    "temporary_files_too",
    [pytest.param(False, id="artifact root on the full disk"), pytest.param(True, id="temporary files on the full disk too")],
)
def test_a_disk_that_fills_during_a_step_fails_it_with_one_line_naming_the_store(store, big_data, tmp_path, temporary_files_too):
    experiment = f"full-disk-{'all' if temporary_files_too else 'artifacts'}"
    with tmpfs(tmp_path / "full", FULL_DISK_SIZE) as disk:
        env = {}
        if temporary_files_too:
            (disk / "tmp").mkdir()
            env["TMPDIR"] = str(disk / "tmp")
        run = run_in_experiment(store, experiment, disk / "artifacts", f"data_uri={big_data}", env=env)
    line = the_error_line(run)
    _, steps = runs_of(run, experiment)
    store_uri = steps["ingest"].info.artifact_uri
    assert line.startswith(f"{ERROR_PREFIX}step ingest failed: ingest: no space left on device writing the artifact store {store_uri}"), (
        line
    )
    if temporary_files_too:
        assert line.endswith(store_uri), "the temporary files are on the same disk: the store is the one to name"
    assert_failed_and_registered_nothing(run, experiment, line, failed_step="ingest")


def test_a_read_only_artifact_store_fails_the_driver_with_one_line_naming_it(store, tmp_path):
    experiment = "read-only-store"
    with tmpfs(tmp_path / "read-only", "1m") as disk:
        remount_read_only(disk)
        run = run_in_experiment(store, experiment, disk)
    line = the_error_line(run)
    parent, _ = runs_of(run, experiment)
    assert line == f"{ERROR_PREFIX}main: read-only file system: cannot write {disk / parent.info.run_id}", line
    assert_failed_and_registered_nothing(run, experiment, line, failed_step=None)


def test_targets_near_1e300_get_their_plots_and_the_same_numbers_in_the_summary_and_the_verdict(store, tmp_path):
    """A constant model of a target near 1e300: residuals too close together for numpy's equal bins
    (evaluate's histogram used to raise), an RMSE that overflows to inf (which the store keeps as
    the largest float: the summary used to say 1.798e+308 where the verdict said inf)."""
    example = pd.read_csv(PROJECT_ROOT / "data" / "example_data.csv")
    data = example.assign(target=1e300 * (1 + example["target"] * 1e-13))
    data.to_csv(tmp_path / "huge.csv", index=False)
    schema = yaml.safe_load((PROJECT_ROOT / "conf" / "schema.yaml").read_text())
    schema["columns"]["target"] = {"dtype": "float", "nullable": False}
    schema.pop("thresholds")
    (tmp_path / "huge.schema.yaml").write_text(yaml.safe_dump(schema))
    experiment = "targets-near-1e300"
    run = run_in_experiment(
        store,
        experiment,
        None,
        f"data_uri={tmp_path / 'huge.csv'}",
        f"schema={tmp_path / 'huge.schema.yaml'}",
        "model.estimator=sklearn.dummy.DummyRegressor",
        "model.params.strategy=constant",
        "model.params.constant=0",
        "model_name=targets-near-1e300",
    )
    assert run.process.returncode == 0, explain(run)  # rejected (a constant model), which fails no run
    assert "Traceback" not in run.process.stderr and "no card.html" not in run.process.stderr, explain(run)
    parent, steps = runs_of(run, experiment)
    assert {name: step.info.status for name, step in steps.items()} == dict.fromkeys(
        ("ingest", "featurize", "train", "evaluate", "register"), "FINISHED"
    )
    evaluate = steps["evaluate"]
    assert evaluate.data.metrics["root_mean_squared_error"] == np.finfo("float64").max  # how the store keeps inf
    artifacts = {a.path for a in run.client.list_artifacts(evaluate.info.run_id, "plots")}
    assert {"plots/predicted_vs_actual.png", "plots/residuals.png"} <= artifacts
    for step in ("ingest", "evaluate"):
        assert "<img" in run.artifact_text(steps[step].info.run_id, "card.html"), step

    summary = run.process.stdout
    evaluation = next(line for line in summary.splitlines() if line.startswith("Evaluation (test split): "))
    verdict = next(line for line in summary.splitlines() if line.startswith("Verdict: "))
    assert evaluation.startswith("Evaluation (test split): RMSE inf, "), evaluation
    assert "RMSE inf misses NaN" in verdict and "R² NaN" in evaluation, (evaluation, verdict)
    assert "1.798e+308" not in summary
    card = run.artifact_text(parent.info.run_id, "card.html")
    assert "RMSE inf" in card and "1.798e+308" not in card
