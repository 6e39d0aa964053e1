"""Shared fixtures: a throwaway MLflow tracking store, small synthetic data, a local HTTP server."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from steps.schema import DataSchema, parse_schema

PROJECT_ROOT = Path(__file__).resolve().parent.parent

SMALL_SCHEMA = {
    "target": "y",
    "columns": {
        "x1": {"dtype": "float", "min": 0, "max": 100},
        "x2": {"dtype": "float"},
        "color": {"dtype": "string", "categorical": True, "allowed": ["red", "green", "blue"]},
        "y": {"dtype": "float"},
    },
}


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh SQLite tracking store (artifacts beside it) for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # the default artifact root ./mlruns lands in tmp_path
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


@pytest.fixture
def small_schema() -> DataSchema:
    return parse_schema(SMALL_SCHEMA, source="test schema")


def make_frame(rows: int = 40, seed: int = 0, missing: bool = True) -> pd.DataFrame:
    """A small frame matching SMALL_SCHEMA, y linear in the features, with some values missing."""
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0, 100, rows)
    x2 = rng.normal(0, 1, rows)
    color = rng.choice(["red", "green", "blue"], rows).astype(object)
    y = 3 * x1 - 5 * x2 + np.select([color == "red", color == "green"], [10.0, -10.0], 0.0) + rng.normal(0, 1, rows)
    frame = pd.DataFrame({"x1": x1, "x2": x2, "color": color, "y": y})
    if missing:
        frame.loc[1, "x1"] = np.nan
        frame.loc[2, "x2"] = np.nan
        frame.loc[3, "color"] = np.nan
    return frame


@pytest.fixture
def small_frame() -> pd.DataFrame:
    return make_frame()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def unused_port() -> int:
    return free_port()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on 127.0.0.1: ``(directory, base URL)``."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
