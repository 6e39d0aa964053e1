"""rollback: point ``champion`` back at the previous champion (or at ``--version``).

``mlflow run . -e rollback -P reason="..."`` undoes the last promotion: the champion goes back to
the version the current one replaced (its ``champion.previous`` tag), so repeated rollbacks walk
back one promotion at a time. ``-P version=N`` picks the version instead; it must have passed
evaluation. The run records who rolled back what and why, and so does the demoted version.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_USER

from steps.core.errors import InputError
from steps.mlflow_io.contracts import MAX_TAG_LENGTH, NO_VERSION, Tag, VersionTag
from steps.mlflow_io.registry import CHAMPION, RegisteredModel, RegistrySettings, alias_change, alias_version, get_version, now
from steps.mlflow_io.step_run import add_settings, run_step, settings, step_parser

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RollbackOutputs:
    demoted: RegisteredModel
    champion: RegisteredModel


def target_version(client: MlflowClient, current: RegisteredModel, requested: str | None) -> RegisteredModel:
    """The version to make champion: ``requested``, or the one ``current`` replaced."""
    if requested is None:
        previous = get_version(client, current).tags.get(VersionTag.PREVIOUS_CHAMPION, NO_VERSION)
        if previous == NO_VERSION:
            raise InputError(f"{current} is the first champion: there is no earlier one to roll back to; pass -P version=<N>")
        return RegisteredModel(current.name, previous)
    if requested == current.version:
        raise InputError(f"{current} is already the champion")
    return RegisteredModel(current.name, requested)


def run(client: MlflowClient, model_name: str, version: str | None, reason: str, by: Mapping[str, str]) -> RollbackOutputs:
    """Move ``champion`` of ``model_name`` from its current version to ``version`` (or the previous)."""
    with alias_change(client, model_name) as lease:
        current_version = alias_version(client, model_name, CHAMPION)
        if current_version is None:
            raise InputError(f"registered model {model_name!r} has no champion: nothing to roll back")
        current = RegisteredModel(model_name, current_version)
        target = target_version(client, current, version)
        target_tags = get_version(client, target).tags
        if target_tags.get(VersionTag.PASSED) != "true":
            passed = target_tags.get(VersionTag.PASSED, "missing")
            raise InputError(f"{target} did not pass evaluation ({VersionTag.PASSED}={passed}): not making it the champion")
        lease.confirm()
        client.set_registered_model_alias(model_name, CHAMPION, target.version)
    when = now()
    demoted_tags = {"at": when, "reason": reason, **{f"by.{key}": value for key, value in by.items()}}
    for key, value in demoted_tags.items():
        client.set_model_version_tag(model_name, current.version, VersionTag.ROLLED_BACK + key, value[:MAX_TAG_LENGTH])
    client.set_registered_model_tag(
        model_name,
        VersionTag.LAST_CHANGE,
        f"{when}: rolled back from version {current.version} to {target.version} ({reason})"[:MAX_TAG_LENGTH],
    )
    logger.info("champion of %s: version %s -> %s (%s)", model_name, current.version, target.version, reason)
    return RollbackOutputs(demoted=current, champion=target)


def build_parser() -> argparse.ArgumentParser:
    parser = step_parser("rollback", __doc__, inputs=())
    add_settings(parser, "registry", model=RegistrySettings)
    parser.add_argument("--version", type=str, default="", help="the version to make champion; empty: the previous champion")
    parser.add_argument("--reason", type=str, default="", help="why (recorded with the rollback)")
    return parser


def parse_version(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"-P version: expected a model version number (1, 2, ...), got {text!r}")
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
            Tag.ROLLBACK + "from": out.demoted.version,
            Tag.ROLLBACK + "to": out.champion.version,
            Tag.ROLLBACK + "reason": reason[:MAX_TAG_LENGTH],
            Tag.ROLLBACK + "by": user,
        }
    )
    return {"champion_uri": out.champion.uri}


if __name__ == "__main__":
    main()
