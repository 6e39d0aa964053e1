"""rollback: point ``champion`` back at the previous champion (or at ``--version``).

``mlflow run . -e rollback -P reason="..."`` undoes the last promotion: the champion goes back to
the version the current one replaced (its ``champion.previous`` tag), so repeated rollbacks walk
back one promotion at a time; when that version was deleted or its files are gone, it walks
further back, to the newest earlier champion that survives. Without a champion alias (a deleted
champion version takes its alias with it), the newest surviving former champion becomes champion
again. ``-P version=N`` picks the version instead; it must have passed evaluation and still have
its files. ``-P version=none`` removes the alias (e.g. the champion's files are gone and no
earlier champion has its own): the next candidate that passes becomes champion. The run records
who rolled back what and why, and so does the demoted version.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.utils.mlflow_tags import MLFLOW_USER

from steps.core.errors import InputError
from steps.mlflow_io.champions import (
    MLMODEL_FILE,
    Survivor,
    current_champion,
    first_surviving,
    former_champions,
    missing_files,
    versions_of,
)
from steps.mlflow_io.contracts import MAX_TAG_LENGTH, NO_VERSION, Tag, VersionTag
from steps.mlflow_io.registry import CHAMPION, RegisteredModel, RegistrySettings, alias_change, alias_target, get_version, now
from steps.mlflow_io.step_run import add_settings, run_step, settings, step_parser

logger = logging.getLogger(__name__)

# -P version=none: remove the champion alias instead of moving it.
REMOVE = NO_VERSION


@dataclass(frozen=True)
class RollbackOutputs:
    demoted: RegisteredModel | None  # None: there was no champion alias
    champion: RegisteredModel | None  # None: the alias was removed
    notes: tuple[str, ...] = ()  # what rollback had to work around, in words


def _newest_former(client: MlflowClient, name: str) -> tuple[RegisteredModel, list[str]]:
    """Without the alias: the newest former champion that survives."""
    choice = current_champion(client, name)
    survivor = choice.survivor
    if not choice.history:
        raise InputError(f"registered model {name!r} has no champion: nothing to roll back")
    if survivor.version is None:
        raise InputError(
            f"registered model {name!r} has no champion alias, and no former champion survives{survivor.gone}: "
            "nothing to roll back to; pass -P version=<N>"
        )
    number = str(survivor.version.version)
    return RegisteredModel(name, number), [
        f"no champion alias: making version {number}, the newest surviving former champion, champion again{survivor.gone}"
    ]


def _previous(client: MlflowClient, champion: ModelVersion) -> tuple[RegisteredModel, list[str]]:
    """The version ``champion`` replaced or, when that one is gone, the newest earlier champion that survives."""
    current = RegisteredModel(champion.name, str(champion.version))
    previous = champion.tags.get(VersionTag.PREVIOUS_CHAMPION, NO_VERSION)
    if previous == NO_VERSION:
        raise InputError(f"{current} is the first champion: there is no earlier one to roll back to; pass -P version=<N>")
    try:
        location = missing_files(client, get_version(client, RegisteredModel(current.name, previous)))
        if location is None:
            return RegisteredModel(current.name, previous), []
        why = f"version {previous}, the one version {current.version} replaced, has lost its files ({location})"
    except InputError:
        why = f"version {previous}, the one version {current.version} replaced, was deleted"
    survivor = first_surviving(former_champions(versions_of(client, current.name), before=champion), lambda v: missing_files(client, v))
    if survivor.version is None:
        raise InputError(f"{why}, and no earlier champion survives{survivor.gone}: pass -P version=<N>")
    number = str(survivor.version.version)
    return RegisteredModel(current.name, number), [
        f"{why}: rolling back further, to version {number}, the newest surviving champion before it{survivor.gone}"
    ]


def target_version(
    client: MlflowClient, name: str, champion: ModelVersion | None, requested: str | None
) -> tuple[RegisteredModel, list[str]]:
    """The version to make champion (``requested``, or the previous one), and what to warn about."""
    if requested is None:
        return _previous(client, champion) if champion is not None else _newest_former(client, name)
    if champion is not None and requested == str(champion.version):
        raise InputError(f"{RegisteredModel(name, requested)} is already the champion")
    return RegisteredModel(name, requested), []


def _check_target(client: MlflowClient, target: RegisteredModel) -> list[str]:
    """Refuse a version that did not pass evaluation or whose files are gone; a warning for an archived one."""
    version = get_version(client, target)
    if version.tags.get(VersionTag.PASSED) != "true":
        passed = version.tags.get(VersionTag.PASSED, "missing")
        raise InputError(f"{target} did not pass evaluation ({VersionTag.PASSED}={passed}): not making it the champion")
    location = missing_files(client, version)
    if location is not None:
        raise InputError(f"{target} has lost its files (no {MLMODEL_FILE} at {location}): not making it the champion")
    archived = Survivor(version).archived
    return [archived] if archived else []


def run(client: MlflowClient, model_name: str, version: str | None, reason: str, by: Mapping[str, str]) -> RollbackOutputs:
    """Move ``champion`` of ``model_name`` to ``version`` (or the previous one); remove it for ``REMOVE``."""
    with alias_change(client, model_name) as lease:
        champion = alias_target(client, model_name, CHAMPION)
        current = RegisteredModel(model_name, str(champion.version)) if champion else None
        if version == REMOVE:
            if current is None:
                raise InputError(f"registered model {model_name!r} has no champion: no alias to remove")
            target, notes = None, []
            lease.confirm()
            client.delete_registered_model_alias(model_name, CHAMPION)
            client.set_registered_model_tag(model_name, VersionTag.ALIAS_REMOVED_AT, now())
        else:
            target, notes = target_version(client, model_name, champion, version)
            notes += _check_target(client, target)
            lease.confirm()
            client.set_registered_model_alias(model_name, CHAMPION, target.version)
            client.set_model_version_tag(model_name, target.version, VersionTag.RESTORED_AT, now())
    for note in notes:
        logger.warning("%s: %s", model_name, note)
    when = now()
    if current is not None:
        demoted_tags = {"at": when, "reason": reason, **{f"by.{key}": value for key, value in by.items()}}
        for key, value in demoted_tags.items():
            client.set_model_version_tag(model_name, current.version, VersionTag.ROLLED_BACK + key, value[:MAX_TAG_LENGTH])
    before = f"version {current.version}" if current else "no champion alias"
    after = target.version if target else "no champion (alias removed)"
    client.set_registered_model_tag(
        model_name, VersionTag.LAST_CHANGE, f"{when}: rolled back from {before} to {after} ({reason})"[:MAX_TAG_LENGTH]
    )
    logger.info("champion of %s: %s -> %s (%s)", model_name, before, after, reason)
    return RollbackOutputs(demoted=current, champion=target, notes=tuple(notes))


def build_parser() -> argparse.ArgumentParser:
    parser = step_parser("rollback", __doc__, inputs=())
    add_settings(parser, "registry", model=RegistrySettings)
    parser.add_argument(
        "--version", type=str, default="", help="the version to make champion; empty: the previous champion; none: remove the alias"
    )
    parser.add_argument("--reason", type=str, default="", help="why (recorded with the rollback)")
    return parser


def parse_version(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    if text.lower() == REMOVE:
        return REMOVE
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"-P version: expected a model version number (1, 2, ...) or {REMOVE!r}, got {text!r}")
    return str(int(text))


def main(argv: Sequence[str] | None = None) -> None:
    run_step("rollback", build_parser(), _rollback, argv)


def _rollback(args: argparse.Namespace) -> dict[str, str]:
    model_name = settings(args, RegistrySettings, "registry").model_name
    version = parse_version(args.version)
    reason = args.reason.strip() or "no reason given"
    active = mlflow.active_run().info.run_id
    user = MlflowClient().get_run(active).data.tags.get(MLFLOW_USER, "unknown")
    out = run(MlflowClient(), model_name, version, reason, by={"user": user, "run_id": active})
    mlflow.set_tags(
        {
            Tag.MODEL_NAME: model_name,
            Tag.ROLLBACK + "from": out.demoted.version if out.demoted else NO_VERSION,
            Tag.ROLLBACK + "to": out.champion.version if out.champion else NO_VERSION,
            Tag.ROLLBACK + "reason": reason[:MAX_TAG_LENGTH],
            Tag.ROLLBACK + "by": user,
        }
    )
    return {"champion_uri": out.champion.uri} if out.champion else {}


if __name__ == "__main__":
    main()
