"""featurize: fit the preprocessing (imputation, scaling, one-hot encoding) on the train split.

Logs the fitted transformer as ``transformer/preprocessor.skops`` (skops: loading it never runs
arbitrary code) and the names of the features it produces.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import mlflow
import pandas as pd

from steps.core.features import FittedPreprocessing, fit_preprocessing, fitted_transformations, save_transformer, transformer_digest
from steps.core.progress import stage
from steps.core.schema import DataSchema
from steps.mlflow_io.artifacts import load_manifest, log_file, log_json, read_split
from steps.mlflow_io.cards import Card, log_card
from steps.mlflow_io.contracts import Artifact, LoggedArtifact, Tag
from steps.mlflow_io.step_run import record_outcome, require_inputs, run_step, step_parser

logger = logging.getLogger(__name__)


def run(train: pd.DataFrame, schema: DataSchema) -> FittedPreprocessing:
    """Fit the preprocessing on the train split only (no information leaks from test)."""
    return fit_preprocessing(train, schema)


def card(out: FittedPreprocessing, schema: DataSchema, train_rows: int) -> Card:
    """The fitted preprocessing: per input column, how missing values are filled and how it is scaled or encoded."""
    result = Card("featurize: fitted preprocessing", f"fitted on the train split only ({train_rows:,} rows), so nothing leaks from test")
    result.facts(
        {
            "input features": len(schema.features),
            "numeric (median-imputed, standardised)": len(schema.numeric_features),
            "categorical (most-frequent-imputed, one-hot)": len(schema.categorical_features),
            "output features": len(out.feature_names),
        }
    )
    columns = ["column", "missing values become", "minus (mean)", "divided by (std)", "outputs"]
    result.heading("Transformations").table(fitted_transformations(out.transformer), columns)
    result.text("Categories unseen in training encode as all zeros; the same fitted values are applied at serving time.", note=True)
    return result


# Artifact URIs this step reads, produced by upstream steps.
INPUTS = ("train_uri", "manifest_uri")


def build_parser() -> argparse.ArgumentParser:
    return step_parser("featurize", __doc__, INPUTS)


def main(argv: Sequence[str] | None = None) -> None:
    run_step("featurize", build_parser(), _featurize, argv)


def _featurize(args: argparse.Namespace) -> dict[str, LoggedArtifact]:
    train_uri, manifest_uri = require_inputs(args, INPUTS).values()
    manifest, schema = load_manifest(manifest_uri)
    mlflow.set_tag(Tag.TASK, manifest.target.task)
    with stage("read the train split", log=logger):
        train = read_split(train_uri, "train split", schema)
    out = run(train, schema)

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / Path(Artifact.TRANSFORMER).name
        save_transformer(out.transformer, local)
        transformer_file = log_file(local, Artifact.TRANSFORMER, digest=transformer_digest(out.transformer))
    log_json({"input_features": schema.features, "output_features": out.feature_names}, Artifact.FEATURES)
    mlflow.log_metrics({"input_features": len(schema.features), "output_features": len(out.feature_names)})
    log_card(lambda: card(out, schema, len(train)))
    record_outcome(f"{len(schema.features)} columns -> {len(out.feature_names)} features, fitted on {len(train):,} rows")
    return {"transformer_uri": transformer_file}


if __name__ == "__main__":
    main()
