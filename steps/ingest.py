"""ingest: read the dataset, validate it against the schema, split it into train and test.

Logs ``data/train.parquet``, ``data/test.parquet`` and ``data/manifest.json`` (source, digests,
row counts and the schema the data satisfied), the source and both splits as MLflow dataset
inputs, and row counts as metrics.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from steps.core import tasks
from steps.core.conf import defaults
from steps.core.data import DataSettings, split
from steps.core.progress import stage
from steps.core.schema import DataSchema, extra_columns, load_schema_with_digest, validate_frame
from steps.core.tasks import Task
from steps.mlflow_io.artifacts import log_record, log_table, read_table_with_digest, resolve_data_uri, to_dataset
from steps.mlflow_io.cards import Card, histogram, log_card
from steps.mlflow_io.contracts import Artifact, LoggedArtifact, Manifest, SplitRecord, SplitSettingsRecord, Tag, TargetRecord
from steps.mlflow_io.step_run import add_settings, record_outcome, run_step, settings, step_parser

logger = logging.getLogger(__name__)

# The card's histograms are drawn from a random sample of at most this many rows (the shape of
# a distribution needs no more; every row of a large file would cost seconds per column).
HISTOGRAM_ROWS = 200_000
# Categories shown per categorical column in the card (the most frequent ones).
TOP_CATEGORIES = 10
# Columns drawn in the card, at most (wide data: the first ones; every column is in the table).
PLOTTED_COLUMNS = 40
# The options that set the data section under another name than its key.
OPTIONS = {"data_uri": "uri"}


# Ends the error about rows with no target value: the setting that drops them instead.
MISSING_TARGET_HINT = " (to drop such rows instead: -P data.drop_missing_target=true)"


@dataclass(frozen=True)
class IngestOutputs:
    data: pd.DataFrame
    train: pd.DataFrame
    test: pd.DataFrame
    task: Task
    dropped_rows: int = 0  # rows with no target value, dropped (data.drop_missing_target)


def drop_missing_target(raw: pd.DataFrame, schema: DataSchema, params: DataSettings) -> tuple[pd.DataFrame, int]:
    """``raw`` without the rows that have no target value (missing, or blank text), when the settings say so; and how many.

    Otherwise blank text in the target is made a missing value, for the schema check to refuse
    like one (naming the setting that drops such rows), never to read as a class of its own.
    """
    if schema.target not in raw.columns:
        return raw, 0
    target = raw[schema.target]
    # Only text can be blank: a numeric (or bool) column is not converted to text to look for it.
    text = not pd.api.types.is_numeric_dtype(target.dtype)
    blank = (target.astype("string").str.strip() == "").fillna(False).to_numpy(dtype=bool) if text else np.zeros(len(target), bool)
    if not params.drop_missing_target:
        return (raw.assign(**{schema.target: target.mask(blank)}), 0) if blank.any() else (raw, 0)
    missing = target.isna().to_numpy() | blank
    return (raw[~missing].reset_index(drop=True), int(missing.sum())) if missing.any() else (raw, 0)


def validate(raw: pd.DataFrame, schema: DataSchema, params: DataSettings, task_setting: str, source: str) -> tuple[pd.DataFrame, Task, int]:
    """The rows of ``raw`` valid against ``schema``, the task they are for, and the rows dropped for no target."""
    kept, dropped = drop_missing_target(raw, schema, params)
    data = validate_frame(kept, schema, source, missing_target_hint=MISSING_TARGET_HINT)
    if extra := extra_columns(raw.columns, schema):
        logger.warning("%s: leaving out column(s) not in the schema: %s", source, ", ".join(extra))
    task = tasks.resolve_task(task_setting, schema)
    tasks.check_target(task_setting, schema, data[schema.target], source)
    return data, task, dropped


def split_for(data: pd.DataFrame, schema: DataSchema, params: DataSettings, task: Task, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The train and test splits; stratified by class for classification, so both keep the class balance."""
    stratify = schema.target if task.classification else None
    return split(data, params.test_size, params.seed, source, stratify=stratify)


def run(raw: pd.DataFrame, schema: DataSchema, params: DataSettings, task_setting: str, source: str) -> IngestOutputs:
    """Validate ``raw`` (read from ``source``) against ``schema``, resolve the task, split reproducibly."""
    data, task, dropped = validate(raw, schema, params, task_setting, source)
    return IngestOutputs(data, *split_for(data, schema, params, task, source), task=task, dropped_rows=dropped)


def column_profile(data: pd.DataFrame, schema: DataSchema) -> list[dict[str, object]]:
    """One row per column: its role, type, missing values and range (or most frequent values)."""
    rows = []
    for spec in schema.columns:
        column = data[spec.name]
        missing = int(column.isna().sum())
        row: dict[str, object] = {
            "column": spec.name,
            "role": "target" if spec.name == schema.target else "feature",
            "type": "categorical" if spec.categorical else spec.dtype,
            "missing": missing,
            "missing %": 100.0 * missing / len(column) if len(column) else 0.0,
        }
        if spec.numeric and not spec.categorical:
            values = column.to_numpy(dtype="float64", na_value=np.nan)
            present = values[~np.isnan(values)]
            row |= {"min": present.min(), "mean": _mean(present), "max": present.max()} if len(present) else {}
        else:
            counts = column.value_counts().head(TOP_CATEGORIES)
            row["most frequent"] = ", ".join(f"{value} ({count:,})" for value, count in counts.items())
        rows.append(row)
    return rows


def _mean(values: np.ndarray) -> float:
    """The mean of finite ``values``, also of values near the largest float, whose sum overflows."""
    with np.errstate(over="ignore"):
        mean = float(values.mean())
    if math.isfinite(mean):
        return mean
    unit = float(np.abs(values).max())
    return float((values / unit).mean()) * unit


def distributions(data: pd.DataFrame, schema: DataSchema) -> Figure:
    """A small histogram (numeric columns) or bar chart (categorical) per column, target first."""
    names = ([schema.target] + [name for name in schema.features if name != schema.target])[:PLOTTED_COLUMNS]
    sample = data if len(data) <= HISTOGRAM_ROWS else data.sample(HISTOGRAM_ROWS, random_state=0)
    width = min(4, len(names))
    height = -(-len(names) // width)
    fig = Figure(figsize=(3.2 * width, 2.4 * height))
    # Fixed spacing: constrained layout would take half the drawing time of this many axes.
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.3 / height, top=1 - 0.15 / height, hspace=0.55, wspace=0.3)
    axes = fig.subplots(height, width, squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):
        spec = schema.column(name)
        column = sample[name].dropna()
        if spec.numeric and not spec.categorical:
            histogram(ax, column.to_numpy(dtype="float64"), bins=30, color="#d1242f" if name == schema.target else "#0969da")
        else:
            counts = column.astype(str).value_counts().head(TOP_CATEGORIES)
            # Bars at positions, labelled: matplotlib would read "1.0" as a number and say so.
            ax.bar(range(len(counts)), counts.to_numpy(), color="#0969da")
            ax.set_xticks(range(len(counts)), counts.index.tolist(), rotation=45)
        ax.set_title(f"{name} (target)" if name == schema.target else name, fontsize=10)
        ax.tick_params(labelsize=8)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    return fig


def class_balance(out: IngestOutputs, target: str) -> list[dict[str, object]]:
    """Rows per class in the data and in each split (both splits keep the data's proportions)."""
    counts = {name: frame[target].value_counts() for name, frame in (("rows", out.data), ("train", out.train), ("test", out.test))}
    return [
        {"class": label, **{name: int(c.get(label, 0)) for name, c in counts.items()}, "share %": 100.0 * int(count) / len(out.data)}
        for label, count in counts["rows"].items()
    ]


def card(out: IngestOutputs, schema: DataSchema, source: str, params: DataSettings) -> Card:
    """The data profile: size, split, missing values and each column's distribution."""
    data = out.data
    profile = column_profile(data, schema)  # column by column: no frame-sized temporary on large data
    result = Card("ingest: data profile", f"{source}: {len(data):,} rows valid against the schema")
    result.facts(
        {
            "source": source,
            "rows": len(data),
            "columns": data.shape[1],
            "missing values": sum(row["missing"] for row in profile),
            "train rows": len(out.train),
            "test rows": len(out.test),
            "split": f"test_size={params.test_size}, seed={params.seed}" + (", stratified by class" if out.task.classification else ""),
            "task": out.task.name,
            "rows dropped for no target value": out.dropped_rows,
        }
    )
    if out.task.classification:
        result.heading("Class balance").table(class_balance(out, schema.target))
    columns = ["column", "role", "type", "missing", "missing %", "min", "mean", "max", "most frequent"]
    result.heading("Columns").table(profile, columns)
    sampled = f" (a random sample of {HISTOGRAM_ROWS:,} rows)" if len(data) > HISTOGRAM_ROWS else ""
    columns = len(schema.columns)
    which = "each column" if columns <= PLOTTED_COLUMNS else f"the target and the first {PLOTTED_COLUMNS - 1} of {columns - 1} features"
    result.heading("Distributions").figure(distributions(data, schema), f"Distribution of {which}{sampled}; missing values left out")
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = step_parser("ingest", __doc__, inputs=())
    add_settings(parser, "data", OPTIONS, model=DataSettings)
    parser.add_argument("--task", default=None, help="regression, classification or auto; default: model.task in conf/pipeline.yaml")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    run_step("ingest", build_parser(), _ingest, argv)


def _ingest(args: argparse.Namespace) -> dict[str, LoggedArtifact]:
    params = settings(args, DataSettings, "data", OPTIONS)
    task_setting = args.task if args.task is not None else defaults("model")["task"]
    schema, schema_sha256 = load_schema_with_digest(params.schema_file)
    mlflow.set_tag(Tag.READ_DIGEST + "schema", schema_sha256)
    location = resolve_data_uri(params.uri)
    with stage(f"read {params.uri}", log=logger):
        raw, source_sha256 = read_table_with_digest(
            location, what="dataset", text_columns=schema.text_columns, float_columns=schema.float_columns, timeout=params.download_timeout
        )
    # What was read, which the cache keys this run by, whatever the driver saw before.
    mlflow.set_tag(Tag.READ_DIGEST + "data_uri", source_sha256)
    # run() in two halves, so that the file as read is freed before the split copies the rows.
    with stage(f"checked {len(raw):,} rows against the schema", log=logger):
        data, task, dropped = validate(raw, schema, params, task_setting, params.uri)
    del raw
    if dropped:
        logger.warning("%s: dropped %s row(s) with no %r value (data.drop_missing_target)", params.uri, f"{dropped:,}", schema.target)
    with stage("split into train and test", log=logger):
        out = IngestOutputs(data, *split_for(data, schema, params, task, params.uri), task=task, dropped_rows=dropped)
    mlflow.set_tag(Tag.TASK, task.name)

    with stage(f"logged {Artifact.TRAIN} and {Artifact.TEST}", log=logger):
        train_file = log_table(out.train, Artifact.TRAIN)
        test_file = log_table(out.test, Artifact.TEST)
    source = to_dataset(out.data, name="source", source=location, target=schema.target, sha256=source_sha256)
    train = to_dataset(
        out.train, name="train", source=mlflow.get_artifact_uri(Artifact.TRAIN), target=schema.target, sha256=train_file.digest
    )
    test = to_dataset(out.test, name="test", source=mlflow.get_artifact_uri(Artifact.TEST), target=schema.target, sha256=test_file.digest)
    mlflow.log_input(source, context="source")
    mlflow.log_input(train, context="training")
    mlflow.log_input(test, context="testing")

    missing = int(out.data.isna().sum().sum())
    mlflow.log_metrics(
        {
            "rows": len(out.data),
            "train_rows": len(out.train),
            "test_rows": len(out.test),
            "columns": out.data.shape[1],
            "missing_values": missing,
            "dropped_rows": dropped,
        }
    )
    mlflow.set_tag(Tag.DATA_DIGEST, source.digest)
    manifest = Manifest(
        source=params.uri,
        resolved_source=location,
        digest=source.digest,
        rows=len(out.data),
        missing_values=missing,
        splits={
            "train": SplitRecord(rows=len(out.train), digest=train.digest),
            "test": SplitRecord(rows=len(out.test), digest=test.digest),
        },
        split=SplitSettingsRecord(test_size=params.test_size, seed=params.seed),
        target=TargetRecord(dropped_rows=dropped, **vars(tasks.summarize(task, out.train[schema.target]))),
        schema=schema.to_dict(),
    )
    manifest_file = log_record(manifest, Artifact.MANIFEST)
    with stage("data profile (card.html)", log=logger):
        log_card(lambda: card(out, schema, params.uri, params))
    record_outcome("{}: {} rows valid; train {}, test {}".format(params.uri, *(f"{len(f):,}" for f in (out.data, out.train, out.test))))
    return {"train_uri": train_file, "test_uri": test_file, "manifest_uri": manifest_file}


if __name__ == "__main__":
    main()
