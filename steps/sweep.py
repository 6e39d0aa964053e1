"""sweep: train and evaluate a grid of the estimator's arguments, then send the best through the gate.

``mlflow run . -e sweep -P alphas=0.01,0.1,1 -P l1_ratios=0.2,0.8`` (ElasticNet, the default
regression estimator), or for any estimator ``-P model.estimator=sklearn.tree.DecisionTreeRegressor
-P sweep.grid.max_depth=2,4,8 -P sweep.grid.criterion=squared_error,poisson``:

    ingest -> featurize                        once (reused from the cache when nothing changed)
    trial 1 (one grid point): train -> evaluate    one child run per point of the grid, each with
    trial 2 ...                                    its train and evaluate runs as its children
    best trial's model -> evaluate (against the champion) -> register

The grid is ``sweep.grid`` of conf/pipeline.yaml, one trial per combination of its values
(scikit-learn's ParameterGrid); each trial trains the configured estimator with its point's
values on top of the estimator's other arguments. A grid given with ``-P`` replaces the file's
(which is ElasticNet's) rather than adding to it; a ``-P model.params.<name>`` that the grid
also sets is refused, and so is a grid argument the estimator does not have, before any step runs.

Trials are judged by the gate's checks alone; the best by ``evaluation.metric`` (the task's
primary metric, its direction known; the earlier trial on a tie) is then evaluated against the
current champion and registered, exactly like ``main``'s candidate (without a champion that
evaluation is the trial's own, reused from the cache). Each trial run (``pipeline.kind=trial``)
carries the model's params (``model.task``, ``model.estimator``, ``model.params.<name>`` with the
swept values), the registered model's name and its evaluation's metrics, so ``-e compare`` and
the MLflow UI's chart view show them. Trials already run with the same data, code and
parameters are reused, so growing a grid only runs the new points.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import mlflow
import pandas as pd

from steps.core import ranking
from steps.core.conf import DEFAULT_CONFIG
from steps.core.errors import ConfigError
from steps.core.tasks import Metric
from steps.core.text import format_value
from steps.mlflow_io.cards import Card, log_card, run_url
from steps.mlflow_io.contracts import Kind, Tag
from steps.orchestration.config import SWEEP_PARAMETERS, PipelineConfig
from steps.orchestration.driver import Driver, drive
from steps.orchestration.report import PipelineReport
from steps.orchestration.runner import ArtifactRef, StepFailedError, StepRunner
from steps.orchestration.stages import PreparedData, compare_with, evaluate_model, prepare_data, register_model, train_model

logger = logging.getLogger(__name__)

SWEEP = Driver(
    entry_point="sweep",
    kind=Kind.SWEEP,
    title="Sweep run",
    description="Train and evaluate a grid of the estimator's arguments; the best goes through the gate and the registry.",
    parameters=SWEEP_PARAMETERS,
    unused={
        "alpha": "set the grid with -P alphas=... instead",
        "l1_ratio": "set the grid with -P l1_ratios=... instead",
        "run.steps": "only `mlflow run .` (main) uses it",
        "run.dry_run": "only `mlflow run .` (main) uses it",
    },
    # The trials take these from the grid: the parent names no value of them (best.<name> says the best's).
    overridden=lambda config: [f"model.params.{name}" for name in config.sweep.grid],
)


def value_text(value: Any) -> str:
    """A grid value as trial names and tables show it: numbers short (``0.01``, ``1``), the rest as MLflow logs it (``None``)."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass
class Trial:
    number: int
    params: dict[str, Any]  # the grid point: the estimator arguments it sets, in the grid's order
    run_id: str
    status: str = "RUNNING"
    metrics: dict[str, float] = field(default_factory=dict)
    model_uri: ArtifactRef | None = None
    reused: bool = False  # train and evaluate both reused from the cache
    passed: bool = False  # its evaluation passed the checks it was judged by

    @property
    def name(self) -> str:
        return f"trial {self.number}: " + " ".join(f"{name}={value_text(value)}" for name, value in self.params.items())


@dataclass
class Trials:
    """The sweep's trials so far, and the best one by ``metric``; a report in the sweep's summary and card."""

    size: int
    experiment_id: str
    metric: Metric  # the gate's primary metric: it chooses the best trial
    parameters: list[str]  # the swept parameters' names, in the grid's order
    trials: list[Trial] = field(default_factory=list)
    gated: bool = False  # every trial ran and the best went on to the gate

    @property
    def metrics(self) -> tuple[Metric, ...]:
        """The metrics shown for each trial: the task's, in its order."""
        return ranking.task_of(self.metric).metrics

    def best(self) -> Trial | None:
        """The finished trial with the best test score by :attr:`metric` (the earlier one on a tie).

        Trials that passed their checks (baseline, thresholds) come first: a better score that the
        gate refuses would only register a rejected model while a passing one exists.
        """
        best = None
        name = self.metric.name
        scored = [t for t in self.trials if t.status == "FINISHED" and not math.isnan(t.metrics.get(name, math.nan))]
        passed = [t for t in scored if t.passed]
        for trial in passed or scored:
            if best is None or self.metric.better(trial.metrics[name], than=best.metrics[name]):
                best = trial
        return best

    def _score(self, trial: Trial) -> str:
        return f"{self.metric.label} {format_value(trial.metrics.get(self.metric.name, math.nan))}"

    def progress(self, trial: Trial, started: float) -> str:
        """One line after each trial: its result, the best so far, time spent and left."""
        done = len(self.trials)
        elapsed = time.monotonic() - started
        left = elapsed / done * (self.size - done)
        best = self.best()
        how = " (reused)" if trial.reused else ""
        return (
            f"{trial.name} [{done}/{self.size}]: {self._score(trial)}{how}; "
            f"best so far trial {best.number if best else '-'}; {elapsed:.0f} s elapsed, ~{left:.0f} s left"
        )

    def frame(self) -> pd.DataFrame:
        """The trials as a table of runs (core/ranking.py), for the card's plots."""
        metrics = [m.name for m in self.metrics]
        rows = [
            {
                "run_id": t.run_id,
                "run_name": t.name,
                "kind": Kind.TRIAL.value,
                # None is a value of its own (max_depth=None: no limit), a category as MLflow logs it.
                **{name: "None" if value is None else value for name, value in t.params.items()},
                **{m: t.metrics.get(m) for m in metrics},
            }
            for t in self.trials
        ]
        return pd.DataFrame(rows, columns=["run_id", "run_name", "kind", *self.parameters, *metrics])

    def summary_lines(self) -> list[str]:
        best = self.best()
        over = " x ".join(self.parameters)
        lines = [f"Trials: {len(self.trials)} of {self.size} over {over} (best by test {self.metric.label} marked *)"]
        header = ["#", *self.parameters, *(m.label for m in self.metrics)]
        rows = [
            [
                str(t.number),
                *(value_text(v) for v in t.params.values()),
                *(format_value(t.metrics.get(m.name, math.nan)) for m in self.metrics),
            ]
            for t in self.trials
        ]
        widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

        def line(mark: str, cells: Sequence[str], status: str, run_id: str) -> str:
            return f"{mark} " + " ".join(cell.rjust(width) for cell, width in zip(cells, widths, strict=True)) + f"  {status:<9} {run_id}"

        lines.append(line(" ", header, "status", "trial run id"))
        for t, cells in zip(self.trials, rows, strict=True):
            lines.append(line("*" if t is best else " ", cells, "REUSED" if t.reused else t.status, t.run_id))
        if best and self.gated:
            lines.append(f"Best: {best.name}, {self._score(best)}: evaluated against the champion and registered below")
        elif best:
            lines.append(f"Best so far: {best.name}, {self._score(best)} (the sweep stopped before the gate)")
        return lines

    def add_to(self, card: Card) -> None:
        tracking_uri = mlflow.get_tracking_uri()
        best = self.best()
        card.heading(f"Trials ({len(self.trials)} of {self.size})")
        card.text(f"Over {' x '.join(self.parameters)}; the best by test {self.metric.label} ({self.metric.direction}) is marked.")
        rows = [
            {
                "trial": t.number,
                **{name: value_text(value) for name, value in t.params.items()},
                **{m.label: t.metrics.get(m.name) for m in self.metrics},
                "status": "REUSED" if t.reused else t.status,
                "best": "yes" if t is best else "",
                "run": (t.run_id, run_url(tracking_uri, self.experiment_id, t.run_id)),
            }
            for t in self.trials
        ]
        card.table(rows, links="run")
        if self.trials:
            ranked = ranking.rank(self.frame(), self.metric)
            for x, series in ranking.plot_axes(ranked, always=self.parameters):
                per = f", one series per {series}" if series else ""
                figure = ranking.metric_plot(ranked, self.metric, x, series)
                card.figure(figure, f"{self.metric.label} of each trial against {x}{per}; the star is the best")


def check_grid(config: PipelineConfig) -> None:
    """The sweep's grid against the estimator it trains: one ConfigError, before any step runs."""
    grid = config.sweep.grid
    for name in grid:
        key = f"model.params.{name}"
        if key in config.given:
            where = config.given.get(f"sweep.grid.{name}", DEFAULT_CONFIG)
            raise ConfigError(
                f"{config.given[key]}: {key} is also swept by sweep.grid.{name} ({where}): each trial takes {name} from the grid; "
                f"set it in one of them"
            )
    problems = config.sweep.problems(config.estimator)
    if not problems:
        return
    name = problems[0].split(":", 1)[0].removeprefix("sweep.grid.")
    given = config.given.get(f"sweep.grid.{name}")
    if given:
        raise ConfigError(f"{given}: {problems[0]}")
    raise ConfigError(
        f"{problems[0]}; the grid of {DEFAULT_CONFIG} is not for {config.estimator.name}: "
        f"set the grid with -P sweep.grid.<name>=v1,v2 (a grid given by -P replaces the file's)"
    )


def grid_point(config: PipelineConfig, point: Mapping[str, Any]) -> dict[str, Any]:
    """A ParameterGrid point (sorted by name) in the grid's own order."""
    return {name: point[name] for name in config.sweep.grid}


def run_trial(runner: StepRunner, config: PipelineConfig, data: PreparedData, trials: Trials, params: dict[str, Any]) -> Trial:
    """train -> evaluate (the gate's checks only) for one grid point, under a child run of its own."""
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
        model = {"model.task": config.task.name, "model.estimator": config.estimator.path}
        model |= {f"model.params.{name}": value for name, value in (config.estimator.params | params).items()}
        others = {"evaluation.metric": config.metric.short, "registry.model_name": config.registry.model_name, "trial": number}
        mlflow.log_params(model | others)
        trial.model_uri = train_model(steps, config, data, params)
        evaluate_model(steps, config, data, trial.model_uri, champion_uri="")
        trial.metrics = steps_report.evaluation_metrics()
        trial.passed = steps_report.evaluation_passed()
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
        try:
            if steps_report is not None:
                error = None if status == "FINISHED" else f"{trial.name} {status}"
                log_card(lambda: steps_report.card(f"Sweep {trial.name}", error, status))
        finally:
            mlflow.end_run(status)  # a card that cannot be written must not leave the trial's run active
    return trial


def run_sweep(runner: StepRunner, config: PipelineConfig, report: PipelineReport) -> None:
    """ingest -> featurize once; train -> evaluate per grid point; the best -> evaluate -> register."""
    if runner.options.dry_run or runner.options.only is not None:
        raise ConfigError("run.dry_run and run.steps apply to `mlflow run .` (main), not to sweep")
    check_grid(config)
    points = [grid_point(config, point) for point in config.sweep.grid_points]
    data = prepare_data(runner, config)
    trials = Trials(len(points), runner.experiment_id, config.metric, list(config.sweep.grid))
    report.reports.append(trials)
    started = time.monotonic()
    sizes = " x ".join(f"{len(values)} {name}" for name, values in config.sweep.grid.items())
    logger.info("sweep: %d trials of %s (%s), best by %s", len(points), config.estimator.name, sizes, config.metric.label)
    for params in points:
        trial = run_trial(runner, config, data, trials, params)
        logger.info("%s", trials.progress(trial, started))
    best = trials.best()
    if best is None:
        raise ConfigError(f"no trial produced a test {config.metric.label}")
    mlflow.set_tags({Tag.BEST_TRIAL: best.run_id, Tag.TRIALS: str(len(points))})
    mlflow.log_params({f"best.{name}": value for name, value in best.params.items()})
    trials.gated = True
    champion = compare_with(runner, config, best.model_uri)
    evaluation_uri = evaluate_model(runner, config, data, best.model_uri, champion_uri=champion.uri, champion_note=champion.note)
    register_model(runner, config, data, best.model_uri, evaluation_uri)


def main(argv: Sequence[str] | None = None) -> int:
    return drive(SWEEP, argv, run_sweep)


if __name__ == "__main__":
    sys.exit(main())
