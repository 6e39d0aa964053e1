"""End to end: a champion whose files are gone, and a champion version deleted from the registry.

Two stores, each living through one history (every `mlflow run` builds on the one before):

Lost files: ``alpha=0.3`` becomes version 1, the champion; then the artifact store (``./mlruns``)
is deleted and ``mlflow.db`` kept. The next run trains again (the cached model has no files),
then stops with one line naming the champion's missing files and the fix, registering nothing;
so does ``use_cache=false``. The fix it names (rollback ``-P version=none``) is run as printed,
and the next run becomes champion.

Deleted champion: the default run is version 1, ``alpha=0.3`` version 2 (the champion); version 2
is deleted, which removes the alias. ``alpha=5`` (worse than version 1) is compared with version 1,
the newest surviving former champion, and rejected; rollback then makes version 1 champion again.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import PipelineRun, explain, mlflow_cli, run_pipeline

pytestmark = pytest.mark.e2e

MODEL = "diabetes-elasticnet"
LOST = f"error: main: the champion of '{MODEL}', version 1, has lost its files (no MLmodel at "
NO_ALIAS = "no champion alias; compared with version 1, the newest surviving former champion"


def _parent(run: PipelineRun):
    match = re.search(r"^Pipeline run ([0-9a-f]{32}) ", run.process.stdout, flags=re.MULTILINE)
    assert match, explain(run)
    return run.client.get_run(match.group(1))


def _steps(run: PipelineRun) -> dict:
    """This invocation's step runs by entry point."""
    parent = _parent(run)
    return {
        step: run.client.get_run(parent.data.tags[f"pipeline.{step}.run_id"])
        for step in ("ingest", "featurize", "train", "evaluate", "register")
        if f"pipeline.{step}.run_id" in parent.data.tags
    }


def _rollback(store: Path, *params: str) -> subprocess.CompletedProcess:
    args = ["run", str(PROJECT_ROOT), "-e", "rollback", "--env-manager", "local"]
    for param in params:
        args += ["-P", param]
    return mlflow_cli(*args, workdir=store)


@dataclass
class LostFiles:
    store: Path
    first: PipelineRun
    after_loss: PipelineRun
    without_cache: PipelineRun
    versions_before_fix: list[str]  # registered versions after the two failed runs
    fix: subprocess.CompletedProcess
    fix_command: str
    recovered: PipelineRun


@pytest.fixture(scope="module")
def lost_files(tmp_path_factory: pytest.TempPathFactory) -> LostFiles:
    store = tmp_path_factory.mktemp("lost-files")
    first = run_pipeline(store, "alpha=0.3")
    assert first.process.returncode == 0, explain(first)
    assert (store / "mlruns").is_dir() and (store / "mlflow.db").is_file()
    shutil.rmtree(store / "mlruns")
    after_loss = run_pipeline(store, "alpha=0.3")
    without_cache = run_pipeline(store, "alpha=0.3", "use_cache=false")
    versions = sorted(str(v.version) for v in first.client.search_model_versions(f"name = '{MODEL}'"))
    # The fix exactly as the error line prints it.
    match = re.search(r"mlflow run \. -e rollback((?: -P [^\s,]+)+)", after_loss.process.stderr)
    assert match, explain(after_loss)
    fix = _rollback(store, *re.findall(r"-P ([^\s,]+)", match.group(1)))
    assert fix.returncode == 0, fix.stderr[-3000:]
    recovered = run_pipeline(store, "alpha=0.3")
    return LostFiles(store, first, after_loss, without_cache, versions, fix, match.group(0), recovered)


def test_a_champion_without_its_files_stops_the_run_with_one_line_and_the_fix(lost_files):
    run = lost_files.after_loss
    assert run.process.returncode != 0
    errors = [line for line in run.process.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(LOST), explain(run)
    assert f"{lost_files.store / 'mlruns'}" in errors[0]
    assert errors[0].endswith("no earlier champion has its files: remove the alias with "
                              "mlflow run . -e rollback -P version=none, and the next good run becomes champion")  # fmt: skip
    assert "Traceback" not in run.process.stderr
    assert _parent(run).info.status == "FAILED"
    # The cached model has no files: train ran again (and said why), and evaluate never started.
    steps = _steps(run)
    first_train = _steps(lost_files.first)["train"].info.run_id
    assert steps["train"].info.run_id != first_train
    assert re.search(rf"^  train +[0-9a-f]{{32}} +FINISHED .*the outputs of run {first_train} are gone$", run.process.stdout, re.M)
    assert "evaluate" not in steps and "register" not in steps
    assert lost_files.versions_before_fix == ["1"]  # nothing registered by either failed run


def test_use_cache_false_gets_the_same_line(lost_files):
    run = lost_files.without_cache
    assert run.process.returncode != 0
    errors = [line for line in run.process.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(LOST), explain(run)
    assert "evaluate" not in _steps(run)


def test_the_advertised_fix_lets_the_next_good_run_become_champion(lost_files):
    assert lost_files.fix_command == "mlflow run . -e rollback -P version=none"
    run = lost_files.recovered
    assert run.process.returncode == 0, explain(run)
    client = MlflowClient(run.tracking_uri)
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"
    assert client.get_model_version(MODEL, "1").tags["champion.rolled_back.at"]
    assert f"Decision: promoted to champion\nChampion: {MODEL} version 2 (this run's model)" in run.process.stdout
    assert re.search(r"^  train +[0-9a-f]{32} +REUSED ", run.process.stdout, re.M)  # the model trained after the loss has its files


@dataclass
class DeletedChampion:
    store: Path
    worse: PipelineRun
    rollback: subprocess.CompletedProcess

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(f"sqlite:///{self.store / 'mlflow.db'}")


@pytest.fixture(scope="module")
def deleted_champion(tmp_path_factory: pytest.TempPathFactory) -> DeletedChampion:
    store = tmp_path_factory.mktemp("deleted-champion")
    for params in ((), ("alpha=0.3",)):
        run = run_pipeline(store, *params)
        assert run.process.returncode == 0, explain(run)
    client = run.client
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"
    client.delete_model_version(MODEL, "2")
    worse = run_pipeline(store, "alpha=5")
    assert worse.process.returncode == 0, explain(worse)
    rollback = _rollback(store, "reason=the champion was deleted")
    return DeletedChampion(store, worse, rollback)


def test_a_worse_candidate_is_rejected_against_the_newest_surviving_former_champion(deleted_champion):
    run = deleted_champion.worse
    out, err = run.process.stdout, run.process.stderr
    assert f"main WARNING {MODEL}: {NO_ALIAS}" in err
    assert re.search(rf"^Verdict: rejected: RMSE \S+ worse than champion version 1's \S+ on the same test split; {NO_ALIAS}$", out, re.M)
    version = deleted_champion.client.get_model_version(MODEL, "3")
    assert (version.tags["decision"], version.tags["evaluation.champion_version"]) == ("rejected", "1")
    assert NO_ALIAS in version.tags["decision.reason"]
    assert _steps(run)["evaluate"].data.tags["pipeline.evaluation.champion_version"] == "1"
    expected = "Champion: none (no champion alias; version 1, the newest surviving former champion: mlflow run . -e rollback restores it)"
    assert expected in out


def test_rollback_without_the_alias_makes_the_newest_surviving_former_champion_champion_again(deleted_champion):
    process = deleted_champion.rollback
    assert process.returncode == 0, process.stderr[-3000:]
    assert "no champion alias: making version 1, the newest surviving former champion, champion again" in process.stderr
    client = deleted_champion.client
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    assert (
        "rolled back from no champion alias to 1 (the champion was deleted)"
        in client.get_registered_model(MODEL).tags["champion.last_change"]
    )
