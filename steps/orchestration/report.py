"""The report of a pipeline run, built from its step results: the summary printed at the end
(and logged as ``summary.txt``), the dry-run plan, and the parent run's card.

It reads what the steps recorded (evaluate's metrics and verdict, register's decision) from their
runs, once each, and says it in a few lines: the model (its task, estimator and arguments, as the
driver logged them on its run); each step with its status, time and why it ran or was reused;
the evaluation, in the task's metrics; the registered version and the champion; how to serve it.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Protocol

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from steps.core.tasks import TASKS, Task, metric_names
from steps.core.text import format_value
from steps.mlflow_io.cards import Card, artifact_url, experiment_url, run_url, ui_url
from steps.mlflow_io.champions import current_champion, versions_of
from steps.mlflow_io.contracts import CHAMPION_METRIC_PREFIX, Artifact, Tag, VersionTag
from steps.mlflow_io.registry import CHALLENGER, CHAMPION, PROMOTED, REJECTED, SERVE_PORT, alias_version, serve_command
from steps.orchestration.runner import StepResult, StepRunner
from steps.runtime import ports

# MLflow's metric name -> its label, for the metrics of every task: a run whose task is unknown.
REPORTED_METRICS = metric_names()
# The parent run's params that say the model (logged by the driver, orchestration/config.py's flat()).
TASK_PARAM, ESTIMATOR_PARAM, MODEL_PARAM_PREFIX = "model.task", "model.estimator", "model.params."
# The test-split plot the card shows, by task: evaluate's own, or the one MLflow's classifier evaluation logs.
EVALUATE_PLOTS = {
    "regression": (Artifact.PREDICTED_VS_ACTUAL, "Predicted vs actual on the test split (from evaluate)"),
    "classification": ("confusion_matrix.png", "Confusion matrix on the test split (from evaluate)"),
}

logger = logging.getLogger(__name__)


def run_status(error: str | None, status: str) -> str:
    """The status a driver's run ends with (driver.finish): ``status``, but FAILED for a FINISHED run with an ``error``."""
    return "FAILED" if error and status == "FINISHED" else status


def step_why(result: StepResult) -> str:
    """What a step's row says after its status (:attr:`StepResult.why`)."""
    return result.why


class Report(Protocol):
    """More to say in a driver's summary and card than the steps' table (e.g. a sweep's trials)."""

    def summary_lines(self) -> list[str]: ...

    def add_to(self, card: Card) -> None: ...


class PipelineReport:
    """What a driver says about its run: built from ``runner``'s step results and the runs they name."""

    def __init__(self, runner: StepRunner, client: MlflowClient | None = None):
        self.runner = runner
        self.client = client or runner.client
        self.reports: list[Report] = []
        self._finished_runs: dict[str, Run] = {}

    @property
    def results(self) -> list[StepResult]:
        return self.runner.results

    @property
    def experiment_id(self) -> str:
        return self.runner.experiment_id

    @property
    def run_id(self) -> str:
        return self.runner.parent.info.run_id

    def result(self, name: str) -> StepResult | None:
        return self.runner.result(name)

    def plan(self) -> str:
        """The dry-run plan: for each step, reuse <run id> or run, with the reason."""
        lines = [f"Plan for pipeline run {self.run_id} (dry run: nothing runs, nothing is registered)"]
        for r in self.results:
            action = f"reuse {r.reused_run_id}" if r.cache_hit else ("skip" if r.status == "SKIPPED" else "run")
            lines.append(f"  {r.name:<10} {action:<40} {r.reason}")
        return "\n".join(lines)

    def summary(self, error: str | None = None, title: str = "Pipeline run", status: str = "FINISHED") -> str:
        """What ran or was reused, the metrics, the registered model and how to serve it (the
        error, if any, is the driver's one ``error:`` line, not repeated here).

        ``status``: how the run ends (KILLED when interrupted); an ``error`` makes FINISHED FAILED.
        """
        elapsed = time.monotonic() - self.runner.started
        lines = [f"{title} {self.run_id} {run_status(error, status)} in {elapsed:.1f} s (experiment {self.experiment_id})"]
        model = self.model_line()
        if model:
            lines.append(model)
        if self.results:
            lines.append(f"  {'step':<10} {'run id':<34} {'status':<9} {'time':>8}  why")
        for r in self.results:
            run_id = r.reused_run_id or r.run_id or "-"
            lines.append(f"  {r.name:<10} {run_id:<34} {r.status:<9} {r.seconds:>7.1f}s  {step_why(r)}")
        for report in self.reports:
            lines += report.summary_lines()
        lines += self._evaluation_lines()
        register = self.result("register")
        if register and register.status in ("FINISHED", "REUSED"):
            lines += self._registration_lines(register)
        return "\n".join(lines)

    def model_line(self) -> str | None:
        """``Model: <task>, <estimator> (<name>=<value>, ...)``, as the run's params say; None before they are logged."""
        params = self.client.get_run(self.run_id).data.params
        if TASK_PARAM not in params or ESTIMATOR_PARAM not in params:
            return None
        arguments = ", ".join(
            f"{name.removeprefix(MODEL_PARAM_PREFIX)}={params[name]}" for name in sorted(params) if name.startswith(MODEL_PARAM_PREFIX)
        )
        return f"Model: {params[TASK_PARAM]}, {params[ESTIMATOR_PARAM]}" + (f" ({arguments})" if arguments else "")

    def task(self) -> Task | None:
        """The task evaluate scored (its run's tag), else the one the run's params name; None if neither says."""
        run = self._step_run("evaluate")
        name = run.data.tags.get(Tag.TASK) if run else None
        if name is None:
            name = self.client.get_run(self.run_id).data.params.get(TASK_PARAM)
        return TASKS.get(name or "")

    def _labels(self) -> dict[str, str]:
        """MLflow's name -> label of the metrics to report: the task's, in its order (every task's when it is unknown)."""
        task = self.task()
        return {m.name: m.label for m in task.metrics} if task else REPORTED_METRICS

    def evaluation_metrics(self) -> dict[str, float]:
        """evaluate's test-split metrics in this pipeline run (its task's, in order), if it ran or was reused."""
        run = self._step_run("evaluate")
        return {name: run.data.metrics[name] for name in self._labels() if run and name in run.data.metrics}

    def evaluation_passed(self) -> bool:
        """Whether evaluate passed the candidate in this pipeline run."""
        run = self._step_run("evaluate")
        return run is not None and run.data.tags.get(Tag.PASSED) == "true"

    def card(self, title: str, error: str | None = None, status: str = "FINISHED") -> Card:
        """The pipeline's card: each step's run (linked, with its card), the evaluation and the decision.

        ``status``: how the run ends (KILLED when interrupted); an ``error`` makes FINISHED FAILED.
        """
        tracking_uri = mlflow.get_tracking_uri()
        card = Card(title, f"run {self.run_id} {run_status(error, status)} in {time.monotonic() - self.runner.started:.1f} s")
        if error:
            card.heading("Error").text(error)
        model = self.model_line()
        if model:
            card.text(model)
        rows = []
        for r in self.results:
            run_id = r.reused_run_id or r.run_id
            link = (run_id, run_url(tracking_uri, self.experiment_id, run_id)) if run_id else "-"
            has_card = run_id and r.status in ("FINISHED", "REUSED")
            rows.append(
                {
                    "step": r.name,
                    "status": r.status,
                    "seconds": round(r.seconds, 1),
                    "run": link,
                    "card": (Artifact.CARD, artifact_url(tracking_uri, self.experiment_id, run_id)) if has_card else "-",
                    "why": step_why(r),
                }
            )
        card.heading("Steps").table(rows, ["step", "status", "seconds", "run", "card", "why"], links=("run", "card"))
        card.text(f"Links open the MLflow UI at {ui_url(tracking_uri)} (start it with `mlflow ui` for a local store).", note=True)
        card.link("Every run of this experiment, steps nested under their pipeline run", experiment_url(tracking_uri, self.experiment_id))
        for report in self.reports:
            report.add_to(card)
        evaluation = self._evaluation_lines()
        if evaluation:
            card.heading("Evaluation")
            for line in evaluation:
                card.text(line)
            plot = self._evaluate_plot()
            if plot:
                card.image(*plot)
        register = self.result("register")
        if register and register.status in ("FINISHED", "REUSED"):
            card.heading("Registry")
            for line in self._registration_lines(register):
                card.text(line)
        return card

    def _evaluate_plot(self) -> tuple[bytes, str] | None:
        """evaluate's plot of the test split for the task, and its caption."""
        run, task = self._step_run("evaluate"), self.task()
        if run is None:
            return None
        artifact, caption = EVALUATE_PLOTS[task.name if task else "regression"]
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=artifact, dst_path=tmp)
                return Path(path).read_bytes(), caption
        except (MlflowException, OSError) as exc:
            logger.warning("the pipeline card shows no plot: cannot read %s of run %s (%s)", artifact, run.info.run_id, exc)
            return None

    def _step_run(self, name: str) -> Run | None:
        """The run that did step ``name``'s work in this pipeline run (reused or not), if it finished."""
        result = self.result(name)
        run_id = result and (result.reused_run_id or result.run_id)
        if not run_id or result.status not in ("FINISHED", "REUSED"):
            return None
        # Read once: the summary, the card and the parent's metrics all read the same finished runs.
        if run_id not in self._finished_runs:
            self._finished_runs[run_id] = self.client.get_run(run_id)
        return self._finished_runs[run_id]

    def decision(self) -> tuple[str, str] | None:
        """register's decision (promoted / rejected / not promoted) and its reason, if it ran."""
        run = self._step_run("register")
        if run is None or Tag.DECISION not in run.data.tags:
            return None
        return run.data.tags[Tag.DECISION], run.data.tags.get(Tag.DECISION_REASON, "")

    def _evaluation_lines(self) -> list[str]:
        run = self._step_run("evaluate")
        if run is None:
            return []
        metrics, tags, labels = run.data.metrics, run.data.tags, self._labels()
        # format_value: the verdict's rule, so a metric reads the same in both lines (inf, not the store's 1.798e+308).
        line = "Evaluation (test split): " + ", ".join(
            f"{label} {format_value(metrics[key])}" for key, label in labels.items() if key in metrics
        )
        champion = [
            f"{label} {format_value(metrics[CHAMPION_METRIC_PREFIX + key])}"
            for key, label in labels.items()
            if CHAMPION_METRIC_PREFIX + key in metrics
        ]
        if champion:
            line += f"; champion version {tags.get(Tag.COMPARED_WITH)}: {', '.join(champion)}"
        verdict = "passed" if tags.get(Tag.PASSED) == "true" else "rejected"
        return [line, f"Verdict: {verdict}: {tags.get(Tag.REASON, '')}"]

    def _no_alias(self, name: str) -> str:
        """Why there is no champion: none ever passed, or the alias went with a deleted version."""
        former = current_champion(self.client, name)
        if not former.history:
            if any(v.tags.get(VersionTag.PASSED) == "true" for v in versions_of(self.client, name)):
                return (
                    f"a version of {name} passed evaluation, but no {CHAMPION} alias is set "
                    "(removed with -e rollback -P version=none?); the next good run becomes champion"
                )
            return f"no version of {name} has passed evaluation yet"
        if former.version is None:
            return f"no {CHAMPION} alias, and no former champion survives"
        return f"no {CHAMPION} alias; version {former.number}, the newest surviving former champion: mlflow run . -e rollback restores it"

    def _registration_lines(self, register: StepResult) -> list[str]:
        name, version = register.outputs.get("model_name"), register.outputs.get("model_version")
        if register.status == "REUSED":
            lines = [f"Registered: nothing new; {name} version {version} was registered by an identical run"]
        else:
            lines = [f"Registered: {name} version {version}, alias {CHALLENGER}"]
        decision = self.decision()
        if decision:
            outcome, reason = decision
            label = "Decision (then)" if register.status == "REUSED" else "Decision"
            if outcome == PROMOTED:
                lines.append(f"{label}: promoted to {CHAMPION}")
            elif outcome == REJECTED:
                lines.append(f"{label}: rejected (see the verdict above)")
            else:
                lines.append(f"{label}: {outcome}: {reason}")
        champion = alias_version(self.client, name, CHAMPION)
        if champion is None:
            lines.append(f"Champion: none ({self._no_alias(name)})")
            return lines
        if champion == version:
            note = " (this run's model)"
        elif decision and decision[0] == PROMOTED:
            note = f" (version {version} was promoted then, and has been replaced or rolled back since)"
        else:
            note = ""
        lines.append(f"Champion: {name} version {champion}{note}")
        busy = f" (port {SERVE_PORT} is in use here: a server already runs there, or pick another -p)" if ports.in_use(SERVE_PORT) else ""
        lines.append(f"Serve it:   {serve_command(name)}{busy}")
        return lines
