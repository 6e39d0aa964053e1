"""The preprocessing: imputation, scaling and one-hot encoding of the schema's features.

featurize fits it on the train split (nothing leaks from test); train joins the fitted
preprocessing and the estimator into one scikit-learn Pipeline, so the served model takes raw
feature columns. skops saves and loads it (loading never runs arbitrary code).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from steps.core.progress import LARGE_FIT_ROWS, Progress, stage
from steps.core.schema import DataSchema

logger = logging.getLogger(__name__)

# Rows transformed at a time: bounds the extra memory on large training sets.
CHUNK_ROWS = 250_000
# Types outside skops' default trust list that the fitted preprocessing contains; all are inert
# data containers. Anything else found in a file is refused.
SKOPS_TRUSTED_TYPES = ["numpy.dtype"]


@dataclass(frozen=True)
class FittedPreprocessing:
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


def fit_preprocessing(train: pd.DataFrame, schema: DataSchema) -> FittedPreprocessing:
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
    return FittedPreprocessing(transformer=transformer, feature_names=[str(n) for n in transformer.get_feature_names_out()])


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


def load_transformer_file(path: str | Path) -> ColumnTransformer:
    """The transformer saved at ``path``; ValueError for types skops does not trust."""
    refused = [t for t in skops.io.get_untrusted_types(file=path) if t not in SKOPS_TRUSTED_TYPES]
    if refused:
        raise ValueError(f"refusing to load untrusted types {', '.join(refused)}")
    return skops.io.load(path, trusted=SKOPS_TRUSTED_TYPES)


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
