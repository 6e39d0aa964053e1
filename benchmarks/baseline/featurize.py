"""featurize: fits the preprocessing on the train split.

Median imputation and scaling for the numeric columns, one-hot encoding for ``sex``. Logs the
fitted ColumnTransformer, saved with joblib, as ``transformer/preprocessor.joblib``.

    mlflow run benchmarks/baseline -e featurize --env-manager local -P train_data=<train.csv>
"""

from __future__ import annotations

import logging
import os
import tempfile

import click
import joblib
import mlflow
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

logger = logging.getLogger(__name__)

NUMERIC = ["age", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
CATEGORICAL = ["sex"]


def build_preprocessor() -> ColumnTransformer:
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    return ColumnTransformer(
        [("numeric", numeric, NUMERIC), ("categorical", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)],
    )


@click.command(help="Fits the preprocessing on the train split; logs transformer/preprocessor.joblib.")
@click.option("--train-data", required=True)
def featurize(train_data: str) -> None:
    with mlflow.start_run():
        train = pd.read_csv(train_data)
        transformer = build_preprocessor().fit(train[NUMERIC + CATEGORICAL])
        with tempfile.TemporaryDirectory() as tmpdir:
            path = os.path.join(tmpdir, "preprocessor.joblib")
            joblib.dump(transformer, path)
            mlflow.log_artifact(path, "transformer")
        logger.info("fitted the preprocessing on %d rows", len(train))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    featurize()
