"""Shared fixtures: a throwaway MLflow tracking store, small synthetic data, a local HTTP server."""

from __future__ import annotations

import base64
import contextlib
import functools
import html.parser
import http.server
import re
import socket
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from steps.core.schema import DataSchema, parse_schema

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


class ScriptedServer:
    """An HTTP server on 127.0.0.1 that answers the n-th request with the n-th of ``bodies``
    (the last one from then on), or trickles: one byte of a ``size``-byte body per ``every`` s.
    ``requests`` counts the requests it got."""

    def __init__(self, bodies: list[bytes] | None = None, *, trickle_every: float | None = None, size: int = 10_000):
        self.bodies, self.trickle_every, self.size = bodies or [], trickle_every, size
        self.requests = 0
        self.stopping = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_ScriptedHandler, self))
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/data.csv"

    def __enter__(self) -> ScriptedServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


class _ScriptedHandler(http.server.BaseHTTPRequestHandler):
    def __init__(self, script: ScriptedServer, *args: object, **kwargs: object):
        self.script = script
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        script = self.script
        script.requests += 1
        body = script.bodies[min(script.requests, len(script.bodies)) - 1] if script.bodies else b""
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) if script.bodies else script.size))
        self.end_headers()
        if script.bodies:
            self.wfile.write(body)
            return
        with contextlib.suppress(OSError):  # the client gave up
            for _ in range(script.size):
                if script.stopping.wait(script.trickle_every):
                    return
                self.wfile.write(b"1")
                self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        pass


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers; counts them."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.connections: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/data.csv"

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # closed
            while True:
                self.connections.append(self.listener.accept()[0])

    def __enter__(self) -> SilentServer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()
        for connection in self.connections:
            connection.close()


# Elements that have no end tag in HTML.
_VOID_ELEMENTS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"})
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _StrictHTML(html.parser.HTMLParser):
    """Checks that every element is closed, in order, and collects the text and the images."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.problems: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.links: list[str] = []
        self.text: list[str] = []
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs))
        if tag == "a":
            self.links.append(dict(attrs).get("href") or "")
        if tag not in _VOID_ELEMENTS:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID_ELEMENTS:
            self.open.pop()

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.open[-1] if self.open else 'nothing'}>")
        else:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        if self.open and self.open[-1] not in ("style", "script"):
            self.text.append(data)


@functools.lru_cache(maxsize=64)
def _parse_card(document: str) -> _StrictHTML:
    parser = _StrictHTML()
    parser.feed(document)
    parser.close()
    return parser


def check_card(document: str, min_images: int = 0) -> tuple[str, list[bytes]]:
    """Assert that ``document`` is a well-formed, self-contained HTML card; return its text and images.

    Well-formed: a doctype, one html element with head (title, charset) and body, every element
    closed in order; self-contained: images are PNG data URIs (decoded and checked) with alt text,
    and nothing is loaded from elsewhere (no src/href to other documents but links).
    """
    parser = _parse_card(document)
    assert parser.doctype, "no <!DOCTYPE html>"
    assert not parser.problems, parser.problems
    assert not parser.open, f"unclosed elements: {parser.open}"
    skeleton = r"<html[^>]*>\s*<head>.*<meta charset=\"utf-8\">.*<title>[^<]+</title>.*</head>\s*<body>.*</body>\s*</html>"
    assert re.search(skeleton, document, re.S), "not <html><head>(charset, title)</head><body>...</body></html>"
    assert "<script" not in document, "cards run no scripts"
    images = []
    for attrs in parser.images:
        src = attrs.get("src") or ""
        assert src.startswith("data:image/png;base64,"), f"image not embedded: {src[:60]}"
        assert attrs.get("alt"), "image without alt text"
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png.startswith(PNG_SIGNATURE), "embedded image is not a PNG"
        images.append(png)
    assert len(images) >= min_images, f"{len(images)} image(s), expected at least {min_images}"
    return " ".join(" ".join(parser.text).split()), images


def estimator_spec(estimator: str = "sklearn.linear_model.ElasticNet", task: str = "regression", **params: object):
    """The EstimatorSpec train gets for ``estimator`` with ``params`` (checked as conf/pipeline.yaml's would be)."""
    from steps.core.conf import defaults, validate  # noqa: PLC0415
    from steps.core.model import ModelSettings  # noqa: PLC0415
    from steps.core.tasks import TASKS  # noqa: PLC0415

    section = defaults("model") | {"task": task, "estimator": estimator, "params": params}
    return validate(ModelSettings, "model", section).resolve(TASKS[task])


def data_settings(**values: object):
    """conf/pipeline.yaml's data section with ``values`` replacing some keys."""
    from steps.core.conf import defaults  # noqa: PLC0415
    from steps.core.data import DataSettings  # noqa: PLC0415

    return DataSettings.model_validate(defaults("data") | values)


def fit_model(frame: pd.DataFrame, schema: DataSchema, estimator: str | None = None, **params: object):
    """The fitted pipeline train would log: preprocessing + ``estimator`` (default: the task's
    default, ElasticNet or LogisticRegression, for the schema's target), ``params`` its arguments."""
    from steps import train  # noqa: PLC0415 - only the tests that fit models import the step
    from steps.core import features, tasks  # noqa: PLC0415

    task = tasks.resolve_task("auto", schema)
    spec = estimator_spec(estimator or "auto", task=task.name, **params)
    transformer = features.fit_preprocessing(frame, schema).transformer
    return train.run(frame, transformer, schema, spec).model


def log_model(fitted: object, **options: object) -> mlflow.models.model.ModelInfo:
    """Log ``fitted`` in the active run as train does: skops, trusted types, explicit requirements
    (inferring them costs seconds per model)."""
    from steps.core import features, model  # noqa: PLC0415

    return mlflow.sklearn.log_model(
        fitted,
        name="model",
        serialization_format="skops",
        skops_trusted_types=features.SKOPS_TRUSTED_TYPES,
        pip_requirements=model.requirements(),
        **options,
    )


@pytest.fixture
def mlflow_kubernetes() -> types.ModuleType:
    """MLflow's Kubernetes backend module; it imports the Kubernetes client, which MLflow does not install."""
    try:
        from mlflow.projects import kubernetes  # noqa: PLC0415 - needs the optional client
    except ModuleNotFoundError as exc:
        pytest.fail(f"{exc}: install the launcher's requirements, pip install -r kubernetes/launcher-requirements.txt")
    return kubernetes
