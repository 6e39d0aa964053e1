"""The tracking server as the pipeline meets it: one-line errors, and a check before a run.

MLflow reports a refused or unreachable server as a long exception (the request, the retry
policy, the socket error). :func:`server_problem` turns those into one line that names the server
and what to do, without credentials. ``python -m steps.runtime.tracking`` checks, quickly and with
bounded retries, that the server named by ``MLFLOW_TRACKING_URI`` answers and accepts the
credentials, so a scheduled run fails in seconds instead of minutes; schedule/run-pipeline.sh
runs it first.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Sequence

from steps.core.errors import PipelineError, describe, redact

logger = logging.getLogger(__name__)

# How the preflight check (and schedule/run-pipeline.sh) bounds MLflow's HTTP retries, unless set.
BOUNDED_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
_ENDPOINT = re.compile(r"(/api/\d\.\d/\S+?)(?=[\s'\"?,)]|$)")
# Most specific first: the first one found is the reason given.
_UNREACHABLE = (
    "Connection refused",
    "Name or service not known",
    "timed out",
    "Failed to establish a new connection",
    "Max retries exceeded",
)


class ServerError(PipelineError):
    """The tracking server refused a request or could not be reached."""


def tracking_server() -> str:
    import mlflow  # noqa: PLC0415 - imported when needed: `python -m steps.runtime.tracking` must start fast

    return redact(mlflow.get_tracking_uri())


def server_problem(exc: BaseException) -> str | None:
    """One line for a refused or unreachable tracking server; None for any other error.

    Only MLflow's own exceptions (which wrap every failed request) and the HTTP library's are
    considered: a bug whose message happens to mention "401" keeps its traceback.
    """
    from mlflow.exceptions import MlflowException  # noqa: PLC0415 - see tracking_server
    from requests.exceptions import RequestException  # noqa: PLC0415

    if not isinstance(exc, MlflowException | RequestException):
        return None
    code = getattr(exc, "error_code", None)
    text = describe(exc)
    endpoint = match[1] if (match := _ENDPOINT.search(text)) else "a request"
    if code in ("UNAUTHENTICATED", "CUSTOMER_UNAUTHORIZED") or "error code 401" in text:
        return _login_problem()
    if code == "PERMISSION_DENIED":
        return (
            f"the tracking server {tracking_server()} denied {endpoint} (HTTP 403): the user in MLFLOW_TRACKING_USERNAME needs "
            "EDIT permission on the experiment and the registered model (an admin grants it; see docs/team-server.md)"
        )
    if "too many 5" in text:  # urllib3's "too many 500 error responses": it answered, with errors
        return f"the tracking server {tracking_server()} keeps failing ({text[:300]})"
    if any(marker in text for marker in _UNREACHABLE):
        reason = next(marker for marker in _UNREACHABLE if marker in text)
        return f"cannot reach the tracking server {tracking_server()} ({reason.lower()}): is it running, and is MLFLOW_TRACKING_URI right?"
    return None


def _login_problem() -> str:
    if not os.environ.get("MLFLOW_TRACKING_USERNAME"):
        return (
            f"the tracking server {tracking_server()} requires a login (HTTP 401): "
            "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    return (
        f"the tracking server {tracking_server()} rejected the credentials (HTTP 401): "
        "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    )


def check_server() -> None:
    """Raise ServerError unless the tracking store answers a cheap read with these credentials."""
    from mlflow import MlflowClient  # noqa: PLC0415 - see tracking_server

    try:
        MlflowClient().search_experiments(max_results=1)
    except Exception as exc:
        raise ServerError(server_problem(exc) or f"the tracking server {tracking_server()} failed a request: {describe(exc)}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m steps.runtime.tracking``: exit 0 if the tracking server answers, else one line and 2."""
    del argv  # no options
    for name, value in BOUNDED_RETRIES.items():
        os.environ.setdefault(name, value)
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # one line in the end, not one per retry
    start = time.monotonic()
    try:
        check_server()
    except ServerError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    logger.info("tracking server %s answered in %.1f s", tracking_server(), time.monotonic() - start)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s tracking %(levelname)s %(message)s", datefmt="%H:%M:%S")
    sys.exit(main(sys.argv[1:]))
