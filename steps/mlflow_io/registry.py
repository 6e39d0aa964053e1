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
import os
import random
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.entities.model_registry import RegisteredModel as MlflowRegisteredModel
from mlflow.exceptions import MlflowException
from pydantic import BaseModel, ConfigDict, field_validator

from steps.core.errors import InputError, PipelineError, describe
from steps.mlflow_io.contracts import NO_VERSION, VersionTag
from steps.runtime.lock import pipeline_lock, registry_lock_path
from steps.runtime.signals import stop_deferred

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
# The port of the serve command the pipeline prints: not 5000, which `mlflow ui` takes by default.
SERVE_PORT = 5001


def serve_command(name: str, port: int = SERVE_PORT) -> str:
    """The command that serves ``name``'s champion over REST on this machine."""
    return f'mlflow models serve -m "models:/{name}@{CHAMPION}" --env-manager local -h 127.0.0.1 -p {port}'


# Outcomes of register.
PROMOTED = "promoted"
REJECTED = "rejected"
# Passed evaluation, but the champion it was compared with is no longer the champion.
STALE = "not promoted"
# The champion already is this very model (registered again, e.g. by a forced re-run).
ALREADY = "already champion"

# The store-wide lease on alias changes (see registry_lease). A change takes well under a second,
# but one slow request may take MLflow's request timeout (120 s by default), so a lease is stale
# only when seen unchanged for longer than that; a waiter gives up a minute later.
LEASE_SUFFIX = ".alias-lock"
LEASE_DESCRIPTION = "Exists only while a pipeline changes the champion/challenger aliases of {name}; deleted within a second."
STALE_LEASE_SECONDS = 180.0
LEASE_WAIT_SECONDS = 240.0
LEASE_POLL_SECONDS = 0.2
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")
_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")


class RegistrySettings(BaseModel):
    """The ``registry`` section: the registered model's name."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    model_name: str

    @field_validator("model_name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not name.strip() or name != name.strip():
            raise ValueError(f"must be a non-empty name without surrounding spaces, got {name!r}")
        if any(c in name for c in "/:%"):
            raise ValueError(f"must not contain '/', ':' or '%', got {name!r}")
        if any(c in name for c in "'\"`\\"):
            # The registry is searched by name (name = '...'), and MLflow's filter strings cannot escape these.
            raise ValueError(f"must not contain quotes or backslashes, got {name!r}")
        return name


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
        # A server with authentication answers 403 for a model that does not exist yet, as for
        # one the user may not read; only a search tells them apart.
        if exc.error_code == "PERMISSION_DENIED" and not client.search_registered_models(f"name = '{name}'"):
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
    return [v for v in versions if holds_model(v, model_uri) and VersionTag.ROLLED_BACK_AT in v.tags]


# A logged model's own file: it exists exactly when the model's files do.
MLMODEL_FILE = "MLmodel"
ARCHIVED_STAGE = "Archived"
# Former champions without files named in one message at most (a tag or a -P value has a limit).
SHOWN_PASSED_OVER = 3


def has_model_files(client: MlflowClient, model_uri: str) -> bool:
    """Whether the MLmodel file of ``model_uri`` (``models:/<model id>`` or ``runs:/<run>/<path>``) still exists.

    One listing, no download: a store whose artifacts were deleted still has the model's row.
    Any other kind of URI is taken to exist (nothing cheap tells).
    """
    try:
        if model_uri.startswith("models:/m-"):
            files = client.list_logged_model_artifacts(model_uri.removeprefix("models:/"))
        elif model_uri.startswith("runs:/"):
            run_id, _, path = model_uri.removeprefix("runs:/").partition("/")
            files = client.list_artifacts(run_id, path or None)
        else:
            return True
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return any(Path(f.path).name == MLMODEL_FILE for f in files)


def missing_files(client: MlflowClient, version: ModelVersion) -> str | None:
    """Where the files of registered ``version`` should be, when they are gone; None while they exist."""
    if has_model_files(client, version.source or ""):
        return None
    try:
        return client.get_model_version_download_uri(version.name, str(version.version))
    except MlflowException:
        return version.source or "an unknown location"


def became_champion_at(version: ModelVersion) -> str:
    """When ``version`` last became champion (promoted, or made champion again by a rollback); "" if never.

    Both tags hold ISO times in UTC written by :func:`now`, so they compare as text.
    """
    return max(version.tags.get(VersionTag.PROMOTED_AT, ""), version.tags.get(VersionTag.RESTORED_AT, ""))


def demoted_by_rollback(version: ModelVersion) -> bool:
    """Whether a rollback took the champion away from ``version`` after it last became champion."""
    rolled_back = version.tags.get(VersionTag.ROLLED_BACK_AT, "")
    return bool(rolled_back) and rolled_back >= became_champion_at(version)


def _history_key(version: ModelVersion) -> tuple[str, int]:
    # Times have one-second resolution: on a tie, the higher version came later.
    return became_champion_at(version), int(version.version)


def former_champions(versions: Iterable[ModelVersion], *, before: ModelVersion | None = None) -> list[ModelVersion]:
    """Versions that were champion and were not demoted by a rollback since, newest first.

    With ``before``: only those that became champion before ``before`` was promoted (the ones
    it may have replaced).
    """
    formers = [v for v in versions if became_champion_at(v) and not demoted_by_rollback(v)]
    if before is not None:
        limit = (before.tags.get(VersionTag.PROMOTED_AT, became_champion_at(before)), int(before.version))
        formers = [v for v in formers if str(v.version) != str(before.version) and _history_key(v) < limit]
    return sorted(formers, key=_history_key, reverse=True)


@dataclass(frozen=True)
class Survivor:
    """The first of some former champions whose files exist, and what was passed over on the way."""

    version: ModelVersion | None
    passed_over: tuple[str, ...] = ()  # "version 2: its files are gone from <location>"

    @property
    def gone(self) -> str:
        """`` (version 2: its files are gone from ...)`` for messages, the first few only; "" when none was passed over."""
        if not self.passed_over:
            return ""
        more = len(self.passed_over) - SHOWN_PASSED_OVER
        listed = "; ".join(self.passed_over[:SHOWN_PASSED_OVER]) + (f"; and {more} more" if more > 0 else "")
        return f" ({listed})"

    @property
    def archived(self) -> str:
        """A warning when the version is in MLflow's (deprecated) Archived stage; "" otherwise."""
        if self.version is None or self.version.current_stage != ARCHIVED_STAGE:
            return ""
        return f"version {self.version.version} is in MLflow's deprecated {ARCHIVED_STAGE!r} stage; it is used all the same"


def first_surviving(candidates: Sequence[ModelVersion], missing: Callable[[ModelVersion], str | None]) -> Survivor:
    """The first of ``candidates`` (newest first) whose files exist (``missing(v)`` is None)."""
    passed_over = []
    for version in candidates:
        location = missing(version)
        if location is None:
            return Survivor(version, tuple(passed_over))
        passed_over.append(f"version {version.version}: its files are gone from {location}")
    return Survivor(None, tuple(passed_over))


def versions_of(client: MlflowClient, name: str) -> list[ModelVersion]:
    return client.search_model_versions(f"name = '{name}'")


@dataclass(frozen=True)
class ChampionChoice:
    """What a candidate is compared with: the champion alias's version or, without the alias, the
    newest surviving former champion (a deleted champion version takes its alias with it)."""

    version: ModelVersion | None
    by_alias: bool = False
    history: bool = False  # without the alias: some version was champion before
    survivor: Survivor = Survivor(None)

    @property
    def number(self) -> str | None:
        return str(self.version.version) if self.version is not None else None

    @property
    def note(self) -> str:
        """What happened to the champion, in words; "" when the alias names it (or there never was one)."""
        if self.by_alias or not self.history:
            return ""
        gone = self.survivor.gone
        if self.version is None:
            return f"no champion alias, and no former champion survives{gone}: no champion to compare with"
        archived = f"; {self.survivor.archived}" if self.survivor.archived else ""
        return f"no champion alias; compared with version {self.number}, the newest surviving former champion{gone}{archived}"

    def describe(self) -> str:
        if self.version is None:
            return "no version"
        return f"version {self.number}" + ("" if self.by_alias else " (no champion alias: the newest surviving former champion)")


def current_champion(client: MlflowClient, name: str) -> ChampionChoice:
    """The champion alias's version, or without the alias the newest former champion whose files exist."""
    champion = alias_target(client, name, CHAMPION)
    if champion is not None:
        return ChampionChoice(champion, by_alias=True)
    formers = former_champions(versions_of(client, name))
    if not formers:
        return ChampionChoice(None)
    survivor = first_surviving(formers, lambda v: missing_files(client, v))
    return ChampionChoice(survivor.version, history=True, survivor=survivor)


def champion_files_gone(client: MlflowClient, champion: ModelVersion, location: str) -> InputError:
    """The one line for a champion whose files are gone: what is missing, and what to do."""
    name = champion.name
    earlier = first_surviving(
        [v for v in former_champions(versions_of(client, name)) if str(v.version) != str(champion.version)],
        lambda v: missing_files(client, v),
    )
    if earlier.version is not None:
        fix = (
            f"roll back to version {earlier.version.version}, the newest earlier champion whose files exist: "
            f"mlflow run . -e rollback -P version={earlier.version.version}"
        )
    else:
        fix = (
            "no earlier champion has its files: remove the alias with mlflow run . -e rollback -P version=none, "
            "and the next good run becomes champion"
        )
    return InputError(f"the champion of {name!r}, version {champion.version}, has lost its files (no {MLMODEL_FILE} at {location}); {fix}")


def require_files(client: MlflowClient, champion: ModelVersion) -> None:
    """Raise the one clear line when the files of ``champion`` are gone (before anything tries to load it)."""
    location = missing_files(client, champion)
    if location is not None:
        raise champion_files_gone(client, champion, location)


@dataclass(frozen=True)
class Comparison:
    """The champion version evaluate compares a candidate with (``uri``, "" for none), and why that one."""

    uri: str
    note: str = ""


def champion_to_compare(client: MlflowClient, name: str, candidate_model_uri: str) -> Comparison:
    """The champion a candidate must be compared with, pinned as ``models:/<name>/<version>``.

    No uri when there is no champion. When the champion already is the candidate model (an identical
    re-run), comparing it with itself would change evaluate's cache key and register the same
    model again; it is compared with what it was compared with when it was promoted instead, so
    the re-run's evaluation (and registration) are cache hits. Without the alias, the newest
    surviving former champion stands in (its ``note`` says so). A champion whose files are gone
    is an InputError naming what to do.
    """
    choice = current_champion(client, name)
    champion = choice.version
    if champion is None:
        return Comparison("", choice.note)
    if not choice.by_alias:
        return Comparison(RegisteredModel(name, str(champion.version)).uri, choice.note)
    require_files(client, champion)
    if not holds_model(champion, candidate_model_uri):
        return Comparison(RegisteredModel(name, str(champion.version)).uri)
    compared = champion.tags.get(VersionTag.COMPARED_WITH, NO_VERSION)
    if compared == NO_VERSION:
        return Comparison("")
    try:
        return Comparison(RegisteredModel(name, str(get_version(client, RegisteredModel(name, compared)).version)).uri)
    except InputError:
        return Comparison("")  # that version was deleted since: nothing to compare with


class RegistryBusyError(PipelineError):
    """Another process is changing the aliases of the same registered model for too long."""


def _lease_model(client: MlflowClient, lease: str) -> MlflowRegisteredModel | None:
    try:
        return client.get_registered_model(lease)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _delete_lease(client: MlflowClient, lease: str, token: str | None) -> None:
    """Delete ``lease`` if it still carries ``token`` (not a lease someone took since)."""
    current = _lease_model(client, lease)
    if current is None or current.tags.get(VersionTag.LEASE_TOKEN) != token:
        return
    try:
        client.delete_registered_model(lease)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise


@dataclass(frozen=True)
class Lease:
    """A held lease on the aliases of one registered model."""

    client: MlflowClient
    name: str  # the lease's registered model
    token: str

    def confirm(self) -> None:
        """Raise unless this lease is still ours: call before each alias change it guards."""
        current = _lease_model(self.client, self.name)
        if current is None or current.tags.get(VersionTag.LEASE_TOKEN) != self.token:
            raise RegistryBusyError(f"lost the lease {self.name!r} (broken as stale while this process was slow); nothing was changed")


@contextmanager
def registry_lease(
    client: MlflowClient, name: str, holder: str, *, wait_seconds: float = LEASE_WAIT_SECONDS, stale_seconds: float = STALE_LEASE_SECONDS
) -> Iterator[Lease]:
    """Hold the store-wide lease on changing the aliases of ``name``, for every machine.

    The lease is a registered model named ``<name>.alias-lock`` that exists only while a change
    is in progress: creating a registered model either succeeds or fails with
    RESOURCE_ALREADY_EXISTS on a SQL store and on a tracking server in front of one, the one
    atomic check-and-set the registry offers. Each lease carries a random token, so a holder
    deletes only its own lease and can :meth:`Lease.confirm` that it still holds it. A lease left
    by a process that died mid-change is broken once it has been seen unchanged for
    ``stale_seconds`` (on this machine's clock, so clock skew between machines does not matter).
    """
    lease = f"{name}{LEASE_SUFFIX}"
    token = uuid.uuid4().hex
    tags = {VersionTag.LEASE_HOLDER: holder, VersionTag.LEASE_TOKEN: token}
    deadline = time.monotonic() + wait_seconds
    seen: tuple[str | None, float] | None = None  # (the lease's token, when first seen)
    while True:
        try:
            client.create_registered_model(lease, tags=tags, description=LEASE_DESCRIPTION.format(name=name))
            break
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        current = _lease_model(client, lease)
        if current is None:
            continue  # released meanwhile: try again at once
        other, other_token = current.tags.get(VersionTag.LEASE_HOLDER, "unknown"), current.tags.get(VersionTag.LEASE_TOKEN)
        if seen is None or seen[0] != other_token:
            seen = (other_token, time.monotonic())
        elif time.monotonic() - seen[1] >= stale_seconds:
            _break(client, lease, other, other_token, stale_seconds)
            seen = None
            continue
        if time.monotonic() >= deadline:
            raise RegistryBusyError(
                f"registered model {lease!r} ({other}) has held the aliases of {name!r} for over {wait_seconds:g} s; "
                f"if no pipeline is changing them, delete that registered model"
            )
        time.sleep(LEASE_POLL_SECONDS * (1 + random.random()))  # jitter: waiters do not retry in lockstep
    try:
        yield Lease(client, lease, token)
    finally:
        try:
            _delete_lease(client, lease, token)
        except Exception as exc:
            # The change itself is done; a lease left behind is broken as stale by the next change.
            logger.warning("could not release the lease %s (%s); it will be broken after %g s", lease, describe(exc), stale_seconds)


def _break(client: MlflowClient, lease: str, holder: str, token: str | None, stale_seconds: float) -> None:
    logger.warning("breaking the alias lease %s of %s: held for over %g s, its process must have died", lease, holder, stale_seconds)
    try:
        _delete_lease(client, lease, token)
    except MlflowException as exc:
        if exc.error_code != "PERMISSION_DENIED":
            raise
        raise RegistryBusyError(
            f"registered model {lease!r} ({holder}) was left by a process that died, and this user may not delete it: "
            "its owner or an admin must delete that registered model"
        ) from None


@contextmanager
def alias_change(client: MlflowClient, name: str) -> Iterator[Lease]:
    """Check the champion and move it as one step: one process at a time, on any machine.

    Processes on this machine queue on a lock file first, so only one of them at a time polls the
    store-wide lease. Call :meth:`Lease.confirm` right before changing an alias.
    """
    path = registry_lock_path(mlflow.get_tracking_uri(), name)
    active = mlflow.active_run()
    holder = f"run {active.info.run_id if active else 'none'}, pid {os.getpid()} on {socket.gethostname()}"
    local = pipeline_lock(path, f"alias change of {name}", "wait", LEASE_WAIT_SECONDS, what="alias change", limit="a fixed limit")
    # A stop request waits for the change to be complete: an alias moved without its history
    # would leave nothing for rollback to walk back to.
    with local, registry_lease(client, name, holder) as lease, stop_deferred():
        yield lease


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
    client.set_model_version_tag(model.name, model.version, VersionTag.PREVIOUS_CHAMPION, previous or NO_VERSION)
    client.set_model_version_tag(model.name, model.version, VersionTag.PROMOTED_AT, now())
    for key, value in by.items():
        client.set_model_version_tag(model.name, model.version, VersionTag.PROMOTED_BY + key, value)
    change = f"{now()}: version {model.version} promoted (replacing {previous or 'no champion'})"
    client.set_registered_model_tag(model.name, VersionTag.LAST_CHANGE, change)
    logger.info("%s is now the champion (was %s)", model, previous or "none")
