"""One-line errors for a tracking server that refuses us or cannot be reached."""

from __future__ import annotations

from collections.abc import Iterator

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED, UNAUTHENTICATED

from steps.core.errors import redact
from steps.runtime.tracking import server_problem


@pytest.fixture(autouse=True)
def server_uri(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bot")
    mlflow.set_tracking_uri("http://bot:hunter2@mlflow.internal:5000")
    yield
    mlflow.set_tracking_uri(None)


def test_credentials_are_removed_from_uris():
    assert redact("http://bot:hunter2@mlflow.internal:5000/path") == "http://mlflow.internal:5000/path"
    assert redact("https://token@host/data.csv") == "https://host/data.csv"
    assert redact("sqlite:///mlflow.db") == "sqlite:///mlflow.db"


def test_refusals_and_unreachable_servers_become_one_line_without_secrets(monkeypatch):
    denied = MlflowException(
        "API request to endpoint /api/2.0/mlflow/registered-models/alias failed with error code 403 != 200. "
        "Response body: 'Permission denied'",
        error_code=PERMISSION_DENIED,
    )
    message = server_problem(denied)
    assert message.startswith("the tracking server http://mlflow.internal:5000 denied /api/2.0/mlflow/registered-models/alias (HTTP 403)")
    assert "EDIT permission" in message

    unauthenticated = MlflowException("You are not authenticated.", error_code=UNAUTHENTICATED)
    assert "rejected the credentials (HTTP 401): check MLFLOW_TRACKING_USERNAME" in server_problem(unauthenticated)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    assert "requires a login (HTTP 401): set MLFLOW_TRACKING_USERNAME" in server_problem(unauthenticated)

    refused = MlflowException(
        "API request to http://mlflow.internal:5000/api/2.0/mlflow/runs/create failed with exception HTTPConnectionPool(...): "
        "Max retries exceeded with url: /api/2.0/mlflow/runs/create (Caused by NewConnectionError(...: [Errno 111] Connection refused'))"
    )
    assert server_problem(refused).startswith("cannot reach the tracking server http://mlflow.internal:5000 (connection refused)")

    for message in (server_problem(denied), server_problem(unauthenticated), server_problem(refused)):
        assert "hunter2" not in message and "\n" not in message
    assert server_problem(ValueError("X has 401 features, but the model expects 10")) is None  # a bug keeps its traceback
    assert server_problem(OSError("read timed out")) is None
