"""The pipeline driver: ingest -> featurize -> train -> evaluate -> register.

Run it with ``mlflow run . -P alpha=0.3``. It attaches to the run ``mlflow run`` created (the
parent), resolves the configuration (conf/pipeline.yaml plus the ``-P`` overrides), and runs each
step as a child run, handing every step the artifact URIs of its upstream steps' outputs
(steps/orchestration/stages.py):

    ingest    --train_uri, test_uri, manifest_uri-->  featurize
    featurize --transformer_uri---------------------> train      (+ train_uri, manifest_uri)
    train     --model_uri---------------------------> evaluate   (+ test_uri, manifest_uri, champion_uri)
    evaluate  --evaluation_uri----------------------> register   (+ model_uri, manifest_uri)

evaluate compares the candidate with the current champion, pinned by version (so the cache
reuses an evaluation only against the same champion); register promotes a candidate that
passed, as long as that version is still the champion.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from steps.mlflow_io.contracts import Kind
from steps.orchestration.config import MAIN_PARAMETERS, PipelineConfig
from steps.orchestration.driver import Driver, drive
from steps.orchestration.report import PipelineReport
from steps.orchestration.runner import StepRunner
from steps.orchestration.stages import compare_with, evaluate_model, prepare_data, register_model, train_model

PIPELINE = Driver(
    entry_point="main",
    kind=Kind.PIPELINE,
    title="Pipeline run",
    description="Run the whole pipeline as child runs of one parent run.",
    parameters=MAIN_PARAMETERS,
    unused={"sweep.grid": "only `mlflow run . -e sweep` uses it"},
)


def run_pipeline(runner: StepRunner, config: PipelineConfig, report: PipelineReport) -> None:
    """ingest -> featurize -> train -> evaluate (against the current champion) -> register.

    ``report`` needs nothing more than the steps' results here (a sweep adds its trials).
    """
    del report
    data = prepare_data(runner, config)
    model_uri = train_model(runner, config, data)
    # Pinned by version, so the cache reuses an evaluation only against the same champion.
    champion = compare_with(runner, config, model_uri)
    evaluation_uri = evaluate_model(runner, config, data, model_uri, champion_uri=champion.uri, champion_note=champion.note)
    register_model(runner, config, data, model_uri, evaluation_uri)


def main(argv: Sequence[str] | None = None) -> int:
    return drive(PIPELINE, argv, run_pipeline)


if __name__ == "__main__":
    sys.exit(main())
