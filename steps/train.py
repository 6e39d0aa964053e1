"""train: fit ElasticNet on the preprocessed train split and log ONE servable model.

The logged MLflow model is a scikit-learn Pipeline (featurize's fitted preprocessing + the
regressor), saved with skops, with a signature and an input example, so it takes raw feature
columns. Its pip requirements come from requirements.txt (no dependency inference).
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import ElasticNet
from sklearn.metrics import r2_score, root_mean_squared_error
from sklearn.pipeline import Pipeline

from steps.core.progress import LARGE_FIT_ROWS, Progress, stage
from steps.core.schema import DataSchema
from steps.featurize import SKOPS_TRUSTED_TYPES, load_transformer
from steps.mlflow_io.artifacts import load_manifest, log_json, read_split
from steps.mlflow_io.cards import Card, bar_figure, log_card
from steps.mlflow_io.step_run import require_inputs, run_step, step_parser
from steps.orchestration.config import ModelConfig, project_path

logger = logging.getLogger(__name__)

# Packages the served model needs, pinned as in requirements.txt.
MODEL_PACKAGES = ("mlflow", "scikit-learn", "skops", "pandas", "numpy", "scipy")
INPUT_EXAMPLE_ROWS = 5
# Rows transformed or scored at a time: bounds the extra memory on large training sets.
CHUNK_ROWS = 250_000
# Coefficients drawn and listed in the card, at most (the largest; all are in coefficients.json).
CARD_COEFFICIENTS = 40
# Rows the model signature is inferred from (types, not statistics: a sample is enough).
SIGNATURE_ROWS = 1000


@dataclass(frozen=True)
class TrainParams:
    alpha: float
    l1_ratio: float
    max_iter: int


@dataclass(frozen=True)
class TrainOutputs:
    model: Pipeline
    coefficients: dict[str, float]
    metrics: dict[str, float]


def run(train: pd.DataFrame, transformer: ColumnTransformer, schema: DataSchema, params: TrainParams) -> TrainOutputs:
    """Fit the regressor on already-fitted preprocessing and join both into one Pipeline."""
    features, target = train[schema.features], train[schema.target]
    transformed = transform_for_fit(transformer, features)
    # copy_X=False: the solver centres ``transformed`` in place instead of copying it.
    regressor = ElasticNet(alpha=params.alpha, l1_ratio=params.l1_ratio, max_iter=params.max_iter, copy_X=False)
    if len(transformed) >= LARGE_FIT_ROWS:
        # The solver reports nothing while it runs: say what the step is doing meanwhile.
        logger.info("fitting ElasticNet on %s rows x %d features", f"{len(transformed):,}", transformed.shape[1])
    with stage("fitted ElasticNet", log=logger):
        regressor.fit(transformed, target)
    del transformed
    # Both parts are fitted: the pipeline is built, not re-fitted, so featurize's fit is kept.
    model = Pipeline([("preprocess", transformer), ("regressor", regressor)])
    predictions = predict_in_chunks(model, features)
    names = [str(n) for n in transformer.get_feature_names_out()]
    coefficients = {"intercept": float(regressor.intercept_), **dict(zip(names, map(float, regressor.coef_), strict=True))}
    metrics = {
        "train_rmse": float(root_mean_squared_error(target, predictions)),
        "train_r2": float(r2_score(target, predictions)),
        "nonzero_coefficients": float(np.count_nonzero(regressor.coef_)),
    }
    return TrainOutputs(model=model, coefficients=coefficients, metrics=metrics)


def card(out: TrainOutputs, params: TrainParams, train_rows: int, model_uri: str) -> Card:
    """The fitted model: its parameters, training fit and coefficients (on standardised features)."""
    regressor = out.model.named_steps["regressor"]
    result = Card("train: ElasticNet", f"fitted on {train_rows:,} training rows; logged as {model_uri}")
    result.facts(
        {
            "alpha": params.alpha,
            "l1_ratio": params.l1_ratio,
            "iterations": int(np.max(regressor.n_iter_)),
            "max_iter": params.max_iter,
            "RMSE (train)": out.metrics["train_rmse"],
            "R² (train)": out.metrics["train_r2"],
            "non-zero coefficients": int(out.metrics["nonzero_coefficients"]),
        }
    )
    weights = {name: value for name, value in out.coefficients.items() if name != "intercept"}
    ranked = sorted(weights.items(), key=lambda item: -abs(item[1]))
    shown = ranked[:CARD_COEFFICIENTS]
    result.heading("Coefficients")
    result.text(
        "Numeric features are standardised before the regressor, so their coefficient is the change in the prediction per "
        "standard deviation; a one-hot column's is the change when the row has that category. "
        f"Intercept {out.coefficients['intercept']:.4g}; zero: dropped by the L1 penalty."
        + (
            f" The {len(shown)} largest of {len(ranked)} are shown; all are in train/coefficients.json." if len(shown) < len(ranked) else ""
        ),
        note=True,
    )
    result.figure(bar_figure([n for n, _ in shown], [v for _, v in shown], "Coefficients by size", "coefficient"), "Coefficients")
    result.table([{"feature": name, "coefficient": value} for name, value in shown])
    return result


def transform_for_fit(transformer: ColumnTransformer, features: pd.DataFrame) -> np.ndarray:
    """``transformer.transform(features)``, built chunk by chunk in the column-major layout the
    solver works on, so the only full-size copy of the training data besides ``features`` is this one."""
    width = len(transformer.get_feature_names_out())
    transformed = np.empty((len(features), width), dtype="float64", order="F")
    progress = Progress("preprocessing the train split", len(features), log=logger)
    for start in range(0, len(features), CHUNK_ROWS):
        progress.update(start)
        transformed[start : start + CHUNK_ROWS] = transformer.transform(features.iloc[start : start + CHUNK_ROWS])
    progress.finish()
    return transformed


def predict_in_chunks(model: Pipeline, features: pd.DataFrame) -> np.ndarray:
    """``model.predict(features)`` without a full-size transformed copy of ``features``."""
    if len(features) == 0:
        return model.predict(features)
    progress = Progress("scoring the train split", len(features), log=logger)
    chunks = []
    for start in range(0, len(features), CHUNK_ROWS):
        progress.update(start)
        chunks.append(model.predict(features.iloc[start : start + CHUNK_ROWS]))
    progress.finish()
    return np.concatenate(chunks)


def model_requirements(requirements: str | None = None) -> list[str]:
    """The pins of MODEL_PACKAGES in ``requirements`` (default: the project's requirements.txt)."""
    if requirements is None:
        requirements = project_path("requirements.txt").read_text(encoding="utf-8")
    pins = {}
    for line in requirements.splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*==", line)
        if match:
            pins[match.group(1).lower()] = line.strip()
    return [pins[name] for name in MODEL_PACKAGES]


# Artifact URIs this step reads, produced by upstream steps.
INPUTS = ("train_uri", "transformer_uri", "manifest_uri")


def build_parser() -> argparse.ArgumentParser:
    parser = step_parser("train", __doc__, INPUTS)
    parser.add_argument("--alpha", type=float, required=True, help="ElasticNet regularisation strength")
    parser.add_argument("--l1_ratio", type=float, required=True, help="ElasticNet L1/L2 mixing")
    parser.add_argument("--max_iter", type=int, required=True, help="maximum coordinate-descent iterations")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    run_step("train", build_parser(), _train, argv)


def _train(args: argparse.Namespace) -> dict[str, str]:
    # The same checks as the pipeline's configuration, so a step run alone is held to them too.
    ModelConfig(alpha=args.alpha, l1_ratio=args.l1_ratio, max_iter=args.max_iter)
    train_uri, transformer_uri, manifest_uri = require_inputs(args, INPUTS).values()
    manifest, schema = load_manifest(manifest_uri)
    with stage("read the train split", log=logger):
        train = read_split(train_uri, "train split", schema)
    params = TrainParams(alpha=args.alpha, l1_ratio=args.l1_ratio, max_iter=args.max_iter)
    out = run(train, load_transformer(transformer_uri), schema, params)

    sample = train[schema.features].head(SIGNATURE_ROWS)
    model_info = mlflow.sklearn.log_model(
        out.model,
        name="model",
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
        signature=infer_signature(sample, out.model.predict(sample)),
        input_example=sample.head(INPUT_EXAMPLE_ROWS),
        pip_requirements=model_requirements(),
        params={"alpha": params.alpha, "l1_ratio": params.l1_ratio, "max_iter": params.max_iter},
        metadata={"train_data_digest": manifest["splits"]["train"]["digest"], "data_digest": manifest["digest"]},
    )
    mlflow.log_metrics(out.metrics)
    log_json(out.coefficients, "train/coefficients.json")
    log_card(lambda: card(out, params, len(train), model_info.model_uri))
    return {"model_uri": model_info.model_uri}


if __name__ == "__main__":
    main()
