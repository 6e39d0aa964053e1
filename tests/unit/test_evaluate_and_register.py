"""The evaluate and register cores, against a real (temporary) MLflow tracking store."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from steps import evaluate, featurize, register, train
from steps.config import EvaluationConfig
from steps.errors import InputError
from tests.conftest import make_frame

LENIENT = EvaluationConfig(min_r2=0.5, max_rmse=100.0)


def test_good_predictions_pass_and_metrics_come_from_mlflow_evaluate(tracking_uri, small_schema):
    test = make_frame(rows=30, missing=False)
    with mlflow.start_run() as run:
        out = evaluate.run(test, test["y"].to_numpy() + 1.0, small_schema, LENIENT)
    assert out.passed, out.reason
    assert out.metrics["root_mean_squared_error"] == pytest.approx(1.0)
    assert out.metrics["mean_absolute_error"] == pytest.approx(1.0)
    assert out.metrics["r2_score"] > 0.99
    assert set(out.figures) == {"plots/predicted_vs_actual.png", "plots/residuals.png"}
    logged = MlflowClient().get_run(run.info.run_id).data.metrics
    assert logged["root_mean_squared_error"] == pytest.approx(1.0)


def test_poor_predictions_fail_with_the_reason(tracking_uri, small_schema):
    test = make_frame(rows=30, missing=False)
    constant = np.full(len(test), test["y"].mean())
    with mlflow.start_run():
        out = evaluate.run(test, constant, small_schema, EvaluationConfig(min_r2=0.3, max_rmse=1.0))
    assert not out.passed
    assert "r2_score" in out.reason and "root_mean_squared_error" in out.reason
    assert "\n" not in out.reason


def test_unusable_predictions_are_errors(tracking_uri, small_schema):
    test = make_frame(rows=10, missing=False)
    with pytest.raises(InputError, match=r"returned 9 predictions for 10 test rows"):
        evaluate.run(test, np.zeros(9), small_schema, LENIENT)
    with pytest.raises(InputError, match=r"1 non-finite prediction"):
        evaluate.run(test, np.r_[np.zeros(9), np.nan], small_schema, LENIENT)


def _logged_model_uri(small_schema) -> str:
    frame = make_frame(rows=60)
    transformer = featurize.run(frame, small_schema).transformer
    model = train.run(frame, transformer, small_schema, train.TrainParams(alpha=0.1, l1_ratio=0.5, max_iter=5000)).model
    return mlflow.sklearn.log_model(
        model, name="model", serialization_format="skops", skops_trusted_types=featurize.SKOPS_TRUSTED_TYPES
    ).model_uri


def test_register_sets_champion_only_when_evaluation_passed(tracking_uri, small_schema):
    client = MlflowClient()
    with mlflow.start_run():
        model_uri = _logged_model_uri(small_schema)
    passed = register.run(client, model_uri, "unit-model", passed=True, tags={"data.digest": "abc"})
    failed = register.run(client, model_uri, "unit-model", passed=False, tags={"data.digest": "abc"})
    assert (passed.version, passed.alias) == ("1", "champion")
    assert (failed.version, failed.alias) == ("2", None)
    champion = client.get_model_version_by_alias("unit-model", "champion")
    assert str(champion.version) == "1"
    assert client.get_model_version("unit-model", "2").tags["data.digest"] == "abc"
    predictions = mlflow.pyfunc.load_model("models:/unit-model@champion").predict(make_frame(rows=5)[small_schema.features])
    assert np.isfinite(predictions).all()


def test_lineage_tags_link_run_data_code_and_verdict():
    tags = register.lineage_tags(
        {"mlflow.parentRunId": "parent123", "mlflow.source.git.commit": "deadbeef"},
        {"source": "data/example_data.csv", "digest": "d1g3st"},
        {"passed": True, "reason": "ok", "metrics": {"r2_score": 0.5, "root_mean_squared_error": 50.0, "max_error": 1.0}},
    )
    assert tags["pipeline.run_id"] == "parent123"
    assert tags["git.commit"] == "deadbeef"
    assert tags["data.digest"] == "d1g3st"
    assert tags["evaluation.passed"] == "true"
    assert tags["evaluation.r2_score"] == "0.5"
    assert "evaluation.max_error" not in tags
    standalone = register.lineage_tags({}, {}, {"passed": False})
    assert standalone["pipeline.run_id"].startswith("none")
    assert standalone["git.commit"].startswith("unknown")
