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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

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
