"""Run or reuse one step of a pipeline run, as a child run of the driver's parent run.

``StepRunner.step(name, **parameters)`` computes the step's cache key (orchestration/cache.py).
When a FINISHED run with that key exists and its outputs are still there, the step is *reused*:
a child run marked ``pipeline.cache.reused_from`` records the reuse under this parent, and the
old run's outputs are passed on. Otherwise it runs entry point ``<name>`` with ``mlflow.run``
(synchronous, local env: the driver's environment is already the project's; the step's process
is the driver's child) and returns the outputs the step recorded. Outputs are
:class:`ArtifactRef` strings that also carry their content digest, which is how the next step's
key sees its inputs' content. What happened to each step is a :class:`StepResult`, which the
report (orchestration/report.py) turns into the summary and the card.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Param, Run, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_PROJECT_ENTRY_POINT, MLFLOW_RUN_NAME

from steps.core.conf import as_text
from steps.core.errors import ERROR_TAG, PipelineError, describe
from steps.mlflow_io.artifacts import fetch, resolve_data_uri, sha256_file
from steps.mlflow_io.contracts import MAX_TAG_LENGTH, Tag
from steps.orchestration.cache import CacheKey, cache_key, code_digest, env_digest, find_reusable_run, miss_reason, output_digests
from steps.orchestration.config import STEPS
from steps.runtime.exits import SIGNAL_TAG, signal_outcome
from steps.runtime.launch import WarmProcess, ensure_warm_process
from steps.runtime.signals import ignore_stop_signals

logger = logging.getLogger(__name__)

# The reason given to a step whose process failed without recording one (killed, out of memory).
PROCESS_FAILURE = "the step's process ended without reporting an error (killed or crashed; see its output above)"


class ArtifactRef(str):
    """An artifact URI that also knows the digest of its content (``None`` when not known yet),
    or, for a file the driver could not read, why (``problem``)."""

    digest: str | None
    problem: str | None

    def __new__(cls, uri: str, digest: str | None, problem: str | None = None) -> ArtifactRef:
        ref = super().__new__(cls, uri)
        ref.digest = digest
        ref.problem = problem
        return ref


class Unkeyed(str):
    """A parameter that changes how a step runs, never what it computes (a timeout): passed to
    the step, left out of its cache key."""


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
    outcome: str = ""  # what the step said it did (Tag.OUTCOME)

    @property
    def why(self) -> str:
        """Why it ended so when it failed or was killed (its error, without the step's name), else
        why it ran or was reused."""
        if self.status in ("FAILED", "KILLED") and self.error:
            return self.error.removeprefix(f"{self.name}: ")
        return self.reason

    @property
    def line(self) -> str:
        """The step in one line, as it ends: status, time, and what it did (else :attr:`why`)."""
        failed = self.status in ("FAILED", "KILLED")
        return f"{self.name:<10} {self.status:<8} {self.seconds:6.1f}s  {self.why if failed else self.outcome or self.why}"


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
        key[len(Tag.OUTPUT) :]: ArtifactRef(value, digests.get(key[len(Tag.OUTPUT) :]))
        for key, value in run.data.tags.items()
        if key.startswith(Tag.OUTPUT)
    }


def _split_parameters(parameters: dict[str, Any]) -> tuple[dict[str, ArtifactRef], dict[str, Any]]:
    """A step's parameters as its cache key sees them: input files (by content) and the others."""
    inputs = {k: v for k, v in parameters.items() if isinstance(v, ArtifactRef)}
    return inputs, {k: v for k, v in parameters.items() if k not in inputs and not isinstance(v, Unkeyed)}


def launched_run_id(client: MlflowClient, experiment_id: str, parent_run_id: str, name: str) -> str | None:
    """The run ``mlflow.run`` created for step ``name`` under ``parent_run_id``, if it got that far.

    Each step runs at most once per pipeline run; the records of reused steps are not it.
    """
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}' and tags.`{MLFLOW_PROJECT_ENTRY_POINT}` = '{name}'",
        max_results=10,
    )
    launched = [r for r in runs if Tag.REUSED_FROM not in r.data.tags]
    return launched[0].info.run_id if launched else None


def terminate(client: MlflowClient, run_id: str, status: str, error: str | None = None, *, force: bool = False) -> Run:
    """Mark ``run_id`` terminated unless its process (or MLflow) already did, or as ``status``
    anyway with ``force``; give it ``error`` as its reason if it recorded none (a killed
    process cannot). A run whose launcher recorded the signal that ended its process ends as that
    signal says (KILLED, or FAILED for a crash), although ``mlflow.run`` marked it FAILED."""
    run = client.get_run(run_id)
    if status == "FAILED" and SIGNAL_TAG in run.data.tags:
        status, force = signal_outcome(run.data.tags[SIGNAL_TAG])[0], True
    changed = False
    if error and ERROR_TAG not in run.data.tags:
        client.set_tag(run_id, ERROR_TAG, error[:MAX_TAG_LENGTH])
        changed = True
    if (force and run.info.status != status) or not RunStatus.is_terminated(RunStatus.from_string(run.info.status)):
        client.set_terminated(run_id, status)
        changed = True
    return client.get_run(run_id) if changed else run


@dataclass(frozen=True)
class RunOptions:
    """How this pipeline run treats the cache."""

    use_cache: bool = True
    # Steps to run; the others must be reused from the cache. None: every step may run.
    only: frozenset[str] | None = None
    # Plan only: decide reuse/run for each step, run and register nothing.
    dry_run: bool = False


class StepRunner:
    """The steps of one pipeline run, executed (or reused) in order under ``parent``."""

    def __init__(self, parent: mlflow.ActiveRun, project_dir: Path, options: RunOptions | None = None, client: MlflowClient | None = None):
        self.parent = parent
        self.project_dir = project_dir
        self.options = options or RunOptions()
        self.client = client or MlflowClient()
        self.results: list[StepResult] = []
        self.started = time.monotonic()
        self._env = env_digest(project_dir)
        self._warm: WarmProcess | None = None

    def nested(self, run: mlflow.ActiveRun) -> StepRunner:
        """A runner for steps under ``run`` (a child of this runner's parent), with the same options
        and this runner's warm process (which ``close()`` stops)."""
        self._warm = self._warm or ensure_warm_process(self.project_dir)
        return StepRunner(run, self.project_dir, self.options, self.client)

    def close(self) -> None:
        """Stop the warm process the steps ran in, if this runner started it."""
        if self._warm is not None:
            self._warm.stop()
            self._warm = None

    @property
    def experiment_id(self) -> str:
        return self.parent.info.experiment_id

    def input_file(self, uri: str, what: str, timeout: float | None = None) -> ArtifactRef:
        """A file the pipeline reads from outside (data, schema), with the digest of its content.

        An unreadable file gets the reason instead: the step that reads it fails with it, without
        starting (a download that timed out here would only time out again in the step).
        ``timeout``: seconds its download may take in all.
        """
        # A download that missed its deadline may still be writing in there: cleaning up must not fail.
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
            try:
                return ArtifactRef(uri, sha256_file(fetch(resolve_data_uri(uri), tmp, what, timeout)))
            except PipelineError as exc:
                return ArtifactRef(uri, None, problem=str(exc))

    def step(self, name: str, **parameters: Any) -> dict[str, ArtifactRef]:
        """Reuse or run entry point ``name``; return its outputs or raise StepFailedError."""
        logger.debug("step %s", name)
        start = time.monotonic()
        inputs, params = _split_parameters(parameters)
        if problems := [v.problem for v in inputs.values() if v.problem]:
            return self._refuse(name, f"{name}: {problems[0]}", start)
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
        reason = miss_reason(self.client, self.experiment_id, name, key, unknown=unknown, forced=forced, use_cache=self.options.use_cache)
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

    def _refuse(self, name: str, problem: str, start: float) -> dict[str, ArtifactRef]:
        """Fail step ``name`` without starting it: an input it needs could not be read.

        Its run records the reason, as if the step had failed on it, so the pipeline ends as for
        any bad input (the step FAILED, nothing after it).
        """
        if self.options.dry_run:
            self._record(StepResult(name=name, run_id=None, status="PLANNED", seconds=0.0, reason=f"would fail: {problem}"))
            return _PendingOutputs(name)
        tags = {MLFLOW_PARENT_RUN_ID: self.parent.info.run_id, MLFLOW_PROJECT_ENTRY_POINT: name, ERROR_TAG: problem[:MAX_TAG_LENGTH]}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.client.set_terminated(run.info.run_id, "FAILED")
        result = StepResult(name=name, run_id=run.info.run_id, status="FAILED", seconds=time.monotonic() - start, error=problem)
        self._record(result)
        raise StepFailedError(result)

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
                Tag.REUSED_FROM: reused.info.run_id,
                Tag.REUSED_KEY: key.value,
                **{Tag.OUTPUT + k: str(v) for k, v in outputs.items()},
                **{Tag.DIGEST + k: v.digest for k, v in outputs.items() if v.digest},
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
            outcome=f"reused run {reused.info.run_id}: {reused.data.tags[Tag.OUTCOME]}" if Tag.OUTCOME in reused.data.tags else "",
        )
        self._record(result)
        return outputs

    def _run(self, name: str, parameters: dict[str, Any], key: CacheKey | None, reason: str, start: float) -> dict[str, ArtifactRef]:
        # Synchronous: MLflow starts the step's command as this process's child and waits for it
        # (asynchronous runs go through one more `mlflow run` process per step, ~3 s each).
        launch_error = None
        self._warm = self._warm or ensure_warm_process(self.project_dir)
        try:
            mlflow.run(
                str(self.project_dir),
                entry_point=name,
                parameters={k: as_text(v) for k, v in parameters.items()},
                env_manager="local",
                experiment_id=self.experiment_id,
                run_name=name,
                synchronous=True,
            )
            succeeded = True
        except KeyboardInterrupt as exc:
            # Ctrl-C or SIGTERM while the step starts or runs: MLflow stopped the step (SIGTERM),
            # which marks its run KILLED itself (steps/mlflow_io/step_run.py); MLflow then marks it FAILED.
            # The step's row says so too (a step stopped before it could record why gets this driver's reason).
            ignore_stop_signals()
            interrupted = f"{name}: interrupted ({exc or 'stopped by SIGINT'})"
            run_id = launched_run_id(self.client, self.experiment_id, self.parent.info.run_id, name)
            run = terminate(self.client, run_id, "KILLED", interrupted, force=True) if run_id is not None else None
            error = run.data.tags.get(ERROR_TAG) if run else interrupted
            seconds = time.monotonic() - start
            self._record(StepResult(name=name, run_id=run_id, status="KILLED", seconds=seconds, error=error, reason=reason))
            raise
        except MlflowException as exc:
            # The step's process exited non-zero, or MLflow refused to start it (e.g. a parameter
            # MLflow itself rejects).
            succeeded = False
            launch_error = f"{name}: {describe(exc)}"
        run_id = launched_run_id(self.client, self.experiment_id, self.parent.info.run_id, name)
        run = None
        if run_id is not None:
            launch_error = None  # the step started: its run says why it failed, if it did
            run = terminate(self.client, run_id, "FINISHED" if succeeded else "FAILED", None if succeeded else f"{name}: {PROCESS_FAILURE}")
            if key is not None:
                # The step's process has ended its run already; the key goes on it now, from the run just read.
                key = self._as_read(key, run, name, parameters)
                self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in key.tags().items()])
        result = StepResult(
            name=name,
            run_id=run_id,
            status=run.info.status if run else "FAILED",
            seconds=time.monotonic() - start,
            outputs=_outputs(run) if run else {},
            error=None if succeeded else (run.data.tags.get(ERROR_TAG) if run else launch_error),
            reason=reason,
            outcome=run.data.tags.get(Tag.OUTCOME, "") if run else "",
        )
        self._record(result)
        if not succeeded:
            raise StepFailedError(result)
        return result.outputs

    def _as_read(self, key: CacheKey, run: Run, name: str, parameters: dict[str, Any]) -> CacheKey:
        """``key`` with the digests of the inputs as the step read them (``Tag.READ_DIGEST``).

        A source that changed between the driver's read and the step's (an HTTP server serving
        new data, a file rewritten) must not leave a run keyed by content it never saw.
        """
        inputs, params = _split_parameters(parameters)
        digests = {k: run.data.tags.get(Tag.READ_DIGEST + k, v.digest) for k, v in inputs.items()}
        for changed in [k for k in inputs if digests[k] != inputs[k].digest]:
            logger.warning(
                "%s: %s changed between the driver's read and the step's (the step read content %s..., not %s... as when the "
                "cache was checked); its run is keyed by what it read",
                name,
                inputs[changed],
                digests[changed][:12],
                (inputs[changed].digest or "")[:12],
            )
        if digests == {k: v.digest for k, v in inputs.items()}:
            return key
        return cache_key(name, params, digests, key.parts["code"], key.parts["env"])

    def _record(self, result: StepResult) -> None:
        self.results.append(result)
        if self.options.dry_run:
            return
        logger.info("%s", result.line)
        mlflow.set_tags(
            {
                Tag.of_step(result.name, "run_id"): result.reused_run_id or result.run_id or "",
                Tag.of_step(result.name, "cache_hit"): str(result.cache_hit).lower(),
                Tag.of_step(result.name, "status"): result.status,
                Tag.of_step(result.name, "seconds"): f"{result.seconds:.2f}",
            }
        )

    def result(self, name: str) -> StepResult | None:
        return next((r for r in self.results if r.name == name), None)


class _PendingOutputs(dict):
    """Outputs of a step that a dry run would run: known by name, not by content yet."""

    def __init__(self, step: str):
        super().__init__()
        self.step = step

    def __missing__(self, name: str) -> ArtifactRef:
        return ArtifactRef(f"<{name} of {self.step}, not produced in a dry run>", None)
