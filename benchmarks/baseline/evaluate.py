"""evaluate: scores the model on the test split with ``mlflow.models.evaluate``.

Logs the default regressor evaluation and the metrics ``rmse`` and ``r2``.

    mlflow run benchmarks/baseline -e evaluate --env-manager local -P model_uri=runs:/<run id>/model -P test_data=<test.csv>
"""

from __future__ import annotations

import logging

import click
import mlflow
import pandas as pd

logger = logging.getLogger(__name__)


@click.command(help="Evaluates a model on the test split; logs rmse and r2.")
@click.option("--model-uri", required=True)
@click.option("--test-data", required=True)
def evaluate(model_uri: str, test_data: str) -> None:
    with mlflow.start_run():
        test = pd.read_csv(test_data)
        result = mlflow.models.evaluate(model_uri, test, targets="target", model_type="regressor", evaluators=["default"])
        rmse, r2 = result.metrics["root_mean_squared_error"], result.metrics["r2_score"]
        mlflow.log_metrics({"rmse": rmse, "r2": r2})
        logger.info("%s on %d test rows: RMSE %.2f, R² %.4f", model_uri, len(test), rmse, r2)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    evaluate()
