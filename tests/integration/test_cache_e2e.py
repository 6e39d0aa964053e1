"""Re-runs end to end: the step cache, resume after a failure, step subsets and the dry-run plan."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from steps.runtime.lock import lock_path, pipeline_lock
from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import STEPS, PipelineRun, explain, run_pipeline

pytestmark = pytest.mark.e2e


def cache_hits(run: PipelineRun, parent_id: str) -> dict[str, bool]:
    """``{step: reused?}`` from the tags of pipeline run ``parent_id``."""
    tags = run.client.get_run(parent_id).data.tags
    return {step: tags[f"pipeline.{step}.cache_hit"] == "true" for step in STEPS if f"pipeline.{step}.cache_hit" in tags}


def newest_parent(run: PipelineRun) -> str:
    parents = [r for r in run.runs() if r.data.tags.get("mlflow.project.entryPoint") == "main"]
    return max(parents, key=lambda r: r.info.start_time).info.run_id


def again(previous: PipelineRun, *params: str, project: Path = PROJECT_ROOT) -> tuple[PipelineRun, str]:
    """Run the pipeline again into the same store; return the run and its parent run id."""
    run = run_pipeline(previous.workdir, *params, tracking_uri=previous.tracking_uri, project=project)
    return run, newest_parent(run)


@pytest.fixture(scope="module")
def cold_run(tmp_path_factory) -> PipelineRun:
    """One cold pipeline run (`-P alpha=0.3`) that every test here starts from."""
    run = run_pipeline(tmp_path_factory.mktemp("cold"), "alpha=0.3")
    assert run.process.returncode == 0, explain(run)
    return run


@pytest.fixture
def first_run(cold_run, tmp_path) -> PipelineRun:
    """A private copy of the cold run's tracking store (its artifacts stay where they are)."""
    shutil.copy(cold_run.workdir / "mlflow.db", tmp_path / "mlflow.db")
    return PipelineRun(process=cold_run.process, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", workdir=tmp_path)


def test_the_same_command_twice_reuses_every_step_and_registers_nothing(first_run):
    first_parent = newest_parent(first_run)
    second, parent_id = again(first_run, "alpha=0.3")
    assert second.process.returncode == 0, explain(second)
    assert cache_hits(second, parent_id) == dict.fromkeys(STEPS, True)
    assert len(second.registered_versions()) == 1
    first_tags = second.client.get_run(first_parent).data.tags
    tags = second.client.get_run(parent_id).data.tags
    for step in STEPS:
        # The pipeline used the first run's step runs...
        assert tags[f"pipeline.{step}.run_id"] == first_tags[f"pipeline.{step}.run_id"]
    # ...and each reuse is visible as a child of the new parent, pointing at the run it reused.
    children = [r for r in second.runs() if r.data.tags.get("mlflow.parentRunId") == parent_id]
    assert sorted(r.data.tags["mlflow.project.entryPoint"] for r in children) == sorted(STEPS)
    for child in children:
        step = child.data.tags["mlflow.project.entryPoint"]
        assert child.info.status == "FINISHED"
        assert child.data.tags["pipeline.cache.reused_from"] == tags[f"pipeline.{step}.run_id"]
    assert "REUSED" in second.process.stdout
    assert (
        "Registered: nothing new; diabetes-elasticnet version 1 was registered by an identical run\n"
        "Decision (then): promoted to champion\n"
        "Champion: diabetes-elasticnet version 1 (this run's model)"
    ) in second.process.stdout


def test_a_new_alpha_reuses_ingest_and_featurize_only(first_run):
    second, parent_id = again(first_run, "alpha=0.5")
    assert second.process.returncode == 0, explain(second)
    assert cache_hits(second, parent_id) == {"ingest": True, "featurize": True, "train": False, "evaluate": False, "register": False}
    assert len(second.registered_versions()) == 2
    assert "params changed since run" in second.process.stdout


def test_use_cache_false_runs_everything(first_run):
    second, parent_id = again(first_run, "alpha=0.3", "use_cache=false")
    assert second.process.returncode == 0, explain(second)
    assert cache_hits(second, parent_id) == dict.fromkeys(STEPS, False)
    assert "use_cache=false" in second.process.stdout


def test_data_is_keyed_by_content_not_path(first_run, tmp_path):
    data = tmp_path / "data.csv"
    shutil.copy(PROJECT_ROOT / "data/example_data.csv", data)
    same_content, parent_id = again(first_run, "alpha=0.3", f"data_uri={data}")
    assert same_content.process.returncode == 0, explain(same_content)
    assert cache_hits(same_content, parent_id)["ingest"] is True  # another path, the same bytes

    frame = pd.read_csv(data)
    frame.iloc[:-20].to_csv(data, index=False)  # the same path, new content
    second, parent_id = again(first_run, "alpha=0.3", f"data_uri={data}")
    assert second.process.returncode == 0, explain(second)
    assert cache_hits(second, parent_id) == dict.fromkeys(STEPS, False)
    assert "inputs changed since run" in second.process.stdout


def copy_project(destination: Path) -> Path:
    ignore = shutil.ignore_patterns(".git", ".venv", "mlruns", "mlflow.db", "__pycache__", ".pytest_cache", ".ruff_cache")
    return Path(shutil.copytree(PROJECT_ROOT, destination, ignore=ignore))


def test_resume_after_a_failure_and_rerun_downstream_of_a_code_edit(tmp_path):
    project = copy_project(tmp_path / "project")
    train_py = project / "steps" / "train.py"
    original = train_py.read_text()
    first = run_pipeline(tmp_path / "store", "alpha=0.3", project=project)
    assert first.process.returncode == 0, explain(first)

    # A bug in train: the pipeline fails at train, after reusing ingest and featurize.
    train_py.write_text(
        original.replace(
            "    out = run(train, load_transformer", "    raise RuntimeError('simulated bug')\n    out = run(train, load_transformer"
        )
    )
    broken, parent_id = again(first, "alpha=0.7", project=project)
    assert broken.process.returncode != 0
    assert "error: step train failed: train: RuntimeError: simulated bug" in broken.process.stderr
    assert cache_hits(broken, parent_id) == {"ingest": True, "featurize": True, "train": False}

    # The fix (a different edit than the original code): train and everything after it run again.
    train_py.write_text(original + "\n# fixed\n")
    fixed, parent_id = again(first, "alpha=0.7", project=project)
    assert fixed.process.returncode == 0, explain(fixed)
    assert cache_hits(fixed, parent_id) == {"ingest": True, "featurize": True, "train": False, "evaluate": False, "register": False}
    assert "code and params changed since run" in fixed.process.stdout  # against the last FINISHED train


def test_a_step_subset_runs_only_those_steps(first_run):
    second, parent_id = again(first_run, "alpha=0.4", "steps=train,evaluate")
    assert second.process.returncode == 0, explain(second)
    assert cache_hits(second, parent_id) == {"ingest": True, "featurize": True, "train": False, "evaluate": False, "register": False}
    assert second.client.get_run(parent_id).data.tags["pipeline.register.status"] == "SKIPPED"
    assert len(second.registered_versions()) == 1


def test_a_step_subset_without_cached_upstream_says_what_to_run_first(tmp_path):
    run = run_pipeline(tmp_path, "steps=train")
    assert run.process.returncode != 0
    assert "error: step ingest failed: ingest: no reusable run matches this configuration" in run.process.stderr
    assert "run it first, e.g. -P steps=ingest,featurize,train" in run.process.stderr
    assert run.children() == {}


def test_dry_run_prints_the_plan_and_runs_nothing(first_run):
    runs_before = len(first_run.runs())
    second, _ = again(first_run, "alpha=0.5", "dry_run=true")
    assert second.process.returncode == 0, explain(second)
    out = second.process.stdout
    assert "dry run: nothing runs, nothing is registered" in out
    assert "ingest     reuse " in out and "featurize  reuse " in out
    assert "train      run" in out and "params changed since run" in out
    assert "evaluate   run" in out and "register   run" in out
    assert len(second.runs()) == runs_before + 1  # only the parent that `mlflow run` itself created
    assert len(second.registered_versions()) == 1


def scheduled_run(previous: PipelineRun, data: Path) -> tuple[subprocess.CompletedProcess, str]:
    """schedule/run-pipeline.sh, as cron or systemd start it, with the store in MLFLOW_TRACKING_URI."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": previous.tracking_uri}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    script = PROJECT_ROOT / "schedule" / "run-pipeline.sh"
    process = subprocess.run(
        [str(script), "-P", "alpha=0.3", "-P", f"data_uri={data}"],
        cwd=previous.workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return process, newest_parent(previous)


def test_scheduled_runs_retrain_only_when_the_data_changes(first_run, tmp_path):
    data = tmp_path / "latest.csv"
    shutil.copy(PROJECT_ROOT / "data/example_data.csv", data)
    process, parent_id = scheduled_run(first_run, data)
    assert process.returncode == 0, process.stderr[-3000:]
    assert cache_hits(first_run, parent_id) == dict.fromkeys(STEPS, True)
    assert len(first_run.registered_versions()) == 1

    fresh = pd.read_csv(data)
    fresh.iloc[:-30].to_csv(data, index=False)  # tonight's data
    process, parent_id = scheduled_run(first_run, data)
    assert process.returncode == 0, process.stderr[-3000:]
    assert cache_hits(first_run, parent_id) == dict.fromkeys(STEPS, False)
    assert len(first_run.registered_versions()) == 2


def test_an_overlapping_run_fails_or_waits_as_configured(first_run):
    path = lock_path(first_run.tracking_uri, "0", "diabetes-elasticnet")
    with pipeline_lock(path, "pipeline run held-by-test", "fail", 1):
        busy, parent_id = again(first_run, "alpha=0.3", "run.overlap=fail")
        assert busy.process.returncode != 0
        assert "error: main: another run of this pipeline is in progress (pipeline run held-by-test, pid" in busy.process.stderr
        assert busy.client.get_run(parent_id).info.status == "FAILED"
        assert cache_hits(busy, parent_id) == {}  # no step started

        waited, parent_id = again(first_run, "alpha=0.3", "run.max_wait_seconds=2")
        assert waited.process.returncode != 0
        assert "still runs after 2 s (run.max_wait_seconds)" in waited.process.stderr
    # Lock released: the default policy (wait) now proceeds at once.
    free, parent_id = again(first_run, "alpha=0.3")
    assert free.process.returncode == 0, explain(free)
    assert cache_hits(free, parent_id) == dict.fromkeys(STEPS, True)
