"""Which version a candidate is compared with, and whether a champion's files still exist.

The ``champion`` alias names the champion. Deleting its version deletes the alias, and deleting
the artifact store (``./mlruns``) leaves versions whose files are gone; neither may let a worse
model in. Without the alias, the newest *surviving* former champion (promoted or restored by a
rollback, not demoted by one since, files present) stands in, and the messages say so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from steps.core.errors import InputError
from steps.mlflow_io.contracts import NO_VERSION, VersionTag
from steps.mlflow_io.registry import CHAMPION, RegisteredModel, alias_target, get_version, holds_model

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


def current_champion(client: MlflowClient, name: str) -> ChampionChoice:
    """The champion alias's version, or without the alias the newest former champion whose files exist."""
    champion = alias_target(client, name, CHAMPION)
    if champion is not None:
        return ChampionChoice(champion, by_alias=True)
    formers = former_champions_of(client, name)
    if not formers:
        return ChampionChoice(None)
    survivor = first_surviving(formers, lambda v: missing_files(client, v))
    return ChampionChoice(survivor.version, history=True, survivor=survivor)


def former_champions_of(client: MlflowClient, name: str) -> list[ModelVersion]:
    """:func:`former_champions` of ``name`` since its alias was last removed on purpose
    (``-e rollback -P version=none``: "the next good run becomes champion")."""
    try:
        removed = client.get_registered_model(name).tags.get(VersionTag.ALIAS_REMOVED_AT, "")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return []
    return [v for v in former_champions(versions_of(client, name)) if became_champion_at(v) > removed]


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
