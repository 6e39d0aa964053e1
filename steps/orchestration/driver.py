"""What the pipeline's drivers share: ``main.py`` (one pipeline run) and ``steps/sweep.py`` (a grid).

A driver attaches to the run ``mlflow run`` created (the parent), resolves the configuration
(conf/pipeline.yaml plus its entry point's ``-P`` parameters), takes the pipeline lock, and runs
its steps through a :class:`~steps.orchestration.runner.StepRunner`. Whatever happens, it prints and logs the summary
and the card, copies evaluate's metrics onto the parent, and turns every way of failing into one
``error:`` line, a FAILED (or KILLED) parent run and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import mlflow
import yaml

from steps.core.conf import PROJECT_ROOT
from steps.core.errors import ERROR_TAG, ConfigError, PipelineError, first_line
from steps.mlflow_io.cards import log_card
from steps.mlflow_io.contracts import MAX_TAG_LENGTH, Tag
from steps.mlflow_io.registry import REJECTED
from steps.mlflow_io.step_run import (
    INTERRUPTED_EXIT_STATUS,
    PARENT_RUN_ENV,
    VERBOSE_ENV,
    ArgumentParser,
    at_most_warnings,
    configure_logging,
    environment_problem,
    storage_problem,
    verbose_logging,
)
from steps.orchestration.config import PipelineConfig, load_config
from steps.orchestration.report import PipelineReport, run_status
from steps.orchestration.runner import ChainStopped, RunOptions, StepFailedError, StepRunner
from steps.runtime.lock import lock_path, pipeline_lock
from steps.runtime.signals import ignore_stop_signals, keep_killed_after_parent_exits, stop_like_ctrl_c
from steps.runtime.tracking import server_problem

logger = logging.getLogger(__name__)

# The error of an interrupted driver run (Ctrl-C, SIGTERM, or `mlflow run` died).
INTERRUPTED_PREFIX = "interrupted"

# Chooses the experiment of the run `mlflow run` creates (the parent's).
EXPERIMENT_NAME_VARIABLE = "MLFLOW_EXPERIMENT_NAME"


@dataclass(frozen=True)
class Driver:
    """One MLproject entry point that drives steps: its parameters and how its runs are labelled."""

    entry_point: str  # in MLproject, e.g. "main"
    kind: str  # the parent run's Tag.KIND, e.g. "pipeline"
    title: str  # of the parent run's card
    description: str  # of its command line
    parameters: Mapping[str, str]  # -P name -> configuration key
    # Configuration keys (or whole mappings, e.g. sweep.grid) and -P names this driver does not
    # use -> what to do instead; refused as -P values and not logged as params.
    unused: Mapping[str, str] = field(default_factory=dict)
    # Keys of the resolved configuration its runs replace (a sweep's trials take model.params.<name>
    # from the grid): not logged on the parent, where model.params.alpha=0.5 would name no trial's alpha.
    overridden: Callable[[PipelineConfig], Iterable[str]] = lambda config: ()

    @property
    def interrupted(self) -> str:
        return f"{self.entry_point}: {INTERRUPTED_PREFIX}"


def build_parser(driver: Driver) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=driver.entry_point, description=driver.description, error_type=ConfigError)
    # Values stay text here: the configuration loader types and checks them, naming the key.
    for name, key in driver.parameters.items():
        parser.add_argument(f"--{name}", type=str, default=None, help=f"overrides {key} of conf/pipeline.yaml")
    return parser


def overrides_from(args: argparse.Namespace, extra: Sequence[str], driver: Driver) -> dict[str, str]:
    """The -P values: declared parameters plus ``--section.key value`` pairs MLflow appends."""
    parameters = driver.parameters
    overrides = {name: value for name in parameters if (value := getattr(args, name)) is not None}
    shortcut = {key: name for name, key in parameters.items()}
    tokens = list(extra)
    while tokens:
        flag = tokens.pop(0)
        if not flag.startswith("--") or not tokens:
            raise ConfigError(f"unexpected argument {flag!r}: pass parameters as -P name=value")
        name = flag[2:]
        if name in shortcut:
            # Both would set the same key, and the run's params would show two different values.
            raise ConfigError(f"-P {name}: set it with -P {shortcut[name]}=... instead")
        unused = next((key for key in driver.unused if name == key or name.startswith(f"{key}.")), None)
        if unused is not None:
            raise ConfigError(f"-P {name}: not used by {driver.entry_point}; {driver.unused[unused]}")
        overrides[name] = tokens.pop(0)
    return overrides


def resolve_config(overrides: dict[str, str], driver: Driver) -> PipelineConfig:
    return load_config(overrides=overrides, parameters=driver.parameters)


def configure(driver: Driver, argv: Sequence[str] | None) -> PipelineConfig:
    """The configuration for this run: conf/pipeline.yaml plus the -P values in ``argv``."""
    args, extra = build_parser(driver).parse_known_args(argv)
    return resolve_config(overrides_from(args, extra, driver), driver)


def set_verbosity(verbose: bool) -> None:
    """One line per step and the summary, or (``verbose``, or MLFLOW_LOGGING_LEVEL=INFO or DEBUG)
    every log line of this process, its steps and MLflow."""
    if verbose or verbose_logging():
        os.environ[VERBOSE_ENV] = "1"  # the steps read it (step_run.configure_logging)
        return
    at_most_warnings(logging.getLogger("mlflow"))
    # MLflow prints "View run ... at: <url>" whenever a run on a tracking server ends (twice per step).
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"


def log_config(config: PipelineConfig, driver: Driver) -> None:
    """Log the resolved configuration on the parent run: params (the keys it uses, and each -P
    name of the driver with its value, given or not) and conf/resolved.yaml."""
    already = mlflow.get_run(mlflow.active_run().info.run_id).data.params
    flat = config.flat()
    names = {name: flat[key] for name, key in driver.parameters.items() if key in flat}
    unused, skipped = tuple(driver.unused), set(driver.overridden(config))
    skipped |= {key for key in flat | names if key.startswith(unused)}
    logged = {key: value for key, value in (flat | names).items() if key not in already and key not in skipped}
    mlflow.log_params(logged)
    mlflow.log_text(yaml.safe_dump(config.to_dict(), sort_keys=False), "conf/resolved.yaml")


def exclusive(config: PipelineConfig, parent: mlflow.ActiveRun) -> AbstractContextManager:
    """One run of this pipeline at a time on this machine (a dry run changes nothing: no lock)."""
    if config.run.dry_run:
        return nullcontext()
    path = lock_path(mlflow.get_tracking_uri(), parent.info.experiment_id, config.registry.model_name)
    return pipeline_lock(path, f"pipeline run {parent.info.run_id}", config.run.overlap, config.run.max_wait_seconds)


def prepare_step_environment(parent: mlflow.ActiveRun) -> None:
    """The environment the steps inherit: this run reports their errors; they run in its experiment.

    The steps are launched into the parent's experiment by id, and ``mlflow run`` refuses an
    experiment id together with MLFLOW_EXPERIMENT_NAME (which may have chosen the parent's).
    """
    os.environ.pop(EXPERIMENT_NAME_VARIABLE, None)
    os.environ[PARENT_RUN_ENV] = parent.info.run_id


Body = Callable[[StepRunner, PipelineConfig, PipelineReport], None]


def drive(driver: Driver, argv: Sequence[str] | None, body: Body) -> int:
    """Run ``body`` (which runs steps through the runner) as ``driver``'s parent run; the exit status."""
    configure_logging(driver.entry_point)
    stop_like_ctrl_c()
    parent = mlflow.start_run()
    mlflow.set_tag(Tag.KIND, driver.kind)
    prepare_step_environment(parent)
    runner = StepRunner(parent, PROJECT_ROOT)
    report = PipelineReport(runner)
    try:
        error, status = _run(driver, argv, body, runner, report)
    finally:
        runner.close()
    dry_run = runner.options.dry_run and not error
    summary, error = log_report(report, driver, error, status, dry_run=dry_run)
    sys.stdout.write(summary + "\n")  # the product's output, not a log line
    finish(error, status)
    if status == "KILLED":
        keep_killed_after_parent_exits(parent.info.run_id, driver.interrupted)
    return INTERRUPTED_EXIT_STATUS if status == "KILLED" else 1 if error else 0


def _run(driver: Driver, argv: Sequence[str] | None, body: Body, runner: StepRunner, report: PipelineReport) -> tuple[str | None, str]:
    """The configuration, the lock and ``body``; every way of failing as (one-line error, run status)."""
    try:
        config = configure(driver, argv)
        set_verbosity(config.run.verbose)
        log_config(config, driver)
        runner.options = RunOptions(use_cache=config.run.use_cache, only=config.run.selected_steps, dry_run=config.run.dry_run)
        with exclusive(config, runner.parent):
            body(runner, config, report)
        decision = report.decision()
        if config.run.fail_on_reject and decision and decision[0] == REJECTED:
            return f"the candidate was rejected and fail_on_reject=true: {decision[1]}", "FINISHED"
    except ChainStopped:
        pass  # -P steps selected no step after this point
    except StepFailedError as exc:
        return f"step {exc.result.name} failed: {exc}", "FINISHED"
    except PipelineError as exc:
        return f"{driver.entry_point}: {exc}", "FINISHED"
    except KeyboardInterrupt as exc:
        # Ctrl-C, SIGTERM, or `mlflow run` died: the running step was stopped; say where we were.
        ignore_stop_signals()
        return f"{driver.interrupted} ({exc or 'stopped by SIGINT'})", "KILLED"
    except BaseException as exc:
        problem = environment_problem(exc)  # a store that cannot be written, a server that refuses
        if problem is None:
            # A bug: record it and fail the parent run rather than leave it RUNNING.
            mlflow.set_tag(ERROR_TAG, f"{driver.entry_point}: {type(exc).__name__}: {first_line(exc)}"[:MAX_TAG_LENGTH])
            mlflow.end_run("FAILED")
            raise
        return f"{driver.entry_point}: {problem}", "FINISHED"
    return None, "FINISHED"


def log_report(report: PipelineReport, driver: Driver, error: str | None, status: str, *, dry_run: bool) -> tuple[str, str | None]:
    """Log the card, the evaluation's metrics and summary.txt on the parent run; the summary and the error.

    A report that cannot be written reads as a warning when something already failed; on a store
    that is full, read-only or not ours to write, it is the run's error (every write must fail
    the run), and the summary says so.
    """
    summary = report.plan() if dry_run else report.summary(error, driver.title, status)
    if not dry_run:
        try:
            # A copy of evaluate's metrics: the runs table and `compare` show them beside the params.
            mlflow.log_metrics(report.evaluation_metrics())
            log_card(lambda: report.card(driver.title, error, status))
        except Exception as exc:
            summary, error = _not_logged(exc, "the card", report=report, driver=driver, summary=summary, error=error, status=status)
    try:
        mlflow.log_text(summary + (f"\nError: {error}" if error else "") + "\n", "summary.txt")
    except Exception as exc:
        summary, error = _not_logged(exc, "summary.txt", report=report, driver=driver, summary=summary, error=error, status=status)
    return summary, error


def _not_logged(
    exc: Exception, what: str, *, report: PipelineReport, driver: Driver, summary: str, error: str | None, status: str
) -> tuple[str, str | None]:
    """The summary and the error after ``what`` could not be logged: a storage problem is the error, if there was none."""
    problem = storage_problem(exc)
    if error is None and problem is not None:
        error = f"{driver.entry_point}: {problem}"
        return report.summary(error, driver.title, status), error
    # The outcome matters more than the report.
    logger.warning("could not log %s: %s", what, problem or server_problem(exc) or first_line(exc))
    return summary, error


def finish(error: str | None, status: str) -> None:
    """Record the outcome on the parent run, and say what went wrong (one line)."""
    if error:
        sys.stderr.write(f"error: {error}\n")
    try:
        if error:
            mlflow.set_tag(ERROR_TAG, error[:MAX_TAG_LENGTH])
        mlflow.end_run(run_status(error, status))
    except Exception as exc:
        # E.g. the tracking server went away: the line above already said what happened.
        logger.warning("could not record the outcome on the parent run: %s", server_problem(exc) or first_line(exc))
