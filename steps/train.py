"""train: fit the configured estimator on the preprocessed train split and log ONE servable model.

The estimator comes from the ``model`` section of conf/pipeline.yaml (steps/core/model.py builds
it; ElasticNet by default). The logged MLflow model is a scikit-learn Pipeline (featurize's
fitted preprocessing + the estimator), saved with skops, with a signature and an input example,
so it takes raw feature columns. Its pip requirements come from requirements.txt (no dependency
inference).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from steps.core import labels, model, tasks
from steps.core.conf import PROJECT_ROOT
from steps.core.errors import InputError
from steps.core.features import load_transformer_file, transform_for_fit
from steps.core.model import EstimatorSpec, ModelDescription, ModelSettings
from steps.core.progress import stage
from steps.core.schema import DataSchema
from steps.mlflow_io.artifacts import fetch, load_manifest, log_json, read_split
from steps.mlflow_io.cards import Card, bar_figure, log_card
from steps.mlflow_io.contracts import Artifact, ModelMetadata, Tag
from steps.mlflow_io.step_run import add_settings, record_outcome, require_inputs, run_step, settings, step_parser

logger = logging.getLogger(__name__)

INPUT_EXAMPLE_ROWS = 5
# Weights drawn and listed in the card, at most (the largest; all are in train/coefficients.json).
CARD_WEIGHTS = 40
# Rows the model signature is inferred from (types, not statistics: a sample is enough).
SIGNATURE_ROWS = 1000


@dataclass(frozen=True)
class TrainOutputs:
    model: Pipeline
    description: ModelDescription
    metrics: dict[str, float]


def run(train: pd.DataFrame, transformer: ColumnTransformer, schema: DataSchema, spec: EstimatorSpec) -> TrainOutputs:
    """Fit the estimator on already-fitted preprocessing and join both into one Pipeline.

    A classifier learns the target's labels as they are (``1``, ``"benign"``, ``True``): the
    logged model then predicts those labels, also when served.
    """
    features, target = train[schema.features], train[schema.target]
    if spec.task.classification:
        target = tasks.labels(target)
    transformed = transform_for_fit(transformer, features)
    # ``transformed`` is this function's own copy: the estimator may work on it in place.
    built = model.build(spec, overwrite_input=True)
    estimator = model.fit(labels.wrap(built) if spec.task.classification else built, transformed, target)
    del transformed
    # Both parts are fitted: the pipeline is built, not re-fitted, so featurize's fit is kept.
    fitted = Pipeline([("preprocess", transformer), (spec.task.model_type, estimator)])
    predictions = model.predict_in_chunks(fitted, features)
    description = model.describe(labels.unwrap(estimator), [str(n) for n in transformer.get_feature_names_out()])
    return TrainOutputs(fitted, description, model.train_metrics(spec.task, target, predictions) | description.metrics)


def card(out: TrainOutputs, spec: EstimatorSpec, train_rows: int, model_uri: str) -> Card:
    """The fitted model: its parameters, training fit, and its coefficients or importances."""
    described = out.description
    result = Card(f"train: {spec.name}", f"{spec.task.name}: fitted on {train_rows:,} training rows; logged as {model_uri}")
    fit = {
        f"{name.removeprefix('train_').replace('_', ' ')} (train)": value
        for name, value in out.metrics.items()
        if name.startswith("train_")
    }
    result.facts({"task": spec.task.name, "estimator": spec.path, **spec.params, **described.facts, **fit})
    ranked = sorted(described.weights.items(), key=lambda item: -abs(item[1]))
    shown = ranked[:CARD_WEIGHTS]
    more = f" The {len(shown)} largest of {len(ranked)} are shown; all are in {Artifact.WEIGHTS}." if len(shown) < len(ranked) else ""
    if described.class_weights:
        result.heading("Coefficients per class")
        result.text("One coefficient per feature and class, on standardised numeric features; the largest by size first.", note=True)
        names = sorted(
            next(iter(described.class_weights.values())), key=lambda n: -max(abs(w[n]) for w in described.class_weights.values())
        )
        result.table([{"feature": n, **{c: w[n] for c, w in described.class_weights.items()}} for n in names[:CARD_WEIGHTS]])
        return result
    if described.weight_kind == "coefficient":
        result.heading("Coefficients")
        intercept = f"Intercept {described.intercept:.4g}; " if described.intercept is not None else ""
        result.text(
            "Numeric features are standardised before the estimator, so their coefficient is the change in the prediction per "
            "standard deviation; a one-hot column's is the change when the row has that category. "
            f"{intercept}zero: dropped by the penalty (if any).{more}",
            note=True,
        )
    elif described.weight_kind == "importance":
        result.heading("Feature importances")
        result.text(f"How much each (preprocessed) feature contributes to the fitted model's splits.{more}", note=True)
    else:
        result.text(f"{described.estimator} has neither coefficients nor feature importances to show.", note=True)
        return result
    kind = described.weight_kind
    result.figure(bar_figure([n for n, _ in shown], [v for _, v in shown], f"{kind.capitalize()}s by size", kind), f"{kind.capitalize()}s")
    result.table([{"feature": name, kind: value} for name, value in shown])
    return result


def load_transformer(uri: str) -> ColumnTransformer:
    """The preprocessing featurize logged at ``uri``, refusing types skops does not trust."""
    with tempfile.TemporaryDirectory() as tmp:
        path = fetch(uri, tmp, what="transformer")
        try:
            return load_transformer_file(path)
        except ValueError as exc:
            raise InputError(f"transformer {uri}: {exc}") from None
        except Exception as exc:
            raise InputError(f"transformer {uri}: not a transformer saved by featurize ({type(exc).__name__}: {exc})") from None


# Artifact URIs this step reads, produced by upstream steps.
INPUTS = ("train_uri", "transformer_uri", "manifest_uri")


def build_parser() -> argparse.ArgumentParser:
    parser = step_parser("train", __doc__, INPUTS)
    add_settings(parser, "model", model=ModelSettings)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    run_step("train", build_parser(), _train, argv)


def _train(args: argparse.Namespace) -> dict[str, str]:
    train_uri, transformer_uri, manifest_uri = require_inputs(args, INPUTS).values()
    manifest, schema = load_manifest(manifest_uri)
    spec = settings(args, ModelSettings, "model").resolve(tasks.TASKS[manifest.target.task])
    mlflow.set_tags({Tag.TASK: spec.task.name, Tag.ESTIMATOR: spec.path})
    with stage("read the train split", log=logger):
        train = read_split(train_uri, "train split", schema)
    out = run(train, load_transformer(transformer_uri), schema, spec)

    sample = train[schema.features].head(SIGNATURE_ROWS)
    model_info = mlflow.sklearn.log_model(
        out.model,
        name="model",
        serialization_format="skops",
        skops_trusted_types=model.skops_types(out.model),
        signature=infer_signature(sample, out.model.predict(sample)),
        input_example=sample.head(INPUT_EXAMPLE_ROWS),
        pip_requirements=model.requirements() + model.estimator_requirements(spec),
        # The label wrapper is this project's class: the model carries the code that defines it.
        code_paths=[str(PROJECT_ROOT / "steps")] if isinstance(out.model[-1], labels.LabelEncodedClassifier) else None,
        params={"task": spec.task.name, "estimator": spec.path, **spec.params},
        # The task, its classes and the data schema (as in conf/schema.yaml): predict checks rows against it.
        metadata={
            ModelMetadata.TRAIN_DATA_DIGEST: manifest.splits["train"].digest,
            ModelMetadata.DATA_DIGEST: manifest.digest,
            ModelMetadata.TASK: spec.task.name,
            ModelMetadata.CLASSES: manifest.target.classes,
            ModelMetadata.SCHEMA: schema.to_dict(),
        },
    )
    mlflow.log_metrics(out.metrics)
    if out.description.weights:
        intercept = {} if out.description.intercept is None else {"intercept": out.description.intercept}
        log_json(intercept | out.description.weights, Artifact.WEIGHTS)
    log_card(lambda: card(out, spec, len(train), model_info.model_uri))
    record_outcome(f"{spec.name} on {len(train):,} rows: {model_info.model_uri}")
    return {"model_uri": model_info.model_uri}


if __name__ == "__main__":
    main()
