"""Running steps as child runs of the pipeline's parent run, and the end-of-run summary.

``Chain.step(name, **parameters)`` launches ``mlflow run <project> -e <name>`` (through
``mlflow.run``, local env: the driver's environment is already the project's), waits for it,
and returns the URIs the step recorded as outputs, ready to pass to the next step.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Run, RunStatus
from mlflow.exceptions import MlflowException

from steps.cli import ERROR_TAG, OUTPUT_TAG_PREFIX

logger = logging.getLogger(__name__)


@dataclass
class StepResult:
    name: str
    run_id: str | None
    status: str
    seconds: float
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None


class StepFailedError(Exception):
    """A step's run did not finish; ``result.error`` says why."""

    def __init__(self, result: StepResult):
        super().__init__(result.error or f"step {result.name} {result.status}")
        self.result = result


def _outputs(run: Run) -> dict[str, str]:
    return {key[len(OUTPUT_TAG_PREFIX) :]: value for key, value in run.data.tags.items() if key.startswith(OUTPUT_TAG_PREFIX)}


class Chain:
    """The steps of one pipeline run, executed in order under ``parent``."""

    def __init__(self, parent: mlflow.ActiveRun, project_dir: Path, client: MlflowClient | None = None):
        self.parent = parent
        self.project_dir = project_dir
        self.client = client or MlflowClient()
        self.results: list[StepResult] = []
        self.started = time.monotonic()

    def step(self, name: str, **parameters: Any) -> dict[str, str]:
        """Run entry point ``name`` as a child run; return its outputs or raise StepFailedError."""
        logger.info("=== step %s ===", name)
        start = time.monotonic()
        run_id = None
        try:
            submitted = mlflow.run(
                str(self.project_dir),
                entry_point=name,
                parameters={key: str(value) for key, value in parameters.items()},
                env_manager="local",
                experiment_id=self.parent.info.experiment_id,
                run_name=name,
                synchronous=False,
            )
            run_id = submitted.run_id
            try:
                succeeded = submitted.wait()
            except KeyboardInterrupt:
                submitted.cancel()
                self._terminate(run_id, "KILLED")
                raise
        except MlflowException as exc:
            # mlflow.run refused to start the step (e.g. a parameter MLflow itself rejects).
            succeeded = False
            launch_error = f"{name}: {str(exc).splitlines()[0]}"
        else:
            launch_error = None
        run = self._terminate(run_id, "FINISHED" if succeeded else "FAILED") if run_id else None
        status = run.info.status if run else "FAILED"
        error = launch_error
        if run and not succeeded:
            error = run.data.tags.get(ERROR_TAG) or f"{name}: the step's process failed (see its output above)"
        result = StepResult(
            name=name, run_id=run_id, status=status, seconds=time.monotonic() - start, outputs=_outputs(run) if run else {}, error=error
        )
        self.results.append(result)
        mlflow.set_tags({f"pipeline.{name}.run_id": run_id or "", f"pipeline.{name}.status": status})
        if not succeeded:
            raise StepFailedError(result)
        return result.outputs

    def _terminate(self, run_id: str, status: str) -> Run:
        """Mark ``run_id`` terminated unless its process already did (e.g. it was killed)."""
        run = self.client.get_run(run_id)
        if not RunStatus.is_terminated(RunStatus.from_string(run.info.status)):
            self.client.set_terminated(run_id, status)
            run = self.client.get_run(run_id)
        return run

    def result(self, name: str) -> StepResult | None:
        return next((r for r in self.results if r.name == name), None)

    def summary(self, error: str | None = None) -> str:
        """What ran, how it went, the metrics, the registered model and how to serve it."""
        status = "FAILED" if error else "FINISHED"
        elapsed = time.monotonic() - self.started
        lines = [f"Pipeline run {self.parent.info.run_id} {status} in {elapsed:.1f} s (experiment {self.parent.info.experiment_id})"]
        lines.append(f"  {'step':<10} {'run id':<34} {'status':<9} {'time':>8}")
        for r in self.results:
            lines.append(f"  {r.name:<10} {r.run_id or '-':<34} {r.status:<9} {r.seconds:>7.1f}s")
        evaluate = self.result("evaluate")
        if evaluate and evaluate.run_id and evaluate.status == "FINISHED":
            run = self.client.get_run(evaluate.run_id)
            metrics = run.data.metrics
            shown = ", ".join(
                f"{label} {metrics[key]:.4g}"
                for key, label in (("root_mean_squared_error", "RMSE"), ("mean_absolute_error", "MAE"), ("r2_score", "R²"))
                if key in metrics
            )
            verdict = "passed" if run.data.tags.get("pipeline.evaluation.passed") == "true" else "did not pass"
            lines.append(f"Evaluation (test split): {shown}; {verdict}: {run.data.tags.get('pipeline.evaluation.reason', '')}")
        register = self.result("register")
        if register and register.status == "FINISHED":
            name, version = register.outputs.get("model_name"), register.outputs.get("model_version")
            alias_uri = register.outputs.get("alias_uri")
            if alias_uri:
                lines.append(f"Registered: {name} version {version}, alias champion ({alias_uri})")
                lines.append(f'Serve it:   mlflow models serve -m "{alias_uri}" --env-manager local -h 127.0.0.1 -p 5000')
            else:
                lines.append(f"Registered: {name} version {version}, no alias (evaluation did not pass; the champion is unchanged)")
        if error:
            lines.append(f"Error: {error}")
        return "\n".join(lines)
