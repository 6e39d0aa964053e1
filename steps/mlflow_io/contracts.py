"""What the steps promise each other through MLflow: tag names, artifact files and their content.

Every tag the pipeline writes on a run or a model version is named here, once; so is every
artifact a step hands downstream. The manifest (``data/manifest.json``, written by ingest), the
evaluation result (``evaluation/result.json``, written by evaluate, read by register) and each
step's outputs are typed models, written and read by the same code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from steps.core.errors import ERROR_TAG, InputError
from steps.core.schema import DataSchema, parse_schema
from steps.core.tasks import TargetSummary


class Kind(StrEnum):
    """What a run is (tag ``pipeline.kind``): main's parent, a sweep's parent, one of its trials, compare."""

    PIPELINE = "pipeline"
    SWEEP = "sweep"
    TRIAL = "trial"
    COMPARE = "compare"


class Tag:
    """Tags on the pipeline's runs."""

    KIND = "pipeline.kind"
    STEP = "pipeline.step"  # which step a run did the work of
    ERROR = ERROR_TAG  # the one-line reason a run failed (core/errors.py: the step runs record it)
    OUTPUT = "pipeline.output."  # + output name: the output's URI (or value)
    DIGEST = "pipeline.digest."  # + output name: the content digest of that output
    # + input name: the SHA-256 of the input as the step read it (the cache keys the run by it).
    READ_DIGEST = "pipeline.read_digest."
    OUTCOME = "pipeline.outcome"  # what a step did, in one line (the driver prints it)
    DATA_DIGEST = "pipeline.data_digest"
    TASK = "pipeline.task"  # regression or classification, as ingest resolved it for the data
    ESTIMATOR = "pipeline.estimator"  # the import path of the estimator a run trained or judged
    # The step cache (orchestration/cache.py).
    CACHE_KEY = "pipeline.cache.key"
    CACHE_PART = "pipeline.cache."  # + code / params / inputs / env
    REUSED_FROM = "pipeline.cache.reused_from"
    REUSED_KEY = "pipeline.cache.reused_key"
    # evaluate's verdict.
    PASSED = "pipeline.evaluation.passed"
    REASON = "pipeline.evaluation.reason"
    COMPARED_WITH = "pipeline.evaluation.champion_version"
    # register's decision.
    MODEL_NAME = "pipeline.model_name"
    MODEL_VERSION = "pipeline.model_version"
    CHAMPION_VERSION = "pipeline.champion_version"
    DECISION = "pipeline.decision"
    DECISION_REASON = "pipeline.decision.reason"
    # predict's model, and rollback's change (+ from / to / reason / by).
    MODEL_URI = "pipeline.model_uri"
    MODEL_ID = "pipeline.model_id"
    ROLLBACK = "pipeline.rollback."
    # A sweep's parent, and compare's run.
    BEST_TRIAL = "pipeline.sweep.best_trial_run_id"
    TRIALS = "pipeline.sweep.trials"
    BEST_RUN = "pipeline.compare.best_run_id"
    COMPARED_METRIC = "pipeline.compare.metric"
    COMPARED_EXPERIMENT = "pipeline.compare.experiment_id"

    @staticmethod
    def of_step(step: str, what: str) -> str:
        """A parent run's record of one of its steps: ``pipeline.<step>.<run_id|cache_hit|status|seconds>``."""
        return f"pipeline.{step}.{what}"


class ModelMetadata:
    """Keys of the metadata train writes into the logged model's MLmodel file (read by predict)."""

    TRAIN_DATA_DIGEST = "train_data_digest"
    DATA_DIGEST = "data_digest"
    TASK = "task"  # regression or classification
    CLASSES = "classes"  # a classifier's labels, sorted
    SCHEMA = "schema"  # the data schema the model was trained with, in its YAML form


class VersionTag:
    """Tags on registered model versions (and the registered model)."""

    PIPELINE_RUN = "pipeline.run_id"
    DATA_SOURCE = "data.source"
    DATA_DIGEST = "data.digest"
    GIT_COMMIT = "git.commit"
    PASSED = "evaluation.passed"
    REASON = "evaluation.reason"
    METRIC = "evaluation."  # + MLflow's metric name: the candidate's value, full precision
    PRIMARY_METRIC = "evaluation.primary_metric"  # MLflow's name of the metric the gate compared
    TASK = "model.task"
    ESTIMATOR = "model.estimator"
    TARGET = "data.target"
    COMPARED_WITH = "evaluation.champion_version"
    TEST_DIGEST = "evaluation.test_digest"
    DECISION = "decision"
    DECISION_REASON = "decision.reason"
    PREVIOUS_CHAMPION = "champion.previous"
    PROMOTED_AT = "champion.promoted_at"
    PROMOTED_BY = "champion.promoted_by."  # + user / run_id
    ROLLED_BACK = "champion.rolled_back."  # + at / reason / by ...
    ROLLED_BACK_AT = "champion.rolled_back.at"
    RESTORED_AT = "champion.restored_at"  # when a rollback made this version champion again
    LAST_CHANGE = "champion.last_change"  # on the registered model
    # On the registered model: when -e rollback -P version=none removed the alias on purpose; no
    # version champion before then stands in for the champion since.
    ALIAS_REMOVED_AT = "champion.alias_removed_at"
    LEASE_HOLDER = "pipeline.lease.holder"
    LEASE_TOKEN = "pipeline.lease.token"


# MLflow limits tag values to 8000 characters; the pipeline's stay well below.
MAX_TAG_LENGTH = 5000
# Written where a tag needs a value and there is no version.
NO_VERSION = "none"
# The champion's metrics on the candidate's test split, logged on the evaluate run with this prefix.
CHAMPION_METRIC_PREFIX = "champion_"


class Artifact:
    """The files steps log and pass on (paths inside their run's artifacts)."""

    TRAIN = "data/train.parquet"
    TEST = "data/test.parquet"
    MANIFEST = "data/manifest.json"
    TRANSFORMER = "transformer/preprocessor.skops"
    FEATURES = "transformer/features.json"
    WEIGHTS = "train/coefficients.json"
    EVALUATION = "evaluation/result.json"
    REPORT = "evaluation/report.md"
    PREDICTED_VS_ACTUAL = "plots/predicted_vs_actual.png"
    RESIDUALS = "plots/residuals.png"
    CARD = "card.html"
    SCHEMA = "schema/schema.yaml"  # the schema entry point's draft


@dataclass(frozen=True)
class LoggedArtifact:
    """An artifact a step logged: its URI and the SHA-256 of its content."""

    uri: str
    digest: str


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> str:
        # Key order as written: a schema's columns keep their order (the model signature follows it).
        return json.dumps(self.model_dump(mode="json", by_alias=True), indent=2)

    @classmethod
    def from_json(cls, document: Any, uri: str, what: str) -> Any:
        """The record in ``document`` (parsed JSON); one InputError line naming ``uri`` if it is not one."""
        try:
            return cls.model_validate(document)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            field = ".".join(map(str, error["loc"])) or "the document"
            raise InputError(f"{what} {uri}: not written by this pipeline's steps ({field}: {error['msg']})") from None


class SplitRecord(_Record):
    rows: int
    digest: str


class SplitSettingsRecord(_Record):
    test_size: float
    seed: int


class TargetRecord(_Record):
    """The train split's target as the baseline needs it (steps/core/tasks.py's TargetSummary)."""

    task: str
    mean: float | None = None
    classes: list[Any] = []
    counts: list[int] = []
    # Rows ingest dropped because they had no target value (data.drop_missing_target).
    dropped_rows: int = 0

    def summary(self) -> TargetSummary:
        return TargetSummary(self.task, mean=self.mean, classes=tuple(self.classes), counts=tuple(self.counts))


class Manifest(_Record):
    """``data/manifest.json``: where the data came from, its digests, and the schema it satisfied.

    No run-specific URIs: the manifest's digest depends on the data only.
    """

    source: str
    resolved_source: str
    digest: str
    rows: int
    missing_values: int
    splits: dict[str, SplitRecord]
    split: SplitSettingsRecord
    target: TargetRecord
    schema_: dict[str, Any]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, alias_generator=lambda n: n.rstrip("_"))

    def data_schema(self, uri: str) -> DataSchema:
        return parse_schema(self.schema_, source=uri)


class CheckRecord(_Record):
    name: str
    passed: bool
    detail: str


class ChampionRecord(_Record):
    """The champion a candidate was compared with: register promotes only if it still is."""

    model_name: str
    version: str
    metrics: dict[str, float] | None = None
    problem: str | None = None


class EvaluationResult(_Record):
    """``evaluation/result.json``: evaluate's verdict on a candidate, as register reads it."""

    passed: bool
    reason: str
    checks: list[CheckRecord]
    metrics: dict[str, float]
    champion: ChampionRecord | None
    task: str
    # MLflow's name of the primary metric, the baseline's metrics, and the gate's settings.
    metric: str
    baseline: dict[str, float]
    gate: dict[str, Any]
    model_uri: str
    test_uri: str
    test_rows: int
    # Identifies the split by content: register compares recorded metrics only on the same one.
    test_digest: str | None


# What each entry point records as its outputs (``pipeline.output.<name>`` tags); the driver
# passes the five steps' outputs on by these names.
STEP_OUTPUTS: dict[str, tuple[str, ...]] = {
    "ingest": ("train_uri", "test_uri", "manifest_uri"),
    "featurize": ("transformer_uri",),
    "train": ("model_uri",),
    "evaluate": ("evaluation_uri",),
    "register": ("model_name", "model_version", "registered_model_uri", "alias_uri"),
    "predict": ("predictions_uri",),
    "rollback": ("champion_uri",),
    "compare": ("runs_uri",),
    "schema": ("schema_uri",),
}
