"""predict: score a dataset with a registered model (default: the champion); log the predictions.

``mlflow run . -e predict -P data_uri=new_rows.csv`` reads the rows (any URI ingest accepts),
scores them with ``models:/<model_name>@champion`` or ``-P model_uri``, and logs
``predictions/predictions.parquet``: the input columns (including ones the schema does not know,
such as IDs) plus a ``prediction`` column. The run is linked to the model it used (tags and an
MLflow model input), so the scores can be traced to a model version.

The rows are checked (the target column may be absent) against the data schema the model was
trained with, which train records in the model's MLmodel metadata, so scoring with someone else's
model needs no schema file. ``-P schema`` given explicitly wins over it; a model that records no
schema (logged outside this pipeline) is checked against ``data.schema`` of conf/pipeline.yaml.

What ``prediction`` holds follows the model's task (its metadata's ``task``; for a model logged
elsewhere, whether its scikit-learn model is a classifier):

- regression: the predicted quantity, as a float;
- classification: the label the classifier predicts, as it was in the training data (``"benign"``,
  ``True``, ``2``; not ``2.0``), plus, when the estimator has ``predict_proba``, one column
  ``probability_<class>`` per class (in the order of the model's ``classes_``; they sum to 1).

``-P engine=spark`` does the same on Apache Spark, for rows that do not fit one machine:
``predictions/predictions.parquet`` is then a directory of Parquet part files. The prediction
comes from ``mlflow.pyfunc.spark_udf`` (typed as the classifier's labels: string, long or
boolean; double for a regressor); the probability columns, which spark_udf cannot give, from a
pandas UDF that calls ``predict_proba`` on the model's scikit-learn pipeline, broadcast to the
executors once. Both engines write the same columns with the same values. pyspark is imported
only on that path (``pip install -r requirements-spark.txt``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import urllib.parse
import urllib.request
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.data.dataset import Dataset
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import LoggedModelInput
from pydantic import BaseModel, ConfigDict, field_validator

from steps.core.conf import defaults, project_path
from steps.core.errors import ConfigError, DataError, InputError, first_line
from steps.core.schema import (
    PREDICTION_COLUMN,
    ColumnSpec,
    DataSchema,
    _other_delimiter,
    _range_text,
    extra_columns,
    load_schema,
    parse_schema,
    validate_frame,
)
from steps.core.tasks import CLASSIFICATION
from steps.mlflow_io.artifacts import (
    DATASET_DIGEST_CHARS,
    PANDAS_NA_STRINGS,
    fetch,
    load_model,
    log_table,
    read_table_with_digest,
    resolve_data_uri,
    run_artifact_uri,
    sha256_file,
    table_format,
    to_dataset,
)
from steps.mlflow_io.contracts import LoggedArtifact, ModelMetadata, Tag
from steps.mlflow_io.registry import CHAMPION, RegisteredModel, RegistrySettings, resolve
from steps.mlflow_io.step_run import add_settings, run_step, settings, step_parser

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession
    from pyspark.sql import DataFrame as SparkFrame

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions/predictions.parquet"
ENGINES = ("pandas", "spark")
# Where the Spark master comes from when -P spark_master is empty, and the fallback.
SPARK_MASTER_ENV = "SPARK_MASTER"
DEFAULT_SPARK_MASTER = "local[*]"
# Settings for every Spark session predict starts, and for local masters only: no web UI, nothing
# listening beyond this machine, few shuffle partitions (the only shuffle is one row per partition).
SPARK_CONF = {
    "spark.app.name": "mlflow-pipeline predict",
    "spark.ui.showConsoleProgress": "false",
    # Parse every CSV field, so a malformed row fails the validation pass, not the scoring.
    "spark.sql.csv.parser.columnPruning.enabled": "false",
}
LOCAL_SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.host": "127.0.0.1",
    "spark.sql.shuffle.partitions": "4",
}
# Hadoop file systems Spark reads itself (the cluster needs their connectors); other remote URIs
# are downloaded to the driver first.
SPARK_SCHEMES = ("hdfs", "viewfs", "s3a", "abfs", "abfss", "wasb", "wasbs")
# How many problems one error message lists before summarising the rest (as ingest's checks).
MAX_LISTED = 3
# The kinds of problem a column's type can have; the others need typed values to be judged.
TYPE_PROBLEMS = ("non_numeric", "infinite", "non_integer")
# A classifier's probability of each class is written as the column probability_<class>.
PROBABILITY_PREFIX = "probability_"


class PredictSettings(BaseModel):
    """The ``predict`` section: how batch prediction scores by default."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    engine: str

    @field_validator("engine")
    @classmethod
    def _engine(cls, value: str) -> str:
        if value not in ENGINES:
            raise ValueError(f"must be one of {', '.join(ENGINES)}, got {value!r}")
        return value


@dataclass(frozen=True)
class PredictOutputs:
    predictions: pd.DataFrame


@dataclass(frozen=True)
class ModelOutput:
    """What predict writes for a model besides the input columns: ``prediction``, and a classifier's probabilities.

    ``classes``: a classifier's ``classes_`` (as Python values, in the model's order), when it has
    them; ``estimator``: its scikit-learn model, when it has ``predict_proba``.
    """

    classification: bool = False
    classes: tuple[Any, ...] = ()
    estimator: Any = None

    @property
    def probability_columns(self) -> list[str]:
        return [probability_column(label) for label in self.classes] if self.estimator is not None else []

    @property
    def columns(self) -> list[str]:
        return [PREDICTION_COLUMN, *self.probability_columns]

    @property
    def spark_type(self) -> str | None:
        """The type of ``prediction`` on Spark: a regressor's double, a classifier's labels' own (None: from the signature)."""
        if not self.classification:
            return "double"
        if not self.classes:
            return None
        if all(isinstance(label, bool) for label in self.classes):
            return "boolean"
        if all(isinstance(label, int) and not isinstance(label, bool) for label in self.classes):
            return "long"
        if all(isinstance(label, int | float) and not isinstance(label, bool) for label in self.classes):
            return "double"
        return "string"


def download_timeout() -> float:
    """Seconds a download of the rows may take in all: the pipeline's ``data.download_timeout``."""
    return float(defaults("data")["download_timeout"])


def probability_column(label: Any) -> str:
    """The column of the probability of class ``label``: ``probability_benign``, ``probability_True``, ``probability_2``."""
    return f"{PROBABILITY_PREFIX}{label}"


def raw_model(model: mlflow.pyfunc.PyFuncModel) -> Any:
    """The model's own object (a scikit-learn pipeline for this pipeline's models); None if its flavor has none."""
    try:
        return model.get_raw_model()
    except Exception:  # NotImplementedError, or a flavor's own error
        return None


def model_output(model: mlflow.pyfunc.PyFuncModel) -> ModelOutput:
    """What predict writes for ``model``: its task from its metadata (train records it), else from
    whether its scikit-learn model is a classifier; a classifier's classes and probabilities."""
    from sklearn.base import is_classifier  # noqa: PLC0415 - the model's own library, loaded with it

    estimator = raw_model(model)
    task = (model.metadata.metadata or {}).get(ModelMetadata.TASK)
    classification = task == CLASSIFICATION.name if task else estimator is not None and is_classifier(estimator)
    classes = getattr(estimator, "classes_", None) if classification else None
    if classes is None:
        return ModelOutput(classification)
    labels = tuple(label.item() if isinstance(label, np.generic) else label for label in classes)
    return ModelOutput(True, labels, estimator if hasattr(estimator, "predict_proba") else None)


def refuse_written_columns(names: Sequence[Any], written: Sequence[str], source: str) -> None:
    """An InputError when the rows have a column predict writes (``prediction``, ``probability_<class>``)."""
    taken = next((name for name in written if name in {str(n) for n in names}), None)
    if taken is not None:
        raise InputError(f"{source}: has a column named {taken!r}, which predict writes; rename it")


def run(raw: pd.DataFrame, model: mlflow.pyfunc.PyFuncModel, schema: DataSchema, source: str) -> PredictOutputs:
    """Validate ``raw`` (read from ``source``) and score it; keep every input column.

    A regressor's ``prediction`` is a float; a classifier's is its label, followed by the
    probability of each class when it has ``predict_proba`` (see the module's docstring).
    """
    refuse_written_columns(raw.columns, [PREDICTION_COLUMN], source)
    rows = validate_frame(raw, schema, source, require_target=False)
    if extra := extra_columns(raw.columns, schema):
        logger.info("%s: passing through column(s) not in the schema: %s", source, ", ".join(extra))
    output_spec = model_output(model)
    refuse_written_columns(raw.columns, output_spec.probability_columns, source)
    features = rows[schema.features]
    predicted = np.asarray(model.predict(features)).reshape(-1)
    if not output_spec.classification:
        predicted = predicted.astype("float64")
    if len(predicted) != len(rows):
        raise InputError(f"the model returned {len(predicted)} predictions for {len(rows)} rows of {source}")
    # The schema's columns typed as validated; any other column (e.g. an ID) passed through as read.
    passthrough = raw.reset_index(drop=True)
    output = pd.DataFrame({str(c): rows[str(c)] if str(c) in rows else passthrough[c] for c in raw.columns})
    output[PREDICTION_COLUMN] = predicted
    if output_spec.estimator is not None:
        probabilities = np.asarray(output_spec.estimator.predict_proba(features), dtype="float64")
        if probabilities.shape != (len(rows), len(output_spec.classes)):
            raise InputError(
                f"the model returned probabilities of shape {probabilities.shape} for {len(rows)} rows of {source} "
                f"and {len(output_spec.classes)} classes"
            )
        for column, values in zip(output_spec.probability_columns, probabilities.T, strict=True):
            output[column] = values
    return PredictOutputs(predictions=output)


def trained_schema(model: mlflow.pyfunc.PyFuncModel, uri: str) -> DataSchema | None:
    """The data schema ``model`` was trained with (its MLmodel metadata, written by train); None if it records none."""
    recorded = (model.metadata.metadata or {}).get(ModelMetadata.SCHEMA)
    if recorded is None:
        return None
    try:
        schema = parse_schema(recorded, source=f"model {uri}: metadata {ModelMetadata.SCHEMA!r}")
    except ConfigError as exc:
        raise InputError(str(exc)) from None
    # MLmodel is YAML with sorted keys: the columns come back in alphabetical order. The model's
    # signature keeps the features in their training order (the target, not among them, goes last).
    signature = model.metadata.get_input_schema()
    names = signature.input_names() if signature is not None and signature.has_input_names() else []
    position = {name: i for i, name in enumerate(names)}
    return replace(schema, columns=tuple(sorted(schema.columns, key=lambda c: position.get(c.name, len(position)))))


def schema_to_use(model: mlflow.pyfunc.PyFuncModel, uri: str, explicit: DataSchema | None = None, explicit_path: str = "") -> DataSchema:
    """The schema the rows must satisfy: ``explicit`` (``-P schema``, read from ``explicit_path``)
    if given, else the one the model was trained with, else ``data.schema``; said in one INFO line."""
    trained = trained_schema(model, uri)
    if explicit is not None:
        instead = f", not the schema {uri} was trained with (recorded in its metadata)" if trained else ""
        logger.info("checking the rows against -P schema %s%s", explicit_path, instead)
        return explicit
    if trained is not None:
        logger.info("checking the rows against the schema %s was trained with (recorded in its metadata)", uri)
        return trained
    fallback = defaults("data")["schema"]
    logger.info("%s records no schema (not logged by this pipeline's train): checking the rows against data.schema %s", uri, fallback)
    return load_schema(fallback)


def build_parser() -> argparse.ArgumentParser:
    parser = step_parser("predict", __doc__, inputs=())
    parser.add_argument("--data_uri", type=str, default="", help="CSV or Parquet rows to score: path, file://, http(s)://, artifact URI")
    parser.add_argument("--model_uri", type=str, default="", help="the model to use; empty: models:/<model_name>@champion")
    add_settings(parser, "registry", model=RegistrySettings)
    parser.add_argument(
        "--schema",
        type=str,
        default=None,
        help="schema YAML the rows must satisfy (the target may be absent); default: the model's own, else data.schema",
    )
    add_settings(parser, "predict", model=PredictSettings)
    parser.add_argument(
        "--spark_master",
        type=str,
        default="",
        help=f"engine=spark: the Spark master; empty: ${SPARK_MASTER_ENV}, else {DEFAULT_SPARK_MASTER}",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    run_step("predict", build_parser(), _predict, argv)


def model_to_use(client: MlflowClient, model_uri: str, model_name: str) -> tuple[str, RegisteredModel | None]:
    """The immutable URI to load (an alias resolved to its version now) and the registered version."""
    uri = model_uri or f"models:/{model_name}@{CHAMPION}"
    if not uri.startswith("models:/") or uri.startswith("models:/m-"):
        return uri, None  # a run artifact or a logged model that is not (necessarily) registered
    registered = resolve(client, uri, "model_uri")
    if registered is None:
        raise InputError(f"model {uri}: the alias points at no version yet; run the pipeline first or pass -P model_uri")
    return registered.uri, registered


def _predict(args: argparse.Namespace) -> dict[str, LoggedArtifact]:
    if not args.data_uri.strip():
        raise InputError("missing data_uri: pass the rows to score, e.g. -P data_uri=data/new_rows.csv")
    explicit = load_schema(args.schema) if args.schema else None  # a bad -P schema fails before the model is fetched
    options = settings(args, PredictSettings, "predict")
    client = MlflowClient()
    uri, registered = model_to_use(client, args.model_uri.strip(), settings(args, RegistrySettings, "registry").model_name)
    # Loaded here on either engine: a model that cannot load fails with one line before any scoring.
    model = load_model(uri)
    schema = schema_to_use(model, uri, explicit, args.schema)
    location = resolve_data_uri(args.data_uri)
    linked = LoggedModelInput(model.metadata.model_id) if model.metadata.model_id else None
    if options.engine == "spark":
        predictions, rows = _predict_with_spark(args, location, uri, schema, output=model_output(model), linked=linked)
    else:
        raw, sha256 = read_table_with_digest(location, what="dataset", text_columns=schema.text_columns, timeout=download_timeout())
        out = run(raw, model, schema, source=args.data_uri)
        predictions, rows = log_table(out.predictions, PREDICTIONS_FILE), len(out.predictions)
        scored = out.predictions[[str(c) for c in raw.columns]]
        dataset = to_dataset(scored, name="scored", source=location, target=None, sha256=sha256)
        mlflow.log_input(dataset, context="prediction", model=linked)
    mlflow.log_metric("rows", rows)
    tags = {Tag.MODEL_URI: uri, Tag.MODEL_ID: model.metadata.model_id or "unknown"}
    if registered:
        tags |= {Tag.MODEL_NAME: registered.name, Tag.MODEL_VERSION: registered.version}
    mlflow.set_tags(tags)
    logger.info("scored %d rows of %s with %s (engine %s)", rows, args.data_uri, uri, options.engine)
    return {"predictions_uri": predictions}


# --- engine=spark: the pure parts ------------------------------------------------------------


def spark_master(param: str, environ: Mapping[str, str]) -> str:
    """The Spark master: ``-P spark_master``, else ``$SPARK_MASTER``, else ``local[*]``."""
    return param.strip() or environ.get(SPARK_MASTER_ENV, "").strip() or DEFAULT_SPARK_MASTER


def is_local_master(master: str) -> bool:
    """Whether ``master`` runs Spark inside this machine (``local``, ``local[4]``, ``local-cluster[...]``)."""
    return master == "local" or master.startswith(("local[", "local-cluster["))


def spark_conf(master: str) -> dict[str, str]:
    """The settings predict gives its Spark session (a local master stays quiet and on 127.0.0.1)."""
    return SPARK_CONF | (LOCAL_SPARK_CONF if is_local_master(master) else {})


def check_columns(names: Sequence[str], schema: DataSchema, source: str, written: Sequence[str] = (PREDICTION_COLUMN,)) -> list[ColumnSpec]:
    """The schema's columns to check in a table with columns ``names``: the same checks, in the
    same order and words, as the pandas engine (the target only when present). ``written``: the
    columns predict adds (``prediction``, and a classifier's ``probability_<class>``)."""
    refuse_written_columns(names, [PREDICTION_COLUMN], source)
    if not names:
        raise DataError(f"{source}: the file is empty (no header, no rows)")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataError(f"{source}: duplicate column name(s) {', '.join(map(repr, duplicated))}")
    columns = [c for c in schema.columns if c.name != schema.target or c.name in names]
    missing = [c.name for c in columns if c.name not in names]
    if missing:
        delimiter = _other_delimiter(list(names))
        if delimiter:
            raise DataError(
                f"{source}: the file looks delimited by {delimiter!r} instead of ',' (its header reads as one column {names[0]!r})"
            )
        label = "target column" if missing == [schema.target] else "column(s)"
        raise DataError(f"{source}: missing {label} {', '.join(map(repr, missing))} required by the schema")
    refuse_written_columns(names, written, source)
    return columns


def value_checks(spec: ColumnSpec) -> dict[str, str]:
    """The problems to count in a column, by kind, with the words of the error, in the order it lists them."""
    checks = {}
    if spec.numeric:
        checks |= {"non_numeric": "non-numeric value(s)", "infinite": "infinite value(s)"}
        if spec.dtype == "int":
            checks["non_integer"] = "non-integer value(s)"
    if not spec.nullable:
        checks["missing"] = "missing value(s)"
    if spec.numeric and (spec.min is not None or spec.max is not None):
        checks["out_of_range"] = f"value(s) {_range_text(spec)}"
    if spec.allowed is not None:
        checks["not_allowed"] = f"value(s) not in allowed {list(spec.allowed)}"
    return checks


@dataclass(frozen=True)
class ColumnStats:
    """What one pass over a column found: missing and usable values, and each problem's count and an example."""

    missing: int
    present: int
    counts: Mapping[str, int] = field(default_factory=dict)
    examples: Mapping[str, Any] = field(default_factory=dict)


def column_problems(spec: ColumnSpec, rows: int, stats: ColumnStats) -> list[str]:
    """What is wrong with a column of ``rows`` rows, as the pandas engine says it (with an example
    value instead of the first row: Spark rows have no order)."""
    problems = []
    for kind, label in value_checks(spec).items():
        if kind not in TYPE_PROBLEMS and not stats.present:
            break
        count = stats.counts.get(kind, 0)
        if count:
            example = "" if kind == "missing" else f", e.g. {stats.examples.get(kind)!r}"
            problems.append(f"{count} {label}{example}")
    if not stats.present and stats.missing == rows:
        problems.append("every value is missing")
    return problems


def data_error(source: str, problems: Sequence[str]) -> DataError:
    more = f" (and {len(problems) - MAX_LISTED} more problem(s))" if len(problems) > MAX_LISTED else ""
    return DataError(f"{source}: " + "; ".join(problems[:MAX_LISTED]) + more)


# "org.apache.spark.SparkException: [CLASS] message" and "mlflow.exceptions.MlflowException: message",
# possibly after "Caused by: " or ": " (Py4J's first line is only "An error occurred while calling o42.x").
_EXCEPTION_LINE = re.compile(r"^(?:Caused by: |: )?(?:[\w$]+\.)*[\w$]*(?:Exception|Error): (?!Traceback)(.+)$")


def spark_failure(exc: BaseException | str) -> str:
    """One line for a Spark error: the message of its innermost cause, without the SQLSTATE."""
    causes = [m.group(1) for line in str(exc).splitlines() if (m := _EXCEPTION_LINE.match(line.strip()))]
    text = causes[-1] if causes else first_line(exc)
    return re.sub(r"\s*SQLSTATE: \w+\s*$", "", text).strip() or type(exc).__name__


# --- engine=spark: the Spark parts (pyspark imported only here) -------------------------------


@dataclass(frozen=True)
class SparkPredictOutputs:
    predictions: SparkFrame  # lazy: every input column (the schema's typed) plus ``prediction`` (and probabilities)
    rows: int
    digest: str  # of the rows' content, whatever their order


def run_spark(raw: SparkFrame, model_uri: str, schema: DataSchema, source: str, output: ModelOutput | None = None) -> SparkPredictOutputs:
    """Validate ``raw`` (read from ``source``) in one pass and score it: ``prediction`` with
    ``mlflow.pyfunc.spark_udf``, a classifier's probabilities with ``predict_proba`` in a pandas UDF.

    ``output``: what the model writes (:func:`model_output`); None: a regressor's ``prediction``.
    """
    from pyspark.sql import functions as F  # noqa: PLC0415, N812 - engine=spark only

    output = output or ModelOutput()
    specs = check_columns(raw.columns, schema, source, output.columns)
    if extra := extra_columns(raw.columns, schema):
        logger.info("%s: passing through column(s) not in the schema: %s", source, ", ".join(extra))
    typed, rows, digest = _validate_spark_frame(raw, specs, source)
    udf = mlflow.pyfunc.spark_udf(raw.sparkSession, model_uri, result_type=output.spark_type, env_manager="local")
    # A struct of named columns: the model gets a DataFrame with the columns of its signature.
    features = F.struct(*[_column(name) for name in schema.features])
    scored = typed.withColumn(PREDICTION_COLUMN, udf(features))
    if output.estimator is not None:
        # One struct of every class's probability per row (one call of predict_proba), then its fields as columns.
        struct = _unused_name(PROBABILITY_PREFIX, scored.columns)
        scored = scored.withColumn(struct, _probabilities_udf(raw.sparkSession, output)(features))
        scored = scored.select(
            *[_column(name) for name in typed.columns],
            PREDICTION_COLUMN,
            *[F.col(struct).getField(name).alias(name) for name in output.probability_columns],
        )
    return SparkPredictOutputs(predictions=scored, rows=rows, digest=digest)


def _unused_name(stem: str, names: Sequence[str]) -> str:
    """``stem`` followed by underscores until no column of ``names`` has that name."""
    name = stem + "_"
    while name in names:
        name += "_"
    return name


def _probabilities_udf(spark: SparkSession, output: ModelOutput) -> Any:
    """A pandas UDF of a struct of the features: a struct of the probability of each of the classifier's classes.

    The scikit-learn model is broadcast to the executors once; the UDF's code uses numpy and pandas
    only, so the executors need scikit-learn, and this project's ``steps`` package only for a
    model whose classifier is wrapped by steps/core/labels.py (one from outside scikit-learn).
    """
    from pyspark.sql import functions as F  # noqa: PLC0415, N812
    from pyspark.sql.types import DoubleType, StructField, StructType  # noqa: PLC0415

    columns = output.probability_columns
    model = spark.sparkContext.broadcast(output.estimator)

    def probabilities(features: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(np.asarray(model.value.predict_proba(features), dtype="float64"), columns=columns)

    return F.pandas_udf(probabilities, StructType([StructField(name, DoubleType()) for name in columns]))


def _column(name: str) -> Column:
    """The column ``name``, even with dots or backquotes in it."""
    from pyspark.sql import functions as F  # noqa: PLC0415, N812

    return F.col("`" + name.replace("`", "``") + "`")


def _as_read(column: Column, read_as: Any) -> Column:
    """``column`` with what pandas reads as missing (its NA strings, NaN) as null."""
    from pyspark.sql import functions as F  # noqa: PLC0415, N812
    from pyspark.sql.types import DoubleType, FloatType, StringType  # noqa: PLC0415

    if isinstance(read_as, StringType):
        return F.when(column.isin(*PANDAS_NA_STRINGS), F.lit(None)).otherwise(column)
    if isinstance(read_as, FloatType | DoubleType):
        return F.when(F.isnan(column), F.lit(None)).otherwise(column)
    return column


def _as_number(raw: Column) -> Column:
    """``raw`` as a double; null when it is not a number (as ``pd.to_numeric(errors="coerce")``)."""
    from pyspark.sql import functions as F  # noqa: PLC0415, N812

    number = raw.try_cast("double")
    return F.when(F.isnan(number), F.lit(None)).otherwise(number)


def _finite(number: Column) -> Column:
    from pyspark.sql import functions as F  # noqa: PLC0415, N812

    return F.when(number.isin(math.inf, -math.inf), F.lit(None)).otherwise(number)


def _typed(spec: ColumnSpec, raw: Column) -> Column:
    """The column as the schema types it: a finite double or null, or a string."""
    return _finite(_as_number(raw)) if spec.numeric else raw.cast("string")


def _problem_conditions(spec: ColumnSpec, raw: Column, number: Column, value: Column) -> dict[str, tuple[Column, Column]]:
    """Per kind of problem (see :func:`value_checks`), the rows that have it and the value to show as an example."""
    from pyspark.sql import functions as F  # noqa: PLC0415, N812

    present = value.isNotNull()
    low = spec.min if spec.min is not None else -math.inf
    high = spec.max if spec.max is not None else math.inf
    conditions = {
        "non_numeric": (raw.isNotNull() & number.isNull(), raw.cast("string")),
        "infinite": (number.isin(math.inf, -math.inf), number),
        "non_integer": (present & (value % 1 != 0), value),
        "missing": (raw.isNull(), F.lit(None)),
        "out_of_range": (present & ((value < low) | (value > high)), value),
    }
    if spec.allowed is not None:
        conditions["not_allowed"] = (present & ~value.isin(*spec.allowed), value)
    return {kind: conditions[kind] for kind in value_checks(spec)}


def _validate_spark_frame(frame: SparkFrame, specs: Sequence[ColumnSpec], source: str) -> tuple[SparkFrame, int, str]:
    """``frame`` with the schema's columns typed, its row count and content digest; one pass over
    the data, which raises a :class:`DataError` listing what is wrong like the pandas engine."""
    from pyspark.sql import functions as F  # noqa: PLC0415, N812

    read_as = {f.name: f.dataType for f in frame.schema.fields}
    # Each column as read, as a number, and typed, computed once in steps (r<i>, n<i>, v<i>): checks
    # written over the whole expressions take Spark's optimiser seconds for a few rows.
    staged = frame.select(
        F.xxhash64(*map(_column, frame.columns)).cast("decimal(38,0)").alias("hash"),
        *[_as_read(_column(spec.name), read_as[spec.name]).alias(f"r{i}") for i, spec in enumerate(specs)],
    )
    staged = staged.select("*", *[_as_number(F.col(f"r{i}")).alias(f"n{i}") for i, _ in enumerate(specs)])
    staged = staged.select(
        "*", *[(_finite(F.col(f"n{i}")) if spec.numeric else F.col(f"r{i}").cast("string")).alias(f"v{i}") for i, spec in enumerate(specs)]
    )
    conditions = {i: _problem_conditions(spec, F.col(f"r{i}"), F.col(f"n{i}"), F.col(f"v{i}")) for i, spec in enumerate(specs)}
    # The row count, a digest of the content that does not depend on the rows' order, and the counts.
    aggregates = [F.count(F.lit(1)).alias("rows"), F.sum("hash").alias("hash")]
    for i, checks in conditions.items():
        aggregates += [
            F.count_if(F.col(f"v{i}").isNotNull()).alias(f"{i}.present"),
            F.count_if(F.col(f"r{i}").isNull()).alias(f"{i}.missing"),
        ]
        aggregates += [F.count_if(condition).alias(f"{i}.{kind}") for kind, (condition, _) in checks.items()]
    try:
        found = staged.agg(*aggregates).first().asDict()
    except _spark_errors() as exc:  # e.g. a malformed CSV row
        raise DataError(f"{source}: cannot parse ({spark_failure(exc)})") from None
    rows = found["rows"]
    if rows == 0:
        raise DataError(f"{source}: no data rows (only a header)")
    bad = [(i, kind) for i, checks in conditions.items() for kind in checks if found[f"{i}.{kind}"]]
    examples = {}
    if bad:
        # Only now (bad rows are rare) another pass, for an example of each problem.
        first = [F.first(F.when(*conditions[i][kind]), ignorenulls=True).alias(f"{i}.{kind}") for i, kind in bad]
        examples = staged.agg(*first).first().asDict()
    problems = []
    for i, spec in enumerate(specs):
        stats = ColumnStats(
            missing=found[f"{i}.missing"],
            present=found[f"{i}.present"],
            counts={kind: found[f"{i}.{kind}"] for kind in conditions[i]},
            examples={kind: examples.get(f"{i}.{kind}") for kind in conditions[i]},
        )
        problems += [f"column {spec.name!r}: {p}" for p in column_problems(spec, rows, stats)]
    if problems:
        raise data_error(source, problems)
    typed = {spec.name: _typed(spec, _as_read(_column(spec.name), read_as[spec.name])) for spec in specs}
    columns = [typed[name].alias(name) if name in typed else _column(name) for name in frame.columns]
    digest = hashlib.sha256(f"{rows}:{found['hash']}:{frame.schema.json()}".encode()).hexdigest()[:DATASET_DIGEST_CHARS]
    return frame.select(*columns), rows, digest


def start_spark(master: str) -> tuple[SparkSession, bool]:
    """A Spark session for ``master`` (an active one is reused) and whether this call started it."""
    try:
        from pyspark.sql import SparkSession  # noqa: PLC0415 - engine=spark only
    except ImportError:
        raise ConfigError("engine=spark needs pyspark: pip install -r requirements-spark.txt") from None
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise ConfigError("engine=spark needs Java 17 or later: there is no java on PATH and JAVA_HOME is not set")
    started = SparkSession.getActiveSession() is None
    if is_local_master(master):
        # The Python workers of a local master run this interpreter (Spark's default: python3 on
        # PATH), and Spark listens on the loopback interface only.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    builder = SparkSession.builder.master(master)
    for key, value in spark_conf(master).items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # e.g. the JVM did not start
        raise ConfigError(f"cannot start Spark with master {master!r} ({spark_failure(exc)})") from None
    spark.sparkContext.setLogLevel("FATAL")  # errors reach the user as one line each, not as JVM logs
    logger.info("Spark %s, master %s", spark.version, spark.sparkContext.master)
    return spark, started


def spark_input(location: str, download_dir: str | Path) -> str:
    """What Spark reads for the data at ``location``: local paths as file:// URIs, Hadoop file
    systems as they are, and any other URI downloaded to ``download_dir`` first."""
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme in SPARK_SCHEMES:
        return location
    if parsed.scheme in ("", "file"):
        path = Path(urllib.request.url2pathname(parsed.path)) if parsed.scheme == "file" else project_path(location)
        if not path.exists():
            raise InputError(f"dataset {location}: file not found")
        return path.resolve().as_uri()
    return fetch(location, download_dir, "dataset", download_timeout()).resolve().as_uri()


def local_columns(path: str, fmt: str) -> list[str] | None:
    """The column names of the table at a ``file://`` URI, read without Spark; None when that
    cannot be done here (another file system, a compressed or unreadable file: Spark reads it)."""
    import pyarrow.parquet  # noqa: PLC0415 - engine=spark only

    parsed = urllib.parse.urlparse(path)
    local = Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme != "file" or not local.exists():
        return None
    # A directory of part files (as Spark writes them): the first part speaks for all.
    parts = sorted(p for p in local.iterdir() if p.is_file() and not p.name.startswith(("_", "."))) if local.is_dir() else [local]
    if not parts:
        return None
    try:
        if fmt == "parquet":
            return list(pyarrow.parquet.read_schema(parts[0]).names)
        if not parts[0].name.lower().endswith(".csv"):
            return None  # compressed
        with parts[0].open(encoding="utf-8-sig", newline="") as handle:
            return next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error, pyarrow.ArrowException):
        return None


def read_spark_table(spark: SparkSession, path: str, fmt: str, source: str, names: Sequence[str] | None = None) -> SparkFrame:
    """The table at ``path`` (a CSV file with a header, or Parquet; either may be a directory of parts).

    CSV columns are read as text: the schema's columns are typed by :func:`run_spark`, the others
    pass through as written (inferring their types would read all the data once more). ``names``:
    the CSV header when it is already known (:func:`local_columns`).
    """
    from pyspark.sql.types import StringType, StructField, StructType  # noqa: PLC0415

    try:
        if fmt == "parquet":
            return spark.read.parquet(path)
        reader = spark.read.options(encoding="UTF-8", mode="FAILFAST")
        if names is None:
            # The header, read here rather than by Spark, which would rename repeated names (x -> x0, x3).
            header = reader.options(header=False).csv(path).limit(1).collect()
            names = [f"_c{i}" if name is None else str(name) for i, name in enumerate(header[0])] if header else []
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise DataError(f"{source}: duplicate column name(s) {', '.join(map(repr, duplicated))}")
        if not names:
            return spark.createDataFrame([], StructType([]))
        return reader.schema(StructType([StructField(name, StringType()) for name in names])).options(header=True).csv(path)
    except _spark_errors() as exc:
        raise DataError(f"{source}: cannot parse as {fmt} ({spark_failure(exc)})") from None


def _spark_errors() -> tuple[type[Exception], ...]:
    """The exception types of a failed Spark call: Spark's own, and Py4J's for errors in the JVM."""
    from py4j.protocol import Py4JError  # noqa: PLC0415 - engine=spark only
    from pyspark.errors import PySparkException  # noqa: PLC0415

    return PySparkException, Py4JError


def log_part_files(local: Path, artifact_path: str) -> LoggedArtifact:
    """Log the Parquet part files Spark wrote in the directory ``local`` as the directory ``artifact_path``."""
    parts = sorted(local.glob("part-*"))
    for other in set(local.iterdir()) - set(parts):
        other.unlink()  # _SUCCESS and .crc checksums
    digest = hashlib.sha256("".join(sha256_file(part) for part in parts).encode()).hexdigest()
    mlflow.log_artifacts(str(local), artifact_path=artifact_path)
    return LoggedArtifact(uri=run_artifact_uri(artifact_path), digest=digest)


def _predict_with_spark(
    args: argparse.Namespace, location: str, model_uri: str, schema: DataSchema, *, output: ModelOutput, linked: LoggedModelInput | None
) -> tuple[LoggedArtifact, int]:
    """Score the rows at ``location`` on Spark, log them and the dataset; the predictions and the row count."""
    source, master = args.data_uri, spark_master(args.spark_master, os.environ)
    fmt = table_format(location)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        path = spark_input(location, tmp)
        names = local_columns(path, fmt)
        if names is not None:
            check_columns(names, schema, source, output.columns)  # before paying for a Spark session
        spark, started = start_spark(master)
        try:
            out = run_spark(read_spark_table(spark, path, fmt, source, names), model_uri, schema, source, output)
            staged = Path(tmp) / Path(PREDICTIONS_FILE).name
            try:
                out.predictions.write.parquet(staged.as_uri())  # the scoring happens here
            except _spark_errors() as exc:
                raise InputError(f"model {model_uri}: scoring {source} on Spark failed ({spark_failure(exc)})") from None
            predictions = log_part_files(staged, PREDICTIONS_FILE)
            dataset = _spark_dataset(out.predictions.drop(*output.columns), location, out.digest)
            mlflow.log_input(dataset, context="prediction", model=linked)
        finally:
            if started:
                spark.stop()
    return predictions, out.rows


def _spark_dataset(frame: SparkFrame, location: str, digest: str) -> Dataset:
    """The scored rows as an MLflow dataset (source, schema, content digest), without another pass over them.

    A SparkDataset itself would count the rows again (its profile) when logged.
    """
    spark_dataset = mlflow.data.from_spark(frame, path=location, name="scored", digest=digest)
    return MetaDataset(spark_dataset.source, name=spark_dataset.name, digest=spark_dataset.digest, schema=spark_dataset.schema)


if __name__ == "__main__":
    main()
