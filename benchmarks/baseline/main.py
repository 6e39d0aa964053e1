"""Chains ingest -> featurize -> train -> evaluate -> register, each step its own MLflow run.

Written the way MLflow's examples/multistep_workflow does it (without its run cache): one parent
run, each step launched synchronously with ``mlflow.run`` and handed the artifact URIs of the
previous steps' outputs. Run it with

    mlflow run benchmarks/baseline --env-manager local -P data_path=data/example_data.csv -P alpha=0.3
"""

from __future__ import annotations

import logging
import os
from typing import Any

import click
import mlflow
from mlflow.entities import Run

logger = logging.getLogger(__name__)


def _run(entry_point: str, parameters: dict[str, Any]) -> Run:
    logger.info("Launching new run for entry point %s and parameters %s", entry_point, parameters)
    submitted_run = mlflow.run(".", entry_point, parameters=parameters, env_manager="local")
    return mlflow.MlflowClient().get_run(submitted_run.run_id)


@click.command()
@click.option("--data-path", required=True, help="CSV file with the feature columns and `target`")
@click.option("--alpha", default=0.3, type=float)
@click.option("--l1-ratio", default=0.5, type=float)
@click.option("--model-name", default="baseline-elasticnet")
def workflow(data_path: str, alpha: float, l1_ratio: float, model_name: str) -> None:
    # The entry point names are defined in MLproject; each step's .py file documents its artifacts.
    with mlflow.start_run():
        ingest_run = _run("ingest", {"data_path": data_path})
        train_data = os.path.join(ingest_run.info.artifact_uri, "data", "train.csv")
        test_data = os.path.join(ingest_run.info.artifact_uri, "data", "test.csv")

        featurize_run = _run("featurize", {"train_data": train_data})
        transformer = os.path.join(featurize_run.info.artifact_uri, "transformer", "preprocessor.joblib")

        train_run = _run("train", {"train_data": train_data, "transformer": transformer, "alpha": alpha, "l1_ratio": l1_ratio})
        model_uri = f"runs:/{train_run.info.run_id}/model"

        evaluate_run = _run("evaluate", {"model_uri": model_uri, "test_data": test_data})
        metrics = evaluate_run.data.metrics
        mlflow.log_metrics({"rmse": metrics["rmse"], "r2": metrics["r2"]})

        _run("register", {"model_uri": model_uri, "model_name": model_name})
        logger.info("Done: RMSE %.2f, R² %.4f; %s registered as %s@champion", metrics["rmse"], metrics["r2"], model_uri, model_name)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    workflow()
