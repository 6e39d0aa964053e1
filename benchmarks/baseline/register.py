"""register: registers the model and points the alias ``champion`` at the new version.

Run it alone with

    mlflow run benchmarks/baseline -e register --env-manager local -P model_uri=runs:/<run id>/model
"""

from __future__ import annotations

import logging

import click
import mlflow
from mlflow import MlflowClient

logger = logging.getLogger(__name__)


@click.command(help="Registers the model under --model-name and sets the alias champion.")
@click.option("--model-uri", required=True)
@click.option("--model-name", default="baseline-elasticnet")
def register(model_uri: str, model_name: str) -> None:
    with mlflow.start_run():
        version = mlflow.register_model(model_uri, model_name)
        MlflowClient().set_registered_model_alias(model_name, "champion", version.version)
        logger.info("%s version %s is the champion", model_name, version.version)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    register()
