"""predict: score a dataset with a registered model (default: the champion); log the predictions.

``mlflow run . -e predict -P data_uri=new_rows.csv`` reads the rows (any URI ingest accepts),
checks them against the same schema as ingest (the target column may be absent), scores them
with ``models:/<model_name>@champion`` or ``-P model_uri``, and logs
``predictions/predictions.parquet``: the input columns (including ones the schema does not know,
such as IDs) plus a ``prediction`` column. The run is linked to the model it used (tags and an
MLflow model input), so the scores can be traced to a model version.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import LoggedModelInput

from steps.artifacts import LoggedArtifact, load_model, log_table, read_table, resolve_data_uri, to_dataset
from steps.cli import run_step, step_parser
from steps.config import RegistryConfig
from steps.errors import InputError
from steps.registry import CHAMPION, RegisteredModel, resolve
from steps.schema import PREDICTION_COLUMN, DataSchema, load_schema, validate_frame

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions/predictions.parquet"


@dataclass(frozen=True)
class PredictOutputs:
    predictions: pd.DataFrame


def run(raw: pd.DataFrame, model: mlflow.pyfunc.PyFuncModel, schema: DataSchema, source: str) -> PredictOutputs:
    """Validate ``raw`` (read from ``source``) and score it; keep every input column."""
    if PREDICTION_COLUMN in raw.columns:
        raise InputError(f"{source}: has a column named {PREDICTION_COLUMN!r}, which predict writes; rename it")
    rows = validate_frame(raw, schema, source, require_target=False)
    predicted = np.asarray(model.predict(rows[schema.features]), dtype="float64").reshape(-1)
    if len(predicted) != len(rows):
        raise InputError(f"the model returned {len(predicted)} predictions for {len(rows)} rows of {source}")
    # The schema's columns typed as validated; any other column (e.g. an ID) passed through as read.
    passthrough = raw.reset_index(drop=True)
    output = pd.DataFrame({str(c): rows[str(c)] if str(c) in rows else passthrough[c] for c in raw.columns})
    output[PREDICTION_COLUMN] = predicted
    return PredictOutputs(predictions=output)


def build_parser() -> argparse.ArgumentParser:
    parser = step_parser("predict", __doc__, inputs=())
    parser.add_argument("--data_uri", type=str, default="", help="CSV or Parquet rows to score: path, file://, http(s)://, artifact URI")
    parser.add_argument("--model_uri", type=str, default="", help="the model to use; empty: models:/<model_name>@champion")
    parser.add_argument("--model_name", type=str, required=True, help="registered model whose champion scores when no model_uri")
    parser.add_argument("--schema", type=str, required=True, help="schema YAML the rows must satisfy (the target may be absent)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    run_step("predict", build_parser(), _predict, argv)


def model_to_use(client: MlflowClient, model_uri: str, model_name: str) -> tuple[str, RegisteredModel | None]:
    """The immutable URI to load (an alias resolved to its version now) and the registered version."""
    uri = model_uri or f"models:/{RegistryConfig(model_name=model_name).model_name}@{CHAMPION}"
    if not uri.startswith("models:/") or uri.startswith("models:/m-"):
        return uri, None  # a run artifact or a logged model that is not (necessarily) registered
    registered = resolve(client, uri, "model_uri")
    if registered is None:
        raise InputError(f"model {uri}: the alias points at no version yet; run the pipeline first or pass -P model_uri")
    return registered.uri, registered


def _predict(args: argparse.Namespace) -> dict[str, LoggedArtifact]:
    if not args.data_uri.strip():
        raise InputError("missing data_uri: pass the rows to score, e.g. -P data_uri=data/new_rows.csv")
    schema = load_schema(args.schema)
    client = MlflowClient()
    uri, registered = model_to_use(client, args.model_uri.strip(), args.model_name)
    model = load_model(uri)
    location = resolve_data_uri(args.data_uri)
    raw = read_table(location, what="dataset", text_columns=schema.text_columns)
    out = run(raw, model, schema, source=args.data_uri)

    predictions = log_table(out.predictions, PREDICTIONS_FILE)
    dataset = to_dataset(out.predictions.drop(columns=PREDICTION_COLUMN), name="scored", source=location, target=None)
    linked = LoggedModelInput(model.metadata.model_id) if model.metadata.model_id else None
    mlflow.log_input(dataset, context="prediction", model=linked)
    mlflow.log_metric("rows", len(out.predictions))
    tags = {"pipeline.model_uri": uri, "pipeline.model_id": model.metadata.model_id or "unknown"}
    if registered:
        tags |= {"pipeline.model_name": registered.name, "pipeline.model_version": registered.version}
    mlflow.set_tags(tags)
    logger.info("scored %d rows of %s with %s", len(out.predictions), args.data_uri, uri)
    return {"predictions_uri": predictions}


if __name__ == "__main__":
    main()
