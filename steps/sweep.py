"""sweep: train and evaluate a grid of alpha x l1_ratio, then send the best through the gate.

``mlflow run . -e sweep -P alphas=0.01,0.1,1 -P l1_ratios=0.2,0.8``:

    ingest -> featurize                        once (reused from the cache when nothing changed)
    trial 1 (alpha, l1_ratio): train -> evaluate    one child run per grid point, each with its
    trial 2 ...                                     train and evaluate runs as its children
    best trial's model -> evaluate (against the champion) -> register

Trials are judged on the thresholds alone; the one with the lowest test RMSE is then evaluated
against the current champion and registered, exactly like ``main``'s candidate (without a
champion that evaluation is the trial's own, reused from the cache). Each trial run
(``pipeline.kind=trial``) carries ``model.alpha``, ``model.l1_ratio`` and evaluate's metrics, so
``-e compare`` and the MLflow UI's chart view show them. Trials already run with the same data,
code and parameters are reused, so growing a grid only runs the new points.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import mlflow
import pandas as pd

from steps.core import ranking
from steps.core.errors import ConfigError
from steps.core.tasks import R2, RMSE, metric_names

PRIMARY = RMSE
REPORTED_METRICS = metric_names()
from steps.mlflow_io.cards import Card, log_card, run_url
from steps.mlflow_io.contracts import Kind, Tag
from steps.mlflow_io.registry import champion_to_compare
from steps.orchestration.config import SWEEP_PARAMETERS, PipelineConfig
from steps.orchestration.driver import Driver, drive
from steps.orchestration.report import PipelineReport
from steps.orchestration.runner import ArtifactRef, StepFailedError, StepRunner
from steps.orchestration.stages import PreparedData, evaluate_model, prepare_data, register_model, train_model

logger = logging.getLogger(__name__)

SWEEP = Driver(
    entry_point="sweep",
    kind=Kind.SWEEP,
    title="Sweep run",
    description="Train and evaluate a grid of alpha x l1_ratio; the best goes through the gate and the registry.",
    parameters=SWEEP_PARAMETERS,
    unused={
        "model.alpha": "set the grid with -P alphas=... instead",
        "model.l1_ratio": "set the grid with -P l1_ratios=... instead",
        "run.steps": "only `mlflow run .` (main) uses it",
        "run.dry_run": "only `mlflow run .` (main) uses it",
    },
)


@dataclass
class Trial:
    number: int
    params: dict[str, float]  # the grid point: model parameters that differ from conf/pipeline.yaml
    run_id: str
    status: str = "RUNNING"
    metrics: dict[str, float] = field(default_factory=dict)
    model_uri: ArtifactRef | None = None
    reused: bool = False  # train and evaluate both reused from the cache

    @property
    def name(self) -> str:
        return f"trial {self.number}: " + " ".join(f"{name}={value:g}" for name, value in self.params.items())


@dataclass
class Trials:
    """The sweep's trials so far, and the best one; a report in the sweep's summary and card."""

    size: int
    experiment_id: str
    trials: list[Trial] = field(default_factory=list)
    gated: bool = False  # every trial ran and the best went on to the gate

    def best(self) -> Trial | None:
        """The finished trial with the best test score by the model's primary metric (the earlier one on a tie)."""
        best = None
        for trial in (t for t in self.trials if t.status == "FINISHED" and PRIMARY.name in t.metrics):
            if best is None or PRIMARY.better(trial.metrics[PRIMARY.name], than=best.metrics[PRIMARY.name]):
                best = trial
        return best

    def progress(self, trial: Trial, started: float) -> str:
        """One line after each trial: its result, the best so far, time spent and left."""
        done = len(self.trials)
        elapsed = time.monotonic() - started
        left = elapsed / done * (self.size - done)
        best = self.best()
        how = " (reused)" if trial.reused else ""
        return (
            f"{trial.name} [{done}/{self.size}]: {PRIMARY.label} {trial.metrics.get(PRIMARY.name, float('nan')):.4g}{how}; "
            f"best so far trial {best.number if best else '-'}; {elapsed:.0f} s elapsed, ~{left:.0f} s left"
        )

    def frame(self) -> pd.DataFrame:
        """The trials as rows of ``-e compare``'s table (same columns), for its plots."""
        return pd.DataFrame(
            [
                {
                    "run_id": t.run_id,
                    "run_name": t.name,
                    **t.params,
                    **{m: t.metrics.get(m) for m in REPORTED_METRICS},
                }
                for t in self.trials
            ],
            columns=["run_id", "run_name", *self.parameters(), *REPORTED_METRICS],
        ).astype({m: "float64" for m in REPORTED_METRICS})

    def parameters(self) -> list[str]:
        """The swept parameters' names, in grid order."""
        return list(self.trials[0].params) if self.trials else []

    def summary_lines(self) -> list[str]:
        best = self.best()
        lines = [f"Trials: {len(self.trials)} of {self.size} (best by test {PRIMARY.label} marked *)"]
        names = "".join(f" {name:>8}" for name in self.parameters())
        lines.append(f"  {'#':>3}{names} {'RMSE':>9} {'R²':>7}  {'status':<9} trial run id")
        for t in self.trials:
            mark = "*" if t is best else " "
            rmse, r2 = t.metrics.get(RMSE.name, float("nan")), t.metrics.get(R2.name, float("nan"))
            status = "REUSED" if t.reused else t.status
            values = "".join(f" {value:>8g}" for value in t.params.values())
            lines.append(f"{mark} {t.number:>3}{values} {rmse:>9.4g} {r2:>7.4g}  {status:<9} {t.run_id}")
        if best and self.gated:
            lines.append(
                f"Best: {best.name}, {PRIMARY.label} {best.metrics[PRIMARY.name]:.4g}: evaluated against the champion and registered below"
            )
        elif best:
            lines.append(f"Best so far: {best.name}, {PRIMARY.label} {best.metrics[PRIMARY.name]:.4g} (the sweep stopped before the gate)")
        return lines

    def add_to(self, card: Card) -> None:
        tracking_uri = mlflow.get_tracking_uri()
        best = self.best()
        card.heading(f"Trials ({len(self.trials)} of {self.size})")
        rows = [
            {
                "trial": t.number,
                **t.params,
                **{label: t.metrics.get(name) for name, label in REPORTED_METRICS.items()},
                "status": "REUSED" if t.reused else t.status,
                "best": "yes" if t is best else "",
                "run": (t.run_id, run_url(tracking_uri, self.experiment_id, t.run_id)),
            }
            for t in self.trials
        ]
        card.table(rows, links="run")
        if self.trials:
            ranked = ranking.rank(self.frame(), PRIMARY)
            for file, figure in ranking.plots(ranked, PRIMARY, always=self.parameters()).items():
                card.figure(figure, f"{PRIMARY.label} of each trial ({file.removeprefix('plots/')})")


def run_trial(runner: StepRunner, config: PipelineConfig, data: PreparedData, trials: Trials, params: dict[str, float]) -> Trial:
    """train -> evaluate (thresholds only) for one grid point, under a child run of its own."""
    number = len(trials.trials) + 1
    trial = Trial(number, params, run_id="")
    run = mlflow.start_run(nested=True, run_name=trial.name)
    status, steps, steps_report = "FAILED", None, None
    try:
        trial.run_id = run.info.run_id
        trials.trials.append(trial)
        steps = runner.nested(run)
        steps_report = PipelineReport(steps)
        mlflow.set_tag(Tag.KIND, Kind.TRIAL)
        mlflow.log_params({f"model.{name}": value for name, value in (config.model.params | params).items()} | {"trial": number})
        trial.model_uri = train_model(steps, config, data, params)
        evaluate_model(steps, config, data, trial.model_uri, champion_uri="")
        trial.metrics = steps_report.evaluation_metrics()
        trial.reused = all(r.cache_hit for r in steps.results)
        mlflow.log_metrics(trial.metrics)
        status = "FINISHED"
    except StepFailedError as exc:
        exc.result.error = f"{trial.name}: {exc.result.error}"
        raise StepFailedError(exc.result) from None
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        trial.status = status
        if steps_report is not None:
            error = None if status == "FINISHED" else f"{trial.name} {status}"
            log_card(lambda: steps_report.card(f"Sweep {trial.name}", error, status))
        mlflow.end_run(status)
    return trial


def run_sweep(runner: StepRunner, config: PipelineConfig, report: PipelineReport) -> None:
    """ingest -> featurize once; train -> evaluate per grid point; the best -> evaluate -> register."""
    if runner.options.dry_run or runner.options.only is not None:
        raise ConfigError("run.dry_run and run.steps apply to `mlflow run .` (main), not to sweep")
    data = prepare_data(runner, config)
    grid = config.sweep.grid
    trials = Trials(len(grid), runner.experiment_id)
    report.reports.append(trials)
    started = time.monotonic()
    logger.info("sweep: %d trials (%d alphas x %d l1_ratios)", len(grid), len(config.sweep.alphas), len(config.sweep.l1_ratios))
    for params in grid:
        trial = run_trial(runner, config, data, trials, params)
        logger.info("%s", trials.progress(trial, started))
    best = trials.best()
    if best is None:
        raise ConfigError(f"no trial produced a test {PRIMARY.label}")
    mlflow.set_tags({Tag.BEST_TRIAL: best.run_id, Tag.TRIALS: str(len(grid))})
    mlflow.log_params({f"best.{name}": value for name, value in best.params.items()})
    trials.gated = True
    champion_uri = champion_to_compare(runner.client, config.registry.model_name, best.model_uri)
    evaluation_uri = evaluate_model(runner, config, data, best.model_uri, champion_uri=champion_uri)
    register_model(runner, config, data, best.model_uri, evaluation_uri)


def main(argv: Sequence[str] | None = None) -> int:
    return drive(SWEEP, argv, run_sweep)


if __name__ == "__main__":
    sys.exit(main())
