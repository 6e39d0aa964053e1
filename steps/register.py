"""register: register the model version and, if evaluation passed, make it the champion.

The version is tagged with its lineage: the pipeline (parent) run, the data digest, the git
commit and the evaluation verdict. The alias ``champion`` moves only to a version that passed.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID

from steps.artifacts import load_manifest, read_json
from steps.cli import MAX_TAG_LENGTH, require_inputs, run_step, step_parser
from steps.config import RegistryConfig
from steps.errors import InputError

logger = logging.getLogger(__name__)

CHAMPION = "champion"


@dataclass(frozen=True)
class RegisterOutputs:
    version: str
    alias: str | None


def run(client: MlflowClient, model_uri: str, model_name: str, passed: bool, tags: Mapping[str, str]) -> RegisterOutputs:
    """Register ``model_uri`` under ``model_name``; point ``champion`` at it when ``passed``."""
    version = mlflow.register_model(model_uri, model_name, tags=dict(tags))
    if not passed:
        return RegisterOutputs(version=str(version.version), alias=None)
    client.set_registered_model_alias(model_name, CHAMPION, version.version)
    return RegisterOutputs(version=str(version.version), alias=CHAMPION)


def lineage_tags(run_tags: Mapping[str, str], manifest: Mapping, evaluation: Mapping) -> dict[str, str]:
    """Tags that tie a model version to the run, data, code and verdict that produced it."""
    return {
        "pipeline.run_id": run_tags.get(MLFLOW_PARENT_RUN_ID, "none (register ran on its own)"),
        "data.source": str(manifest.get("source", "")),
        "data.digest": str(manifest.get("digest", "")),
        "git.commit": run_tags.get(MLFLOW_GIT_COMMIT, "unknown (not run from a git checkout)"),
        "evaluation.passed": str(bool(evaluation["passed"])).lower(),
        "evaluation.reason": str(evaluation.get("reason", ""))[:MAX_TAG_LENGTH],
        **{
            f"evaluation.{name}": f"{value:.6g}"
            for name, value in evaluation.get("metrics", {}).items()
            if name in ("root_mean_squared_error", "mean_absolute_error", "r2_score")
        },
    }


# Artifact URIs this step reads, produced by upstream steps.
INPUTS = ("model_uri", "evaluation_uri", "manifest_uri")


def build_parser() -> argparse.ArgumentParser:
    parser = step_parser("register", __doc__, INPUTS)
    parser.add_argument("--model_name", type=str, required=True, help="registered model name")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    run_step("register", build_parser(), _register, argv)


def _register(args: argparse.Namespace) -> dict[str, str]:
    model_name = RegistryConfig(model_name=args.model_name).model_name
    model_uri, evaluation_uri, manifest_uri = require_inputs(args, INPUTS).values()
    evaluation = read_json(evaluation_uri, what="evaluation result")
    if not isinstance(evaluation, dict) or "passed" not in evaluation:
        raise InputError(f"evaluation result {evaluation_uri}: not a result written by evaluate (no 'passed')")
    if evaluation.get("model_uri") not in (None, model_uri):
        raise InputError(f"evaluation result {evaluation_uri} is for {evaluation['model_uri']}, not for {model_uri}")
    manifest, _ = load_manifest(manifest_uri)

    client = MlflowClient()
    run_tags = client.get_run(mlflow.active_run().info.run_id).data.tags
    out = run(client, model_uri, model_name, bool(evaluation["passed"]), lineage_tags(run_tags, manifest, evaluation))
    mlflow.set_tags({"pipeline.model_name": model_name, "pipeline.model_version": out.version, "pipeline.alias": out.alias or ""})
    if out.alias:
        logger.info("registered %s version %s and set alias %s", model_name, out.version, out.alias)
    else:
        logger.info(
            "registered %s version %s without alias: evaluation did not pass (%s)", model_name, out.version, evaluation.get("reason")
        )
    outputs = {"model_name": model_name, "model_version": out.version, "registered_model_uri": f"models:/{model_name}/{out.version}"}
    if out.alias:
        outputs["alias_uri"] = f"models:/{model_name}@{out.alias}"
    return outputs


if __name__ == "__main__":
    main()
