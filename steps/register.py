"""register: register the candidate, point ``challenger`` at it, and promote it if it passed.

Every candidate becomes a new model version with the alias ``challenger``, tagged with its
lineage (the pipeline run, the data digest, the git commit) and the verdict. ``champion`` moves
to it only when evaluation passed *and* it still beats the champion now: normally that is the
champion evaluate compared it with; when another pipeline promoted its own model in the
meantime, the candidate is compared with that champion's recorded metrics on the same test split
and promoted only if it is better (if they cannot be compared, it is not promoted and the
summary says why). The aliases move under a lease that every process using the store respects
(steps/mlflow_io/registry.py).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID, MLFLOW_USER
from pydantic import ValidationError

from steps.core import tasks
from steps.core.errors import InputError, describe
from steps.core.gate import Check, GateSettings, champion_check
from steps.mlflow_io.artifacts import load_evaluation, load_manifest
from steps.mlflow_io.cards import Card, log_card
from steps.mlflow_io.champions import current_champion
from steps.mlflow_io.contracts import MAX_TAG_LENGTH, NO_VERSION, EvaluationResult, Manifest, Tag, VersionTag
from steps.mlflow_io.registry import (
    ALREADY,
    CHALLENGER,
    CHAMPION,
    PROMOTED,
    REJECTED,
    STALE,
    RegisteredModel,
    RegistrySettings,
    alias_change,
    alias_version,
    holds_model,
    promote,
    rolled_back_versions,
    serve_command,
)
from steps.mlflow_io.step_run import add_settings, record_outcome, require_inputs, run_step, settings, step_parser

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """What evaluate decided, and which champion version it compared with (None: no champion).

    ``metrics``, ``test_digest`` and ``params`` let register re-check the candidate against a
    champion promoted while it was being evaluated.
    """

    passed: bool
    reason: str
    compared_with: str | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    test_digest: str | None = None
    params: GateSettings | None = None
    task: str = tasks.REGRESSION.name
    metric: str = ""  # MLflow's name of the metric the gate compared


@dataclass(frozen=True)
class RegisterOutputs:
    model: RegisteredModel
    decision: str
    reason: str
    champion: str | None  # the champion's version after this step
    previous_champion: str | None = None  # ... and before it
    former_champion: str | None = None  # without the alias: the former champion that stood in for it


def recheck(verdict: Verdict, champion: ModelVersion | None) -> Check | None:
    """The candidate against ``champion`` by that champion's recorded metrics, if comparable.

    Comparable when both were evaluated on the same test split (same content digest) and the
    champion's value of the gate's metric is recorded; None otherwise.
    """
    if champion is None or verdict.params is None or not verdict.test_digest or verdict.metric not in verdict.metrics:
        return None
    if champion.tags.get(VersionTag.TEST_DIGEST) != verdict.test_digest:
        return None
    try:
        recorded = float(champion.tags[VersionTag.METRIC + verdict.metric])
    except (KeyError, ValueError):
        return None
    metric = next(m for m in tasks.TASKS[verdict.task].metrics if m.name == verdict.metric)
    return champion_check(
        metric, verdict.metrics, {metric.name: recorded}, verdict.params.champion_tolerance, f"version {champion.version}"
    )


def decide(
    verdict: Verdict,
    champion: ModelVersion | None,
    *,
    champion_is_candidate: bool = False,
    rolled_back: ModelVersion | None = None,
    former: bool = False,
) -> tuple[str, str]:
    """promoted / rejected / not promoted / already champion, and why.

    ``champion`` is the champion now: the alias's version or, when ``former``, the newest
    surviving former champion that stands in for a deleted one (as evaluate was told). When it is
    not the one evaluate compared with (another pipeline promoted its model meanwhile), the
    candidate is compared with the new champion's recorded metrics on the same test split;
    without those it is not promoted.
    """
    current = str(champion.version) if champion else None
    if not verdict.passed:
        return REJECTED, verdict.reason
    if champion_is_candidate:
        return ALREADY, f"the champion, version {current}, is this same model"
    if rolled_back is not None:
        why = rolled_back.tags.get(VersionTag.ROLLED_BACK + "reason", "no reason given")
        return STALE, (
            f"version {rolled_back.version} holds this same model and was rolled back ({why}); "
            f"it is not promoted again automatically (to restore it on purpose: -e rollback -P version={rolled_back.version})"
        )
    if current == verdict.compared_with:
        return PROMOTED, verdict.reason
    return _decide_after_change(verdict, champion, former=former)


def _decide_after_change(verdict: Verdict, champion: ModelVersion | None, *, former: bool = False) -> tuple[str, str]:
    """A passed candidate whose champion changed while it was evaluated."""
    compared = f"version {verdict.compared_with}" if verdict.compared_with else "no champion"
    now = f"version {champion.version}" if champion else "no version"
    if former and champion:
        now += " (no champion alias: the newest surviving former champion)"
    changed = f"the champion changed while this run was in progress: it was compared with {compared}, but champion is now {now}"
    check = recheck(verdict, champion)
    if check is None:
        return STALE, f"{changed}; run the pipeline again to compare with it"
    if check.passed:
        return PROMOTED, f"{verdict.reason}; {changed}, and by its recorded evaluation: {check.detail}"
    return STALE, f"{changed}, which is better by its recorded evaluation: {check.detail}"


def point_challenger(client: MlflowClient, model: RegisteredModel) -> None:
    """``challenger`` goes to the newest candidate, whichever pipeline registers last."""
    current = alias_version(client, model.name, CHALLENGER)
    if current is None or int(current) < int(model.version):
        client.set_registered_model_alias(model.name, CHALLENGER, model.version)


def run(
    client: MlflowClient, model_uri: str, model_name: str, verdict: Verdict, *, tags: Mapping[str, str], by: Mapping[str, str]
) -> RegisterOutputs:
    """Register ``model_uri`` as a new version of ``model_name`` and apply the aliases."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):  # MLflow prints "Successfully registered model ..." itself
            version = mlflow.register_model(model_uri, model_name, tags=dict(tags))
    finally:
        for line in printed.getvalue().splitlines():
            routine = line.startswith(("Successfully registered model", "Created version"))
            logger.log(logging.INFO if routine else logging.WARNING, "%s", line)
    model = RegisteredModel(model_name, str(version.version))
    # Read the champion (and the rollbacks) and move the aliases as one step, as late as possible.
    with alias_change(client, model_name) as lease:
        # Without the alias (its version was deleted), the newest surviving former champion stands in, as in evaluate.
        choice = current_champion(client, model_name)
        champion = choice.version
        current = previous = choice.number if choice.by_alias else None
        rolled_back = rolled_back_versions(client, model_name, model_uri) if verdict.passed else []
        decision, reason = decide(
            verdict,
            champion,
            champion_is_candidate=choice.by_alias and champion is not None and holds_model(champion, model_uri),
            rolled_back=rolled_back[0] if rolled_back else None,
            former=not choice.by_alias,
        )
        lease.confirm()
        if decision == PROMOTED:
            # What it replaced, alias or not: rollback walks back to it.
            promote(client, model, previous=choice.number, by=by)
            current = model.version
        point_challenger(client, model)
    client.set_model_version_tag(model_name, model.version, VersionTag.DECISION, decision)
    client.set_model_version_tag(model_name, model.version, VersionTag.DECISION_REASON, reason[:MAX_TAG_LENGTH])
    former = None if choice.by_alias else choice.number
    return RegisterOutputs(model, decision, reason, champion=current, previous_champion=previous, former_champion=former)


def card(out: RegisterOutputs, verdict: Verdict, model_uri: str) -> Card:
    """The decision: what was registered, which aliases moved, and why."""
    name = out.model.name
    result = Card(f"register: {out.decision}", f"{name} version {out.model.version} <- {model_uri}")
    result.facts(
        {
            "decision": out.decision,
            "reason": out.reason,
            "evaluation": "passed" if verdict.passed else "rejected",
            "compared with champion version": verdict.compared_with or NO_VERSION,
            "registered": f"{name} version {out.model.version}",
            f"{CHALLENGER} ->": f"version {out.model.version}",
            f"{CHAMPION} before": _before(out),
            f"{CHAMPION} after": f"version {out.champion}" if out.champion else "none",
        }
    )
    if out.champion:
        result.heading("Serve the champion")
        result.code(serve_command(name))
    return result


def _before(out: RegisterOutputs) -> str:
    if out.previous_champion:
        return f"version {out.previous_champion}"
    if out.former_champion:
        return f"none (no alias; version {out.former_champion}, the newest surviving former champion, stood in)"
    return "none"


def lineage_tags(run_tags: Mapping[str, str], manifest: Manifest, evaluation: EvaluationResult, estimator: str) -> dict[str, str]:
    """Tags that tie a model version to the run, data, code, model and verdict that produced it."""
    task = tasks.TASKS[evaluation.task]
    return {
        VersionTag.PIPELINE_RUN: run_tags.get(MLFLOW_PARENT_RUN_ID, "none (register ran on its own)"),
        VersionTag.DATA_SOURCE: manifest.source,
        VersionTag.DATA_DIGEST: manifest.digest,
        VersionTag.GIT_COMMIT: run_tags.get(MLFLOW_GIT_COMMIT, "unknown (not run from a git checkout)"),
        VersionTag.PASSED: str(evaluation.passed).lower(),
        VersionTag.REASON: evaluation.reason[:MAX_TAG_LENGTH],
        # Full precision: register compares a later candidate with these (see recheck).
        **{VersionTag.METRIC + m.name: repr(float(evaluation.metrics[m.name])) for m in task.metrics if m.name in evaluation.metrics},
        VersionTag.PRIMARY_METRIC: evaluation.metric,
        VersionTag.TEST_DIGEST: evaluation.test_digest or "unknown",
        VersionTag.TASK: task.name,
        VersionTag.TARGET: manifest.data_schema("manifest").target,
        VersionTag.ESTIMATOR: estimator,
    }


# Artifact URIs this step reads, produced by upstream steps.
INPUTS = ("model_uri", "evaluation_uri", "manifest_uri")


def build_parser() -> argparse.ArgumentParser:
    parser = step_parser("register", __doc__, INPUTS)
    add_settings(parser, "registry", model=RegistrySettings)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    run_step("register", build_parser(), _register, argv)


def verdict_of(evaluation: EvaluationResult, evaluation_uri: str, model_uri: str, model_name: str) -> Verdict:
    """The verdict in evaluate's result, checked to be about this model and registry name."""
    if evaluation.model_uri != model_uri:
        raise InputError(f"evaluation result {evaluation_uri} is for {evaluation.model_uri}, not for {model_uri}")
    champion = evaluation.champion
    if champion and champion.model_name != model_name:
        raise InputError(
            f"evaluation result {evaluation_uri} compared with the champion of {champion.model_name!r}, "
            f"not of {model_name!r}: evaluate with -P champion_uri=models:/{model_name}@champion"
        )
    return Verdict(
        passed=evaluation.passed,
        reason=evaluation.reason,
        compared_with=champion.version if champion else None,
        metrics=evaluation.metrics,
        test_digest=evaluation.test_digest,
        params=_gate(evaluation.gate),
        task=evaluation.task,
        metric=evaluation.metric,
    )


def _gate(recorded: Mapping[str, object]) -> GateSettings | None:
    """The gate's settings recorded in result.json, if complete (they allow the re-check)."""
    try:
        return GateSettings.model_validate(dict(recorded))
    except ValidationError:
        return None


def _estimator(client: MlflowClient, model_uri: str) -> str:
    """The import path of the estimator train logged with the model (``unknown`` for a model from elsewhere)."""
    model_id = model_uri.removeprefix("models:/")
    try:
        return client.get_logged_model(model_id).params.get("estimator", "unknown") if "/" not in model_id else "unknown"
    except Exception:
        return "unknown"


def _register(args: argparse.Namespace) -> dict[str, str]:
    model_name = settings(args, RegistrySettings, "registry").model_name
    model_uri, evaluation_uri, manifest_uri = require_inputs(args, INPUTS).values()
    evaluation = load_evaluation(evaluation_uri)
    verdict = verdict_of(evaluation, evaluation_uri, model_uri, model_name)
    manifest, _ = load_manifest(manifest_uri)

    client = MlflowClient()
    active = mlflow.active_run().info.run_id
    run_tags = client.get_run(active).data.tags
    tags = lineage_tags(run_tags, manifest, evaluation, _estimator(client, model_uri)) | {
        VersionTag.COMPARED_WITH: verdict.compared_with or NO_VERSION
    }
    by = {"run_id": run_tags.get(MLFLOW_PARENT_RUN_ID, active), "user": run_tags.get(MLFLOW_USER, "unknown")}
    out = run(client, model_uri, model_name, verdict, tags=tags, by=by)
    mlflow.set_tags(
        {
            Tag.TASK: evaluation.task,
            Tag.MODEL_NAME: model_name,
            Tag.MODEL_VERSION: out.model.version,
            Tag.CHAMPION_VERSION: out.champion or NO_VERSION,
            Tag.DECISION: out.decision,
            Tag.DECISION_REASON: out.reason[:MAX_TAG_LENGTH],
        }
    )
    record_outcome(f"registered {out.model} (alias {CHALLENGER}): {out.decision}")
    try:
        log_card(lambda: card(out, verdict, model_uri))
    except Exception as exc:
        # The aliases have moved: failing now would hide a promotion that happened.
        logger.warning("no card.html for this run (the registry is already updated): %s", describe(exc))
    outputs = {"model_name": model_name, "model_version": out.model.version, "registered_model_uri": out.model.uri}
    if out.decision == PROMOTED:
        outputs["alias_uri"] = f"models:/{model_name}@{CHAMPION}"
    return outputs


if __name__ == "__main__":
    main()
