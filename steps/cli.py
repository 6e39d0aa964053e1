"""The thin command-line wrapper every step shares.

It attaches to the MLflow run that ``mlflow run`` created for the step, runs the step body,
records the body's outputs as run tags (``pipeline.output.<name>``) so the driver can pass them
downstream, and turns a :class:`PipelineError` into one clear line on stderr, a
``pipeline.error`` tag, a FAILED run and exit status 1.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping

import mlflow

from steps.errors import InputError, PipelineError

logger = logging.getLogger(__name__)

OUTPUT_TAG_PREFIX = "pipeline.output."
ERROR_TAG = "pipeline.error"
STEP_TAG = "pipeline.step"
# MLflow limits tag values to 8000 characters.
_MAX_TAG_LENGTH = 5000


def configure_logging(name: str) -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s", datefmt="%H:%M:%S")


def require_uri(value: str, flag: str, produced_by: str) -> str:
    """``value`` if given; otherwise an error saying what the input is and where it comes from."""
    if not value or not value.strip():
        raise InputError(f"missing input {flag}: pass {produced_by}")
    return value.strip()


def run_step(step: str, body: Callable[[], Mapping[str, str]]) -> None:
    """Run ``body`` inside the step's MLflow run and exit with 0 on success, 1 on failure."""
    configure_logging(step)
    with mlflow.start_run() as run:
        mlflow.set_tag(STEP_TAG, step)
        try:
            outputs = body()
        except PipelineError as exc:
            message = f"{step}: {exc}"
            mlflow.set_tag(ERROR_TAG, message[:_MAX_TAG_LENGTH])
            mlflow.end_run("FAILED")
            sys.stderr.write(f"error: {message}\n")
            sys.exit(1)
        except Exception as exc:
            # A bug rather than bad input: keep the traceback, but still leave a one-line reason.
            mlflow.set_tag(ERROR_TAG, f"{step}: {type(exc).__name__}: {exc}"[:_MAX_TAG_LENGTH])
            raise
        mlflow.set_tags({OUTPUT_TAG_PREFIX + name: value for name, value in outputs.items()})
        for name, value in outputs.items():
            logger.info("output %s = %s", name, value)
        logger.info("run %s finished", run.info.run_id)
