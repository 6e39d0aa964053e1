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
    config = load_config()
    with mlflow.start_run() as parent:
        report = Trials(size=2, experiment_id=parent.info.experiment_id, metric=config.metric, parameters=["alpha", "l1_ratio"])
        with pytest.raises(StepFailedError, match=r"^trial 1: alpha=0.1 l1_ratio=0.5: train: boom$"):
            sweep.run_trial(StepRunner(parent, PROJECT_ROOT), config, None, report, {"alpha": 0.1, "l1_ratio": 0.5})
        assert mlflow.active_run().info.run_id == parent.info.run_id
    (trial,) = report.trials
    client = mlflow.MlflowClient()
    run = client.get_run(trial.run_id)
    assert (trial.status, run.info.status, run.data.tags["pipeline.kind"]) == ("FAILED", "FAILED", "trial")
    # What compare reads: the model (the swept values on top of the estimator's others), its name and gate metric.
    params = run.data.params
    assert (params["model.params.alpha"], params["model.params.l1_ratio"], params["model.params.max_iter"]) == ("0.1", "0.5", "5000")
    assert (params["model.task"], params["model.estimator"]) == ("regression", "sklearn.linear_model.ElasticNet")
    assert (params["evaluation.metric"], params["registry.model_name"], params["trial"]) == ("rmse", "diabetes-elasticnet", "1")
    assert "card.html" in [a.path for a in client.list_artifacts(trial.run_id)]
    card = mlflow.artifacts.load_text(f"runs:/{trial.run_id}/card.html")
    assert "Model: regression, sklearn.linear_model.ElasticNet (alpha=0.1, l1_ratio=0.5, max_iter=5000)" in card
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
