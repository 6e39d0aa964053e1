"""The thin command-line wrapper every step shares.

It attaches to the MLflow run that ``mlflow run`` created for the step, runs the step body,
records the body's outputs as run tags (``pipeline.output.<name>``) so the driver can pass them
downstream, and turns a :class:`PipelineError` into one clear line on stderr, a
``pipeline.error`` tag, a FAILED run and exit status 1; so too a failing environment: a refusing
tracking server, or a disk that is full, read-only or not ours to write (:func:`environment_problem`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import mlflow
from mlflow.utils.file_utils import get_local_path_or_none
from pydantic import BaseModel

from steps.core.conf import DEFAULT_CONFIG, Section, as_text, defaults, from_text, sample, validate
from steps.core.errors import ERROR_TAG, ConfigError, InputError, PipelineError, first_line, redact, storage_error
from steps.mlflow_io.artifacts import sha256_bytes
from steps.mlflow_io.contracts import MAX_TAG_LENGTH, STEP_OUTPUTS, LoggedArtifact, Tag
from steps.runtime.signals import ignore_stop_signals, stop_like_ctrl_c
from steps.runtime.tracking import server_problem

logger = logging.getLogger(__name__)

# The shell's convention for a process stopped by a signal (128 + SIGINT).
INTERRUPTED_EXIT_STATUS = 130
# Set by the driver (main.py) for the steps it launches: the driver reports their errors itself.
PARENT_RUN_ENV = "PIPELINE_PARENT_RUN_ID"


# Set by the driver when -P verbose=true: its steps log their INFO lines (and MLflow's) too.
VERBOSE_ENV = "PIPELINE_VERBOSE"


def configure_logging(name: str) -> None:
    """INFO lines when run alone; under a driver, which prints one line per step, only warnings
    and errors (unless -P verbose=true or MLflow's own MLFLOW_LOGGING_LEVEL asks for more)."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s", datefmt="%H:%M:%S")
    if os.environ.get(PARENT_RUN_ENV) and not verbose_logging():
        for logger_name in ("", "mlflow"):
            at_most_warnings(logging.getLogger(logger_name))


def at_most_warnings(log: logging.Logger) -> None:
    """Quieten ``log`` to warnings, never louder than it is (MLFLOW_LOGGING_LEVEL=ERROR stays ERROR)."""
    if log.getEffectiveLevel() < logging.WARNING:
        log.setLevel(logging.WARNING)


def verbose_logging() -> bool:
    """Whether the user asked for every log line: -P verbose=true, or MLFLOW_LOGGING_LEVEL=INFO (or DEBUG)."""
    return os.environ.get(VERBOSE_ENV) == "1" or os.environ.get("MLFLOW_LOGGING_LEVEL", "").upper() in ("DEBUG", "INFO")


def record_outcome(text: str) -> None:
    """What the step did, in one line: logged, and tagged for the driver's line about the step."""
    logger.info("%s", text)
    mlflow.set_tag(Tag.OUTCOME, text[:MAX_TAG_LENGTH])


# Every artifact a step can take as input: what it is and where it comes from.
STEP_INPUTS = {
    "train_uri": "the train split logged by ingest, e.g. -P train_uri=runs:/<ingest run id>/data/train.parquet",
    "test_uri": "the test split logged by ingest, e.g. -P test_uri=runs:/<ingest run id>/data/test.parquet",
    "manifest_uri": "the manifest logged by ingest, e.g. -P manifest_uri=runs:/<ingest run id>/data/manifest.json",
    "transformer_uri": (
        "the transformer logged by featurize, e.g. -P transformer_uri=runs:/<featurize run id>/transformer/preprocessor.skops"
    ),
    "model_uri": "the model logged by train, e.g. -P model_uri=models:/<model id>",
    "evaluation_uri": "the result logged by evaluate, e.g. -P evaluation_uri=runs:/<evaluate run id>/evaluation/result.json",
}


def step_parser(step: str, doc: str | None, inputs: Sequence[str]) -> argparse.ArgumentParser:
    """An argument parser for ``step`` with an optional-looking ``--<input>`` per artifact input.

    Inputs default to empty so that :func:`require_inputs` can say what is missing and where it
    comes from, instead of argparse's bare "the following arguments are required".
    """
    parser = ArgumentParser(prog=step, description=(doc or step).splitlines()[0])
    for name in inputs:
        parser.add_argument(f"--{name}", type=str, default="", help=STEP_INPUTS[name])
    return parser


def add_settings(parser: argparse.ArgumentParser, section: str, names: Mapping[str, str] | None = None, *, model: type[BaseModel]) -> None:
    """An option for each key of ``section`` of conf/pipeline.yaml, typed like ``model`` declares it.

    The file holds the defaults: an option not given keeps the file's value. ``names`` renames
    options (``{"data_uri": "uri"}``: ``--data_uri`` sets ``data.uri``). A key ``model`` does not
    declare (an estimator's argument) is read as a YAML value (``0.3``, ``true``, ``null``).
    """
    renamed = {key: option for option, key in (names or {}).items()}
    declared_keys = _declared(model)
    for key, value in defaults(section).items():
        declared = key in declared_keys
        like = sample(model, key) if declared else value
        if isinstance(like, dict) and isinstance(parser, ArgumentParser):
            parser.mapping_options.add(renamed.get(key, key))
        kind = {bool: _bool, int: int if declared else _number, float: float}.get(type(like), str)
        option = renamed.get(key, key)
        parser.add_argument(f"--{option}", dest=option, type=kind, default=None, help=f"default: {section}.{key} in {DEFAULT_CONFIG}")


def _declared(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def _number(text: str) -> int | float:
    """An estimator's argument whose default is an integer: an integer, or any number."""
    try:
        return from_text(text, 0, "", loose=True)
    except ConfigError:
        raise ValueError(text) from None


_number.__name__ = "number"  # argparse says "invalid number value: 'abc'"


def _bool(text: str) -> bool:
    try:
        return from_text(text, False, "")
    except ConfigError:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}") from None


def settings(args: argparse.Namespace, model: type[Section], section: str, names: Mapping[str, str] | None = None) -> Section:
    """``section`` of conf/pipeline.yaml with the options given in ``args``, checked by ``model``.

    The values the file supplied are logged as params of the step's run (those given are already
    there, logged by ``mlflow run``), so a run shows every value it used.
    """
    values = defaults(section)
    renamed = {key: option for option, key in (names or {}).items()}
    declared_keys = _declared(model)
    entries = getattr(args, ENTRIES, {})
    from_file = {}
    for key in values:
        option = renamed.get(key, key)
        given = getattr(args, option, None)
        mapping = key in declared_keys and isinstance(sample(model, key), dict)
        if mapping and (given is not None or option in entries):
            # The file's mapping, replaced by -P <option>='{...}' if given, then -P <option>.<name> entries on top.
            base = from_text(given, {}, f"-P {option}") if given is not None else dict(values[key] or {})
            like = dict(values[key] or {})
            typed = {
                name: from_text(text, None if like.get(name) is None else like[name], f"-P {option}.{name}", loose=True)
                for name, text in entries.get(option, {}).items()
            }
            values[key] = base | typed
        elif mapping:
            continue  # the file's mapping as it is; its entries are the step's own params when given
        elif given is None:
            from_file[option] = values[key]
        else:
            # A string option of an estimator's argument whose default is not a number: read as YAML.
            loose = key not in declared_keys and isinstance(given, str) and not isinstance(values[key], str)
            values[key] = from_text(given, None, f"-P {option}") if loose else given
    resolved = validate(model, section, values)
    if mlflow.active_run() is not None and from_file:
        mlflow.log_params({option: as_text(value) for option, value in from_file.items()})
    return resolved


def require_inputs(args: argparse.Namespace, inputs: Sequence[str]) -> dict[str, str]:
    """The input URIs by name; an error naming every missing one and where it comes from."""
    values = {name: (getattr(args, name) or "").strip() for name in inputs}
    missing = [f"missing input {name}: pass {STEP_INPUTS[name]}" for name, value in values.items() if not value]
    if missing:
        raise InputError("; ".join(missing))
    return values


class ArgumentParser(argparse.ArgumentParser):
    """argparse with no abbreviated options, whose errors raise instead of printing usage.

    A bad argument becomes one line (``argument --alpha: invalid float value: 'abc'``) that the
    caller reports like any other error, instead of argparse's multi-line usage text.
    """

    def __init__(self, *args: Any, error_type: type[PipelineError] = InputError, **kwargs: Any):
        super().__init__(*args, allow_abbrev=False, **kwargs)
        self.error_type = error_type
        # Options whose value is a mapping: ``--params.alpha 0.3`` sets one entry (see :func:`add_settings`).
        self.mapping_options: set[str] = set()

    def error(self, message: str) -> NoReturn:
        raise self.error_type(message)

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        """argparse's parsing, plus ``--<mapping option>.<name> value`` pairs, kept as ``ENTRIES[<option>][<name>]``."""
        tokens, rest, entries = list(sys.argv[1:] if args is None else args), [], {}
        while tokens:
            token = tokens.pop(0)
            flag, equals, inline = token.partition("=")
            option, dot, name = flag.removeprefix("--").partition(".")
            if not (token.startswith("--") and dot and name and option in self.mapping_options):
                rest.append(token)
                continue
            if not equals and not tokens:
                self.error(f"argument {flag}: expected one argument")
            entries.setdefault(option, {})[name] = inline if equals else tokens.pop(0)
        parsed = super().parse_args(rest, namespace)
        setattr(parsed, ENTRIES, entries)
        return parsed


# Where :meth:`ArgumentParser.parse_args` keeps the entries of mapping options it was given.
ENTRIES = "_mapping_entries"


def report_error(message: str) -> None:
    """The one ``error: <message>`` line on stderr, unless the driver launched this step and reports it.

    Under the driver the message is logged instead, so the user sees one ``error:`` line in all.
    """
    if os.environ.get(PARENT_RUN_ENV):
        logger.error("%s", message)
    else:
        sys.stderr.write(f"error: {message}\n")


def _fail(message: str, status: str, exit_status: int) -> NoReturn:
    """End the step's run as ``status`` with ``message`` as its error, report it, and exit."""
    try:
        mlflow.set_tag(ERROR_TAG, message[:MAX_TAG_LENGTH])
        mlflow.end_run(status)
    except Exception as exc:
        # E.g. the tracking server went away; the message below still says what happened.
        logger.warning("could not record the outcome on the run: %s", server_problem(exc) or first_line(exc))
    report_error(message)
    sys.exit(exit_status)


def environment_problem(exc: BaseException) -> str | None:
    """One line for an error of the environment, not of the code; None for any other error:
    a store that cannot be written (:func:`storage_problem`), or a tracking server that refuses
    or cannot be reached."""
    return storage_problem(exc) or server_problem(exc)


def storage_problem(exc: BaseException) -> str | None:
    """One line for a disk that is full, read-only or not ours to write; None for any other error.

    It names the file, else what the run writes to (:func:`unnamed_write`).
    """
    problem = storage_error(exc, unnamed_write)
    return None if problem is None else str(problem)


def unnamed_write() -> str:
    """What a write that names no file (one that fails midway on a full disk) was writing to.

    The active run's artifact store, if local, or the temporary directory where files are staged
    before they are logged: both when they are on different file systems.
    """
    temporary = f"a temporary file in {tempfile.gettempdir()}"
    run = mlflow.active_run()  # (mlflow.get_artifact_uri() would start a run if there were none)
    if run is None:
        return f"the tracking store {redact(mlflow.get_tracking_uri())} or {temporary}"
    uri = run.info.artifact_uri
    local = get_local_path_or_none(uri)
    if local is None:  # a remote store: the disk that is full is this machine's
        return temporary
    store = f"the artifact store {redact(uri)}"
    return store if _device(local) == _device(tempfile.gettempdir()) else f"{store} or {temporary}"


def _device(path: str) -> int | None:
    """The file system ``path`` is on (of its nearest existing parent: a run's directory is made when first written)."""
    for candidate in (Path(path), *Path(path).parents):
        with contextlib.suppress(OSError):
            return candidate.stat().st_dev
    return None


def record_outputs(step: str, outputs: Mapping[str, str | LoggedArtifact]) -> None:
    """Tag the active run with each output's URI and content digest.

    A plain string output (e.g. a ``models:/<id>`` URI) names something immutable, so the digest
    of the string itself identifies its content.
    """
    undeclared = sorted(set(outputs) - set(STEP_OUTPUTS.get(step, outputs)))
    if undeclared:
        raise ValueError(f"{step} recorded outputs {undeclared} that contracts.STEP_OUTPUTS does not declare")
    tags = {}
    for name, value in outputs.items():
        uri, digest = (value.uri, value.digest) if isinstance(value, LoggedArtifact) else (value, sha256_bytes(value.encode()))
        tags[Tag.OUTPUT + name] = uri
        tags[Tag.DIGEST + name] = digest
        logger.info("output %s = %s", name, uri)
    mlflow.set_tags(tags)


def _process_age_seconds() -> float | None:
    """Seconds since this process started (Linux only): the step's start-up before its work."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def _peak_rss_mb() -> float | None:
    """This process's peak resident memory so far, in MB (POSIX only)."""
    try:
        import resource  # noqa: PLC0415 - POSIX only
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def step_metrics(startup_seconds: float | None, work_seconds: float) -> dict[str, float]:
    """What a step's process cost: start-up (interpreter, imports, run start), its work, its peak memory."""
    metrics = {"step_work_seconds": work_seconds, "step_startup_seconds": startup_seconds, "step_peak_rss_mb": _peak_rss_mb()}
    return {name: round(value, 3) for name, value in metrics.items() if value is not None}


def run_step(
    step: str,
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace], Mapping[str, str | LoggedArtifact]],
    argv: Sequence[str] | None,
) -> None:
    """Parse ``argv`` and run ``body`` inside the step's MLflow run; exit 0 on success, 1 on failure."""
    configure_logging(step)
    stop_like_ctrl_c()
    with mlflow.start_run() as run:
        mlflow.set_tag(Tag.STEP, step)
        startup_seconds, work_started = _process_age_seconds(), time.perf_counter()
        try:
            outputs = body(parser.parse_args(argv))
        except PipelineError as exc:
            _fail(f"{step}: {exc}", "FAILED", 1)
        except KeyboardInterrupt as exc:
            ignore_stop_signals()
            _fail(f"{step}: interrupted ({exc or 'stopped by SIGINT'})", "KILLED", INTERRUPTED_EXIT_STATUS)
        except Exception as exc:
            problem = environment_problem(exc)
            if problem is not None:
                _fail(f"{step}: {problem}", "FAILED", 1)
            # A bug rather than bad input: keep the traceback, but still leave a one-line reason.
            mlflow.set_tag(ERROR_TAG, f"{step}: {type(exc).__name__}: {first_line(exc)}"[:MAX_TAG_LENGTH])
            raise
        record_outputs(step, outputs)
        mlflow.log_metrics(step_metrics(startup_seconds, time.perf_counter() - work_started))
        logger.info("run %s finished", run.info.run_id)
