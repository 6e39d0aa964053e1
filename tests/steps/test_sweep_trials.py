"""A sweep's trials against a real (temporary) tracking store: a failed trial, the shared warm process."""

from __future__ import annotations

import os

import mlflow
import pytest

from steps import sweep
from steps.orchestration.config import load_config
from steps.orchestration.runner import StepFailedError, StepResult, StepRunner
from steps.runtime.launch import WARM_SOCKET_ENV
from steps.sweep import Trials
from tests.conftest import PROJECT_ROOT


def test_a_failed_trial_names_itself_ends_failed_with_a_card_and_leaves_the_parent_active(tracking_uri, monkeypatch):
    def failing_train(*args, **kwargs):
        raise StepFailedError(StepResult("train", None, "FAILED", 0.0, error="train: boom"))

    monkeypatch.setattr(sweep, "train_model", failing_train)
    with mlflow.start_run() as parent:
        report = Trials(size=2, experiment_id=parent.info.experiment_id)
        with pytest.raises(StepFailedError, match=r"^trial 1: alpha=0.1 l1_ratio=0.5: train: boom$"):
            sweep.run_trial(StepRunner(parent, PROJECT_ROOT), load_config(), None, report, {"alpha": 0.1, "l1_ratio": 0.5})
        assert mlflow.active_run().info.run_id == parent.info.run_id
    (trial,) = report.trials
    run = mlflow.MlflowClient().get_run(trial.run_id)
    assert (trial.status, run.info.status, run.data.tags["pipeline.kind"]) == ("FAILED", "FAILED", "trial")
    assert run.data.params["model.alpha"] == "0.1"
    assert "card.html" in [a.path for a in mlflow.MlflowClient().list_artifacts(trial.run_id)]
    assert not any(line.startswith("Best") for line in report.summary_lines())


def test_trial_chains_share_the_drivers_warm_process(tracking_uri, monkeypatch):
    monkeypatch.setenv(WARM_SOCKET_ENV, "unset")  # setenv first: delenv of an unset variable records nothing
    monkeypatch.delenv(WARM_SOCKET_ENV)
    with mlflow.start_run() as parent:
        runner = StepRunner(parent, PROJECT_ROOT)
        with mlflow.start_run(nested=True) as trial:
            first, second = runner.nested(trial), runner.nested(trial)
        assert runner._warm is not None and first._warm is None and second._warm is None
        assert os.environ[WARM_SOCKET_ENV] == runner._warm.environment_value
        runner.close()
    assert WARM_SOCKET_ENV not in os.environ
