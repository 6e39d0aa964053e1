"""Running steps as child runs of the pipeline's parent run, with the step cache, and the summary.

``Chain.step(name, **parameters)`` computes the step's cache key (steps/orchestration/cache.py). When a
FINISHED run with that key exists and its outputs are still there, the step is *reused*: a
child run marked ``pipeline.cache.reused_from`` records the reuse under this parent, and the
old run's outputs are passed on. Otherwise it runs entry point ``<name>`` with ``mlflow.run``
(synchronous, local env: the driver's environment is already the project's; the step's process
is the driver's child) and returns the outputs the step recorded. Outputs are :class:`ArtifactRef` strings that also
carry their content digest, which is how the next step's key sees its inputs' content.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Param, Run, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_PROJECT_ENTRY_POINT, MLFLOW_RUN_NAME

from steps.core.errors import PipelineError, describe
from steps.mlflow_io.artifacts import fetch, resolve_data_uri, sha256_file
from steps.mlflow_io.cards import CARD_FILE, Card, artifact_url, run_url, ui_url
from steps.mlflow_io.registry import (
    CHALLENGER,
    CHAMPION,
    CHAMPION_METRIC_PREFIX,
    DECISION_REASON_RUN_TAG,
    DECISION_RUN_TAG,
    PROMOTED,
    REJECTED,
    REPORTED_METRICS,
    alias_version,
)
from steps.mlflow_io.step_run import DIGEST_TAG_PREFIX, ERROR_TAG, MAX_TAG_LENGTH, OUTPUT_TAG_PREFIX
from steps.orchestration.cache import (
    REUSED_FROM_TAG,
    REUSED_KEY_TAG,
    CacheKey,
    cache_key,
    code_digest,
    env_digest,
    find_reusable_run,
    last_run_of,
    output_digests,
)
from steps.orchestration.config import STEPS
from steps.runtime.launch import WARM_SOCKET_ENV, WarmProcess
from steps.runtime.signals import ignore_stop_signals

logger = logging.getLogger(__name__)

# What a run is, for `compare` and for searches: main's parent run, a sweep's parent, one grid
# point of a sweep, a compare run.
KIND_TAG = "pipeline.kind"
PIPELINE_KIND, SWEEP_KIND, TRIAL_KIND, COMPARE_KIND = "pipeline", "sweep", "trial", "compare"
# evaluate's plot shown on the pipeline's card.
CARD_PLOT = "plots/predicted_vs_actual.png"

# The reason given to a step whose process failed without recording one (killed, out of memory).
PROCESS_FAILURE = "the step's process ended without reporting an error (killed or crashed; see its output above)"


class ArtifactRef(str):
    """An artifact URI that also knows the digest of its content (``None`` when not known yet)."""

    digest: str | None

    def __new__(cls, uri: str, digest: str | None) -> ArtifactRef:
        ref = super().__new__(cls, uri)
        ref.digest = digest
        return ref


@dataclass
class StepResult:
    name: str
    run_id: str | None
    status: str
    seconds: float
    outputs: dict[str, ArtifactRef] = field(default_factory=dict)
    error: str | None = None
    cache_hit: bool = False
    reused_run_id: str | None = None
    reason: str = ""


class ChainStopped(Exception):  # noqa: N818 - not an error: the selected steps are done
    """The remaining steps come after every step selected with ``-P steps``: nothing left to do."""


class StepFailedError(Exception):
    """A step's run did not finish; ``result.error`` says why."""

    def __init__(self, result: StepResult):
        super().__init__(result.error or f"step {result.name} {result.status}")
        self.result = result


def _outputs(run: Run) -> dict[str, ArtifactRef]:
    digests = output_digests(run)
    return {
        key[len(OUTPUT_TAG_PREFIX) :]: ArtifactRef(value, digests.get(key[len(OUTPUT_TAG_PREFIX) :]))
        for key, value in run.data.tags.items()
        if key.startswith(OUTPUT_TAG_PREFIX)
    }


class Report(Protocol):
    """More to say in a driver's summary and card than the steps' table (e.g. a sweep's trials)."""

    def summary_lines(self) -> list[str]: ...

    def add_to(self, card: Card) -> None: ...


@dataclass(frozen=True)
class RunOptions:
    """How this pipeline run treats the cache."""

    use_cache: bool = True
    # Steps to run; the others must be reused from the cache. None: every step may run.
    only: frozenset[str] | None = None
    # Plan only: decide reuse/run for each step, run and register nothing.
    dry_run: bool = False


class Chain:
    """The steps of one pipeline run, executed (or reused) in order under ``parent``."""

    def __init__(self, parent: mlflow.ActiveRun, project_dir: Path, options: RunOptions | None = None, client: MlflowClient | None = None):
        self.parent = parent
        self.project_dir = project_dir
        self.options = options or RunOptions()
        self.client = client or MlflowClient()
        self.results: list[StepResult] = []
        self.reports: list[Report] = []
        self.started = time.monotonic()
        self._env = env_digest(project_dir)
        self._warm: WarmProcess | None = None
        self._finished_runs: dict[str, Run] = {}

    def nested(self, run: mlflow.ActiveRun) -> Chain:
        """A chain for steps under ``run`` (a child of this chain's parent), with the same options
        and this chain's warm process (which ``close()`` stops)."""
        self._ensure_warm_process()
        return Chain(run, self.project_dir, self.options, self.client)

    def _ensure_warm_process(self) -> None:
        if not os.environ.get(WARM_SOCKET_ENV):
            # The driver was not started through steps/runtime/launch.py (which starts one for the whole
            # run): start the warm process now, for this step and the next.
            self._warm = WarmProcess(self.project_dir)
            os.environ[WARM_SOCKET_ENV] = self._warm.environment_value

    def close(self) -> None:
        """Stop the warm process the steps ran in, if this chain started it."""
        if self._warm is not None:
            self._warm.stop()
            self._warm = None
            os.environ.pop(WARM_SOCKET_ENV, None)

    @property
    def experiment_id(self) -> str:
        return self.parent.info.experiment_id

    def input_file(self, uri: str, what: str) -> ArtifactRef:
        """A file the pipeline reads from outside (data, schema), with the digest of its content.

        An unreadable file gets no digest: the step then runs (no cache) and reports the problem
        itself, as a FAILED step run, like any other bad input.
        """
        with tempfile.TemporaryDirectory() as tmp:
            try:
                return ArtifactRef(uri, sha256_file(fetch(resolve_data_uri(uri), tmp, what)))
            except PipelineError as exc:
                logger.warning("cannot digest %s (%s); the step will run without the cache", uri, exc)
                return ArtifactRef(uri, None)

    def step(self, name: str, **parameters: Any) -> dict[str, ArtifactRef]:
        """Reuse or run entry point ``name``; return its outputs or raise StepFailedError."""
        logger.info("=== step %s ===", name)
        start = time.monotonic()
        inputs = {k: v for k, v in parameters.items() if isinstance(v, ArtifactRef)}
        params = {k: v for k, v in parameters.items() if k not in inputs}
        unknown = [k for k, v in inputs.items() if v.digest is None]
        key = (
            None
            if unknown
            else cache_key(name, params, {k: v.digest for k, v in inputs.items()}, code_digest(name, self.project_dir), self._env)
        )

        only = self.options.only
        if only is not None and STEPS.index(name) > max(STEPS.index(s) for s in only):
            self._record(StepResult(name=name, run_id=None, status="SKIPPED", seconds=0.0, reason="after the steps selected with -P steps"))
            raise ChainStopped(name)
        forced = only is not None and name in only
        reusable = None
        if key is not None and self.options.use_cache and not forced:
            reusable = find_reusable_run(self.client, self.experiment_id, key, _outputs)
        if reusable is not None:
            return self._reuse(name, reusable, key, start)
        reason = self._why_run(name, key, unknown, forced)
        if only is not None and not forced:
            result = StepResult(name=name, run_id=None, status="MISSING", seconds=0.0, reason=reason)
            last = max(STEPS.index(s) for s in only)
            selected = ",".join(STEPS[STEPS.index(name) : last + 1])
            result.error = f"{name}: no reusable run matches this configuration ({reason}); run it first, e.g. -P steps={selected}"
            self._record(result)
            raise StepFailedError(result)
        if self.options.dry_run:
            self._record(StepResult(name=name, run_id=None, status="PLANNED", seconds=0.0, reason=reason))
            return _PendingOutputs(name)
        return self._run(name, parameters, key, reason, start)

    def _why_run(self, name: str, key: CacheKey | None, unknown: list[str], forced: bool) -> str:
        if forced:
            return "selected with -P steps"
        if key is None:
            return f"the content of its inputs ({', '.join(unknown)}) is not known yet"
        if not self.options.use_cache:
            return "use_cache=false"
        previous = last_run_of(self.client, self.experiment_id, name)
        if previous is None:
            return "no earlier run of this step"
        changed = key.changed_parts(previous)
        if changed:
            return f"{' and '.join(changed)} changed since run {previous.info.run_id}"
        return f"the outputs of run {previous.info.run_id} are gone"

    def _reuse(self, name: str, reused: Run, key: CacheKey, start: float) -> dict[str, ArtifactRef]:
        """Record, as a child of this parent, that ``reused`` stands in for this step."""
        outputs = _outputs(reused)
        run_id = None
        if not self.options.dry_run:
            # No cache-key or step tag: searches for reusable runs must find the run that did the
            # work, not an ever-growing pile of records that point at it.
            tags = {
                MLFLOW_PARENT_RUN_ID: self.parent.info.run_id,
                MLFLOW_PROJECT_ENTRY_POINT: name,
                MLFLOW_RUN_NAME: f"{name} (reused)",
                REUSED_FROM_TAG: reused.info.run_id,
                REUSED_KEY_TAG: key.value,
                **{OUTPUT_TAG_PREFIX + k: str(v) for k, v in outputs.items()},
                **{DIGEST_TAG_PREFIX + k: v.digest for k, v in outputs.items() if v.digest},
            }
            run = self.client.create_run(self.experiment_id, run_name=f"{name} (reused)", tags=tags)
            run_id = run.info.run_id
            params = [Param(k, v) for k, v in reused.data.params.items()]
            self.client.log_batch(
                run_id, params=params, tags=[RunTag("mlflow.note.content", f"Reused the outputs of run {reused.info.run_id}.")]
            )
            self.client.set_terminated(run_id, "FINISHED")
        result = StepResult(
            name=name,
            run_id=run_id,
            status="REUSED",
            seconds=time.monotonic() - start,
            outputs=outputs,
            cache_hit=True,
            reused_run_id=reused.info.run_id,
            reason=f"same cache key as run {reused.info.run_id}",
        )
        self._record(result)
        return outputs

    def _run(self, name: str, parameters: dict[str, Any], key: CacheKey | None, reason: str, start: float) -> dict[str, ArtifactRef]:
        # Synchronous: MLflow starts the step's command as this process's child and waits for it
        # (asynchronous runs go through one more `mlflow run` process per step, ~3 s each).
        launch_error = None
        self._ensure_warm_process()
        try:
            mlflow.run(
                str(self.project_dir),
                entry_point=name,
                parameters={k: str(v) for k, v in parameters.items()},
                env_manager="local",
                experiment_id=self.experiment_id,
                run_name=name,
                synchronous=True,
            )
            succeeded = True
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM while the step starts or runs: MLflow stopped the step (SIGTERM),
            # which marks its run KILLED itself (steps/mlflow_io/step_run.py); MLflow then marks it FAILED.
            ignore_stop_signals()
            run_id = self._launched_run_id(name)
            if run_id is not None:
                self._terminate(run_id, "KILLED", f"{name}: interrupted", force=True)
            raise
        except MlflowException as exc:
            # The step's process exited non-zero, or MLflow refused to start it (e.g. a parameter
            # MLflow itself rejects).
            succeeded = False
            launch_error = f"{name}: {describe(exc)}"
        run_id = self._launched_run_id(name)
        run = None
        if run_id is not None:
            launch_error = None  # the step started: its run says why it failed, if it did
            if key is not None:
                self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in key.tags().items()])
            run = self._terminate(run_id, "FINISHED" if succeeded else "FAILED", None if succeeded else f"{name}: {PROCESS_FAILURE}")
        result = StepResult(
            name=name,
            run_id=run_id,
            status=run.info.status if run else "FAILED",
            seconds=time.monotonic() - start,
            outputs=_outputs(run) if run else {},
            error=None if succeeded else (run.data.tags.get(ERROR_TAG) if run else launch_error),
            reason=reason,
        )
        self._record(result)
        if not succeeded:
            raise StepFailedError(result)
        return result.outputs

    def _launched_run_id(self, name: str) -> str | None:
        """The run ``mlflow.run`` created for step ``name`` under this parent, if it got that far.

        Each step runs at most once per pipeline run; the records of reused steps are not it.
        """
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self.parent.info.run_id}' and tags.`{MLFLOW_PROJECT_ENTRY_POINT}` = '{name}'"
            ),
            max_results=10,
        )
        launched = [r for r in runs if REUSED_FROM_TAG not in r.data.tags]
        return launched[0].info.run_id if launched else None

    def _record(self, result: StepResult) -> None:
        self.results.append(result)
        if self.options.dry_run:
            return
        mlflow.set_tags(
            {
                f"pipeline.{result.name}.run_id": result.reused_run_id or result.run_id or "",
                f"pipeline.{result.name}.cache_hit": str(result.cache_hit).lower(),
                f"pipeline.{result.name}.status": result.status,
                f"pipeline.{result.name}.seconds": f"{result.seconds:.2f}",
            }
        )

    def _terminate(self, run_id: str, status: str, error: str | None = None, *, force: bool = False) -> Run:
        """Mark ``run_id`` terminated unless its process (or MLflow) already did, or as ``status``
        anyway with ``force``; give it ``error`` as its reason if it recorded none (a killed
        process cannot)."""
        run = self.client.get_run(run_id)
        changed = False
        if error and ERROR_TAG not in run.data.tags:
            self.client.set_tag(run_id, ERROR_TAG, error[:MAX_TAG_LENGTH])
            changed = True
        if (force and run.info.status != status) or not RunStatus.is_terminated(RunStatus.from_string(run.info.status)):
            self.client.set_terminated(run_id, status)
            changed = True
        return self.client.get_run(run_id) if changed else run

    def result(self, name: str) -> StepResult | None:
        return next((r for r in self.results if r.name == name), None)

    def plan(self) -> str:
        """The dry-run plan: for each step, reuse <run id> or run, with the reason."""
        lines = [f"Plan for pipeline run {self.parent.info.run_id} (dry run: nothing runs, nothing is registered)"]
        for r in self.results:
            action = f"reuse {r.reused_run_id}" if r.cache_hit else ("skip" if r.status == "SKIPPED" else "run")
            lines.append(f"  {r.name:<10} {action:<40} {r.reason}")
        return "\n".join(lines)

    def summary(self, error: str | None = None, title: str = "Pipeline run") -> str:
        """What ran or was reused, the metrics, the registered model and how to serve it."""
        status = "FAILED" if error else "FINISHED"
        elapsed = time.monotonic() - self.started
        lines = [f"{title} {self.parent.info.run_id} {status} in {elapsed:.1f} s (experiment {self.experiment_id})"]
        lines.append(f"  {'step':<10} {'run id':<34} {'status':<9} {'time':>8}  why")
        for r in self.results:
            run_id = r.reused_run_id or r.run_id or "-"
            lines.append(f"  {r.name:<10} {run_id:<34} {r.status:<9} {r.seconds:>7.1f}s  {r.reason}")
        for report in self.reports:
            lines += report.summary_lines()
        lines += self._evaluation_lines()
        register = self.result("register")
        if register and register.status in ("FINISHED", "REUSED"):
            lines += self._registration_lines(register)
        if error:
            lines.append(f"Error: {error}")
        return "\n".join(lines)

    def evaluation_metrics(self) -> dict[str, float]:
        """evaluate's test-split metrics (RMSE, MAE, R²) in this pipeline run, if it ran or was reused."""
        run = self._step_run("evaluate")
        return {name: run.data.metrics[name] for name in REPORTED_METRICS if run and name in run.data.metrics}

    def card(self, title: str, error: str | None = None, status: str = "FINISHED") -> Card:
        """The pipeline's card: each step's run (linked, with its card), the evaluation and the decision.

        ``status``: how the run ends (KILLED when interrupted); an ``error`` makes FINISHED FAILED.
        """
        tracking_uri = mlflow.get_tracking_uri()
        status = "FAILED" if error and status == "FINISHED" else status
        card = Card(title, f"run {self.parent.info.run_id} {status} in {time.monotonic() - self.started:.1f} s")
        if error:
            card.heading("Error").text(error)
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
                    "card": (CARD_FILE, artifact_url(tracking_uri, self.experiment_id, run_id)) if has_card else "-",
                    "why": r.reason,
                }
            )
        card.heading("Steps").table(rows, ["step", "status", "seconds", "run", "card", "why"], links=("run", "card"))
        card.text(f"Links open the MLflow UI at {ui_url(tracking_uri)} (start it with `mlflow ui` for a local store).", note=True)
        for report in self.reports:
            report.add_to(card)
        evaluation = self._evaluation_lines()
        if evaluation:
            card.heading("Evaluation")
            for line in evaluation:
                card.text(line)
            plot = self._evaluate_plot()
            if plot:
                card.image(plot, "Predicted vs actual on the test split (from evaluate)")
        register = self.result("register")
        if register and register.status in ("FINISHED", "REUSED"):
            card.heading("Registry")
            for line in self._registration_lines(register):
                card.text(line)
        return card

    def _evaluate_plot(self) -> bytes | None:
        run = self._step_run("evaluate")
        if run is None:
            return None
        try:
            with tempfile.TemporaryDirectory() as tmp:
                return Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=CARD_PLOT, dst_path=tmp)).read_bytes()
        except (MlflowException, OSError) as exc:
            logger.warning("the pipeline card shows no plot: cannot read %s of run %s (%s)", CARD_PLOT, run.info.run_id, exc)
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
        if run is None or DECISION_RUN_TAG not in run.data.tags:
            return None
        return run.data.tags[DECISION_RUN_TAG], run.data.tags.get(DECISION_REASON_RUN_TAG, "")

    def _evaluation_lines(self) -> list[str]:
        run = self._step_run("evaluate")
        if run is None:
            return []
        metrics, tags = run.data.metrics, run.data.tags
        line = "Evaluation (test split): " + ", ".join(
            f"{label} {metrics[key]:.4g}" for key, label in REPORTED_METRICS.items() if key in metrics
        )
        champion = [
            f"{label} {metrics[CHAMPION_METRIC_PREFIX + key]:.4g}"
            for key, label in REPORTED_METRICS.items()
            if CHAMPION_METRIC_PREFIX + key in metrics
        ]
        if champion:
            line += f"; champion version {tags.get('pipeline.evaluation.champion_version')}: {', '.join(champion)}"
        verdict = "passed" if tags.get("pipeline.evaluation.passed") == "true" else "rejected"
        return [line, f"Verdict: {verdict}: {tags.get('pipeline.evaluation.reason', '')}"]

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
            lines.append(f"Champion: none (no version of {name} has passed evaluation yet)")
            return lines
        if champion == version:
            note = " (this run's model)"
        elif decision and decision[0] == PROMOTED:
            note = f" (version {version} was promoted then, and has been replaced or rolled back since)"
        else:
            note = ""
        lines.append(f"Champion: {name} version {champion}{note}")
        lines.append(f'Serve it:   mlflow models serve -m "models:/{name}@{CHAMPION}" --env-manager local -h 127.0.0.1 -p 5000')
        return lines


class _PendingOutputs(dict):
    """Outputs of a step that a dry run would run: known by name, not by content yet."""

    def __init__(self, step: str):
        super().__init__()
        self.step = step

    def __missing__(self, name: str) -> ArtifactRef:
        return ArtifactRef(f"<{name} of {self.step}, not produced in a dry run>", None)
