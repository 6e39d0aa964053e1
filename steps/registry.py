"""The model registry conventions every step shares: aliases, version tags, promotion history.

- ``champion``: the version in production (served, used by ``predict``). It moves only to a
  version that passed evaluation against the champion it replaces, or back with ``rollback``.
- ``challenger``: the newest candidate, whatever its verdict.

Each promotion tags the promoted version with ``champion.previous`` (the version it replaced),
so ``rollback`` can walk back one promotion at a time; rollbacks tag the version they demote.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from steps.errors import InputError, describe
from steps.lock import pipeline_lock, registry_lock_path

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"

# Version tags.
PASSED_TAG = "evaluation.passed"
# The champion version evaluation compared a version with ("none": no champion then).
COMPARED_WITH_TAG = "evaluation.champion_version"
DECISION_TAG = "decision"
DECISION_REASON_TAG = "decision.reason"
PREVIOUS_CHAMPION_TAG = "champion.previous"
ROLLED_BACK_TAG_PREFIX = "champion.rolled_back."
ROLLED_BACK_AT_TAG = ROLLED_BACK_TAG_PREFIX + "at"
NO_VERSION = "none"
# Tags of the register run.
DECISION_RUN_TAG = "pipeline.decision"
DECISION_REASON_RUN_TAG = "pipeline.decision.reason"
# Registered-model tag: the last change of the champion alias, in words.
LAST_CHANGE_TAG = "champion.last_change"

# Evaluation metrics by MLflow's names, and how summaries show them.
RMSE, MAE, R2 = "root_mean_squared_error", "mean_absolute_error", "r2_score"
REPORTED_METRICS = {RMSE: "RMSE", MAE: "MAE", R2: "R²"}
# The champion's metrics on the candidate's test split, logged on the evaluate run with this prefix.
CHAMPION_METRIC_PREFIX = "champion_"

# Outcomes of register.
PROMOTED = "promoted"
REJECTED = "rejected"
# Passed evaluation, but the champion it was compared with is no longer the champion.
STALE = "not promoted"
# The champion already is this very model (registered again, e.g. by a forced re-run).
ALREADY = "already champion"

# An alias change takes milliseconds; waiting longer means something is stuck.
ALIAS_LOCK_SECONDS = 60.0
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")
_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")


@dataclass(frozen=True)
class RegisteredModel:
    """One version of a registered model, by name and number."""

    name: str
    version: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def __str__(self) -> str:
        return f"{self.name} version {self.version}"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def alias_target(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version ``alias`` points at, or None when the alias (or the model) does not exist."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The number of the version ``alias`` points at, or None."""
    target = alias_target(client, name, alias)
    return str(target.version) if target else None


def holds_model(version: ModelVersion, model_uri: str) -> bool:
    """Whether registered ``version`` is the logged model ``model_uri`` (``models:/<model id>``)."""
    return model_uri in (version.source, f"models:/{version.model_id}")


def rolled_back_versions(client: MlflowClient, name: str, model_uri: str) -> list[ModelVersion]:
    """Versions of ``name`` holding the model ``model_uri`` that a rollback demoted."""
    versions = client.search_model_versions(f"name = '{name}'")
    return [v for v in versions if holds_model(v, model_uri) and ROLLED_BACK_AT_TAG in v.tags]


def champion_to_compare(client: MlflowClient, name: str, candidate_model_uri: str) -> str:
    """``models:/<name>/<version>`` of the champion a candidate must be compared with, or "".

    "" when there is no champion. When the champion already is the candidate model (an identical
    re-run), comparing it with itself would change evaluate's cache key and register the same
    model again; it is compared with what it was compared with when it was promoted instead, so
    the re-run's evaluation (and registration) are cache hits.
    """
    champion = alias_target(client, name, CHAMPION)
    if champion is None:
        return ""
    if not holds_model(champion, candidate_model_uri):
        return RegisteredModel(name, str(champion.version)).uri
    compared = champion.tags.get(COMPARED_WITH_TAG, NO_VERSION)
    if compared == NO_VERSION:
        return ""
    try:
        return RegisteredModel(name, str(get_version(client, RegisteredModel(name, compared)).version)).uri
    except InputError:
        return ""  # that version was deleted since: nothing to compare with


@contextmanager
def alias_change(name: str) -> Iterator[None]:
    """Check the champion and move it as one step (one process at a time on this machine)."""
    path = registry_lock_path(mlflow.get_tracking_uri(), name)
    with pipeline_lock(path, f"alias change of {name}", "wait", ALIAS_LOCK_SECONDS, what="alias change", limit="a fixed limit"):
        yield


def get_version(client: MlflowClient, model: RegisteredModel) -> ModelVersion:
    try:
        return client.get_model_version(model.name, model.version)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise InputError(f"{model}: not found in the model registry ({describe(exc)})") from None


def resolve(client: MlflowClient, uri: str, what: str) -> RegisteredModel | None:
    """The registered version ``uri`` names (``models:/<name>/<n>`` or ``models:/<name>@<alias>``).

    None when an alias points nowhere; an InputError for any other kind of URI or a version
    that does not exist.
    """
    if match := _ALIAS_URI.match(uri):
        version = alias_version(client, match["name"], match["alias"])
        return RegisteredModel(match["name"], version) if version else None
    if match := _VERSION_URI.match(uri):
        model = RegisteredModel(match["name"], str(int(match["version"])))
        get_version(client, model)
        return model
    raise InputError(f"{what} {uri!r}: expected models:/<name>/<version> or models:/<name>@<alias>")


def promote(client: MlflowClient, model: RegisteredModel, previous: str | None, by: Mapping[str, str]) -> None:
    """Point ``champion`` at ``model``; record what it replaced and who promoted it."""
    client.set_registered_model_alias(model.name, CHAMPION, model.version)
    client.set_model_version_tag(model.name, model.version, PREVIOUS_CHAMPION_TAG, previous or NO_VERSION)
    client.set_model_version_tag(model.name, model.version, "champion.promoted_at", now())
    for key, value in by.items():
        client.set_model_version_tag(model.name, model.version, f"champion.promoted_by.{key}", value)
    change = f"{now()}: version {model.version} promoted (replacing {previous or 'no champion'})"
    client.set_registered_model_tag(model.name, LAST_CHANGE_TAG, change)
    logger.info("%s is now the champion (was %s)", model, previous or "none")
