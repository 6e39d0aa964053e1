"""train: fits ElasticNet on the preprocessed train split and logs the model.

The logged model (artifact path ``model``) is a scikit-learn Pipeline of the fitted preprocessing
and the regressor, logged with ``mlflow.sklearn.log_model``'s defaults and an input example (plus
the one trusted type that MLflow's default format, skops, insists on).

    mlflow run benchmarks/baseline -e train --env-manager local -P train_data=<train.csv> -P transformer=<preprocessor.joblib>
"""

from __future__ import annotations

import logging

import click
import joblib
import mlflow
import pandas as pd
from sklearn.linear_model import ElasticNet
from sklearn.metrics import r2_score, root_mean_squared_error
from sklearn.pipeline import Pipeline

logger = logging.getLogger(__name__)

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


@click.command(help="Fits ElasticNet on the preprocessed train split; logs the model as `model`.")
@click.option("--train-data", required=True)
@click.option("--transformer", required=True)
@click.option("--alpha", default=0.3, type=float)
@click.option("--l1-ratio", default=0.5, type=float)
@click.option("--max-iter", default=5000, type=int)
def train(train_data: str, transformer: str, alpha: float, l1_ratio: float, max_iter: int) -> None:
    with mlflow.start_run():
        data = pd.read_csv(train_data)
        x, y = data[FEATURES], data["target"]
        preprocessor = joblib.load(transformer)
        regressor = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, max_iter=max_iter)
        regressor.fit(preprocessor.transform(x), y)
        model = Pipeline([("preprocess", preprocessor), ("regressor", regressor)])

        predictions = model.predict(x)
        mlflow.log_metrics({"train_rmse": root_mean_squared_error(y, predictions), "train_r2": r2_score(y, predictions)})
        # MLflow's default format (skops) refuses to save the fitted preprocessing unless its one
        # non-default type is trusted: the fix the error message asks for, nothing more.
        mlflow.sklearn.log_model(model, name="model", input_example=x.head(), skops_trusted_types=["numpy.dtype"])
        logger.info("trained on %d rows", len(data))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    train()
