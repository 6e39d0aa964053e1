"""ingest: reads the CSV, checks it, and splits it 80/20 into train and test.

Logs the splits as the artifacts ``data/train.csv`` and ``data/test.csv``.

    mlflow run benchmarks/baseline -e ingest --env-manager local -P data_path=data/example_data.csv
"""

from __future__ import annotations

import logging
import os
import tempfile

import click
import mlflow
import pandas as pd
from sklearn.model_selection import train_test_split

logger = logging.getLogger(__name__)

COLUMNS = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6", "target"]


def validate(data: pd.DataFrame) -> None:
    """Required columns present and numeric, no missing target."""
    missing = [c for c in COLUMNS if c not in data.columns]
    if missing:
        raise ValueError(f"missing columns: {missing}")
    non_numeric = [c for c in COLUMNS if not pd.api.types.is_numeric_dtype(data[c])]
    if non_numeric:
        raise ValueError(f"non-numeric columns: {non_numeric}")
    if data["target"].isna().any():
        raise ValueError("the target has missing values")


@click.command(help="Splits a CSV file into the artifacts data/train.csv and data/test.csv.")
@click.option("--data-path", required=True)
@click.option("--test-size", default=0.2, type=float)
@click.option("--seed", default=42, type=int)
def ingest(data_path: str, test_size: float, seed: int) -> None:
    with mlflow.start_run():
        data = pd.read_csv(data_path)
        validate(data)
        train, test = train_test_split(data[COLUMNS], test_size=test_size, random_state=seed)
        with tempfile.TemporaryDirectory() as tmpdir:
            train.to_csv(os.path.join(tmpdir, "train.csv"), index=False)
            test.to_csv(os.path.join(tmpdir, "test.csv"), index=False)
            mlflow.log_artifacts(tmpdir, "data")
        mlflow.log_metrics({"rows": len(data), "train_rows": len(train), "test_rows": len(test)})
        logger.info("%s: %d rows; train %d, test %d", data_path, len(data), len(train), len(test))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ingest()
