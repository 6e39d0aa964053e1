"""The pipeline's stages as steps on a :class:`~steps.orchestration.chain.Chain`, shared by its drivers.

``main.py`` runs them once; ``steps/sweep.py`` runs ``prepare_data`` once and ``train_model`` /
``evaluate_model`` for each point of a grid. Every stage passes on artifact URIs only:

    ingest    --train_uri, test_uri, manifest_uri-->  featurize
    featurize --transformer_uri---------------------> train      (+ train_uri, manifest_uri)
    train     --model_uri---------------------------> evaluate   (+ test_uri, manifest_uri, champion_uri)
    evaluate  --evaluation_uri----------------------> register   (+ model_uri, manifest_uri)
"""

from __future__ import annotations

from dataclasses import dataclass

from steps.orchestration.chain import ArtifactRef, Chain
from steps.orchestration.config import PipelineConfig


@dataclass(frozen=True)
class PreparedData:
    """The outputs of ingest and featurize that the later steps read."""

    train_uri: ArtifactRef
    test_uri: ArtifactRef
    manifest_uri: ArtifactRef  # the data's schema and digests, read by every step
    transformer_uri: ArtifactRef


def prepare_data(chain: Chain, config: PipelineConfig) -> PreparedData:
    """ingest -> featurize."""
    data = config.data
    ingest = chain.step(
        "ingest",
        data_uri=chain.input_file(data.uri, "dataset"),
        schema=chain.input_file(data.schema, "schema"),
        test_size=data.test_size,
        seed=data.seed,
    )
    featurize = chain.step("featurize", train_uri=ingest["train_uri"], manifest_uri=ingest["manifest_uri"])
    return PreparedData(ingest["train_uri"], ingest["test_uri"], ingest["manifest_uri"], featurize["transformer_uri"])


def train_model(chain: Chain, config: PipelineConfig, data: PreparedData, *, alpha: float, l1_ratio: float) -> ArtifactRef:
    """train, with these hyperparameters: the model's URI."""
    train = chain.step(
        "train",
        train_uri=data.train_uri,
        transformer_uri=data.transformer_uri,
        manifest_uri=data.manifest_uri,
        alpha=alpha,
        l1_ratio=l1_ratio,
        max_iter=config.model.max_iter,
    )
    return train["model_uri"]


def evaluate_model(chain: Chain, config: PipelineConfig, data: PreparedData, model_uri: ArtifactRef, *, champion_uri: str) -> ArtifactRef:
    """evaluate against the thresholds and ``champion_uri`` (empty: no champion): the result's URI."""
    evaluation = config.evaluation
    evaluate = chain.step(
        "evaluate",
        model_uri=model_uri,
        test_uri=data.test_uri,
        manifest_uri=data.manifest_uri,
        min_r2=evaluation.min_r2,
        max_rmse=evaluation.max_rmse,
        champion_tolerance=evaluation.champion_tolerance,
        champion_uri=champion_uri,
    )
    return evaluate["evaluation_uri"]


def register_model(chain: Chain, config: PipelineConfig, data: PreparedData, model_uri: ArtifactRef, evaluation_uri: ArtifactRef) -> None:
    """register: a new version, ``challenger``, and ``champion`` if it passed."""
    chain.step(
        "register",
        model_uri=model_uri,
        evaluation_uri=evaluation_uri,
        manifest_uri=data.manifest_uri,
        model_name=config.registry.model_name,
    )
