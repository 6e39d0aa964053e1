"""The pipeline's stages as steps on a :class:`~steps.orchestration.runner.StepRunner`, shared by its drivers.

``main.py`` runs them once; ``steps/sweep.py`` runs ``prepare_data`` once and ``train_model`` /
``evaluate_model`` for each point of a grid. Every stage passes on artifact URIs only:

    ingest    --train_uri, test_uri, manifest_uri-->  featurize
    featurize --transformer_uri---------------------> train      (+ train_uri, manifest_uri)
    train     --model_uri---------------------------> evaluate   (+ test_uri, manifest_uri, champion_uri)
    evaluate  --evaluation_uri----------------------> register   (+ model_uri, manifest_uri)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from steps.mlflow_io.champions import Comparison, champion_to_compare
from steps.orchestration.config import PipelineConfig
from steps.orchestration.runner import ArtifactRef, StepRunner, Unkeyed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    """The outputs of ingest and featurize that the later steps read."""

    train_uri: ArtifactRef
    test_uri: ArtifactRef
    manifest_uri: ArtifactRef  # the data's schema and digests, read by every step
    transformer_uri: ArtifactRef


def prepare_data(runner: StepRunner, config: PipelineConfig) -> PreparedData:
    """ingest -> featurize."""
    data = config.data
    ingest = runner.step(
        "ingest",
        data_uri=runner.input_file(data.uri, "dataset", data.download_timeout),
        schema=runner.input_file(data.schema_file, "schema"),
        test_size=data.test_size,
        seed=data.seed,
        drop_missing_target=data.drop_missing_target,
        download_timeout=Unkeyed(data.download_timeout),
        task=config.model.task,
    )
    featurize = runner.step("featurize", train_uri=ingest["train_uri"], manifest_uri=ingest["manifest_uri"])
    return PreparedData(ingest["train_uri"], ingest["test_uri"], ingest["manifest_uri"], featurize["transformer_uri"])


def train_model(runner: StepRunner, config: PipelineConfig, data: PreparedData, params: Mapping[str, Any] | None = None) -> ArtifactRef:
    """train the configured estimator, with ``params`` replacing some of its arguments: the model's URI."""
    estimator = config.estimator
    train = runner.step(
        "train",
        train_uri=data.train_uri,
        transformer_uri=data.transformer_uri,
        manifest_uri=data.manifest_uri,
        task=config.task.name,
        estimator=estimator.path,
        # Every argument, resolved, one -P each (the train run's params): the cache key names exactly what it trains.
        **{f"params.{name}": value for name, value in (estimator.params | dict(params or {})).items()},
    )
    return train["model_uri"]


def compare_with(runner: StepRunner, config: PipelineConfig, model_uri: ArtifactRef) -> Comparison:
    """The champion the candidate ``model_uri`` is evaluated against (see champions.champion_to_compare).

    Without the champion alias, a warning says what stands in; a champion whose files are gone
    stops the run here, with one line, before evaluate tries to load it.
    """
    comparison = champion_to_compare(runner.client, config.registry.model_name, model_uri)
    if comparison.note:
        logger.warning("%s: %s", config.registry.model_name, comparison.note)
    return comparison


def evaluate_model(
    runner: StepRunner, config: PipelineConfig, data: PreparedData, model_uri: ArtifactRef, *, champion_uri: str, champion_note: str = ""
) -> ArtifactRef:
    """evaluate against the thresholds and ``champion_uri`` (empty: no champion): the result's URI.

    ``champion_note`` (why that champion, e.g. the alias is gone) is passed only when there is one,
    so the cache keys of the usual evaluations stay as they were.
    """
    evaluation = config.evaluation
    note = {"champion_note": champion_note} if champion_note else {}
    evaluate = runner.step(
        "evaluate",
        model_uri=model_uri,
        test_uri=data.test_uri,
        manifest_uri=data.manifest_uri,
        metric=config.metric.short,
        baseline_margin=evaluation.baseline_margin,
        champion_tolerance=evaluation.champion_tolerance,
        champion_uri=champion_uri,
        **note,
    )
    return evaluate["evaluation_uri"]


def register_model(
    runner: StepRunner, config: PipelineConfig, data: PreparedData, model_uri: ArtifactRef, evaluation_uri: ArtifactRef
) -> None:
    """register: a new version, ``challenger``, and ``champion`` if it passed."""
    runner.step(
        "register",
        model_uri=model_uri,
        evaluation_uri=evaluation_uri,
        manifest_uri=data.manifest_uri,
        model_name=config.registry.model_name,
    )
