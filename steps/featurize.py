"""featurize: fit the preprocessing (imputation, scaling, one-hot encoding) on the train split.

Logs the fitted transformer as ``transformer/preprocessor.skops`` (skops: loading it never runs
arbitrary code) and the names of the features it produces.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import skops.io
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from steps.core.errors import InputError
from steps.core.progress import LARGE_FIT_ROWS, stage
from steps.core.schema import DataSchema
from steps.mlflow_io.artifacts import LoggedArtifact, fetch, load_manifest, log_file, log_json, read_split
from steps.mlflow_io.cards import Card, log_card
from steps.mlflow_io.step_run import require_inputs, run_step, step_parser

logger = logging.getLogger(__name__)

TRANSFORMER_ARTIFACT = "transformer/preprocessor.skops"
# Types outside skops' default trust list that the fitted preprocessing contains; all are inert
# data containers. Anything else found in a file is refused.
SKOPS_TRUSTED_TYPES = ["numpy.dtype"]


@dataclass(frozen=True)
class FeaturizeOutputs:
    transformer: ColumnTransformer
    feature_names: list[str]


def build_preprocessor(schema: DataSchema) -> ColumnTransformer:
    """Median-impute and scale each numeric feature; impute and one-hot encode categorical ones.

    One imputer and scaler per numeric column (the same statistics as one for all of them): the
    median imputer works on a masked copy of everything it is given, about four times the
    columns' size, so one column at a time keeps a large training set's peak memory down.
    """
    parts = [
        (f"numeric{i}", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), [name])
        for i, name in enumerate(schema.numeric_features)
    ]
    if schema.categorical_features:
        categorical = Pipeline(
            [
                ("impute", SimpleImputer(strategy="most_frequent")),
                # Categories unseen in training (e.g. at serving time) encode as all zeros.
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        parts.append(("categorical", categorical, schema.categorical_features))
    return ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)


def run(train: pd.DataFrame, schema: DataSchema) -> FeaturizeOutputs:
    """Fit the preprocessing on the training split only (no information leaks from test).

    Fitted with pandas output from each part's last step: scikit-learn then joins the parts'
    outputs with ``pd.concat``, which shares their memory instead of copying them into one more
    array the size of the training features. The imputers keep array output, so the steps after
    them are fitted on arrays, as they are given at transform time; the fitted transformer then
    outputs arrays, as usual.
    """
    transformer = build_preprocessor(schema).set_output(transform="pandas")
    for _, part, _ in transformer.transformers:
        part.steps[0][1].set_output(transform="default")
    if len(train) >= LARGE_FIT_ROWS:
        # scikit-learn reports nothing while it fits: say what the step is doing meanwhile.
        logger.info("fitting the preprocessing of %d columns on %s rows", len(schema.features), f"{len(train):,}")
    with stage("fitted the preprocessing", log=logger):
        transformer.fit(train[schema.features])
    transformer.set_output(transform="default")
    return FeaturizeOutputs(transformer=transformer, feature_names=[str(n) for n in transformer.get_feature_names_out()])


def _canonical(value: Any) -> Any:
    """A JSON-able form of a fitted transformer's state that is the same in every process."""
    if isinstance(value, BaseEstimator):
        return [type(value).__qualname__, {k: _canonical(v) for k, v in sorted(vars(value).items())}]
    if isinstance(value, np.ndarray):
        data = value.tolist() if value.dtype == object else hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
        return ["ndarray", str(value.dtype), list(value.shape), _canonical(data)]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda item: str(item[0]))}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    return repr(value)  # floats (repr round-trips), numpy scalars, slices, dtypes, NaN


def transformer_digest(transformer: ColumnTransformer) -> str:
    """SHA-256 of the fitted state: equal for equal fits, unlike the skops file's bytes, which
    carry object ids and zip timestamps."""
    return hashlib.sha256(json.dumps(_canonical(transformer), sort_keys=True).encode()).hexdigest()


def save_transformer(transformer: ColumnTransformer, path: str | Path) -> None:
    skops.io.dump(transformer, path)


def load_transformer(uri: str) -> ColumnTransformer:
    """Load a transformer logged by featurize, refusing types skops does not trust."""
    with tempfile.TemporaryDirectory() as tmp:
        path = fetch(uri, tmp, what="transformer")
        try:
            refused = [t for t in skops.io.get_untrusted_types(file=path) if t not in SKOPS_TRUSTED_TYPES]
            if refused:
                raise InputError(f"transformer {uri}: refusing to load untrusted types {', '.join(refused)}")
            return skops.io.load(path, trusted=SKOPS_TRUSTED_TYPES)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"transformer {uri}: not a transformer saved by featurize ({type(exc).__name__}: {exc})") from None


def fitted_transformations(transformer: ColumnTransformer) -> list[dict[str, Any]]:
    """What each fitted part of ``transformer`` does to each input column, with the fitted values."""
    rows: list[dict[str, Any]] = []
    for _, part, columns in transformer.transformers_:
        if part == "drop" or not isinstance(part, Pipeline):
            continue
        imputer = part.named_steps.get("impute")
        scaler, encoder = part.named_steps.get("scale"), part.named_steps.get("onehot")
        for i, column in enumerate(columns):
            fill = imputer.statistics_[i] if imputer is not None else None
            row: dict[str, Any] = {"column": column, "missing values become": fill}
            if scaler is not None:
                row |= {"minus (mean)": float(scaler.mean_[i]), "divided by (std)": float(scaler.scale_[i])}
                row["outputs"] = column
            if encoder is not None:
                categories = [str(c) for c in encoder.categories_[i]]
                row["outputs"] = f"{len(categories)} one-hot column(s): {', '.join(categories)}"
            rows.append(row)
    return rows


def card(out: FeaturizeOutputs, schema: DataSchema, train_rows: int) -> Card:
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
    _, schema = load_manifest(manifest_uri)
    with stage("read the train split", log=logger):
        train = read_split(train_uri, "train split", schema)
    out = run(train, schema)

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / Path(TRANSFORMER_ARTIFACT).name
        save_transformer(out.transformer, local)
        transformer_file = log_file(local, TRANSFORMER_ARTIFACT, digest=transformer_digest(out.transformer))
    log_json({"input_features": schema.features, "output_features": out.feature_names}, "transformer/features.json")
    mlflow.log_metrics({"input_features": len(schema.features), "output_features": len(out.feature_names)})
    log_card(lambda: card(out, schema, len(train)))
    return {"transformer_uri": transformer_file}


if __name__ == "__main__":
    main()
