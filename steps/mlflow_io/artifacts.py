"""Artifact I/O shared by every step: read inputs from URIs, log outputs, return their URIs.

Steps exchange *artifact URIs* (``runs:/<run id>/<path>``, ``models:/<id>``), never local paths,
so the same code works when artifacts live behind a tracking server (``mlflow-artifacts:/``,
``s3://``). Data files given by users may also be local paths, ``file://`` or ``http(s)://`` URLs.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import shutil
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from steps.core.conf import project_path
from steps.core.errors import DataError, InputError, describe, first_line
from steps.core.progress import Progress
from steps.core.schema import DataSchema
from steps.mlflow_io.contracts import EvaluationResult, LoggedArtifact, Manifest

logger = logging.getLogger(__name__)

# The strings pandas' CSV reader reads as missing values, for pyarrow's reader to do the same.
PANDAS_NA_STRINGS = sorted(
    {
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    }
)
# CSV files pyarrow decompresses as it reads them.
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4", ".br")
# MLflow stores a dataset's digest in at most 36 characters; 16 hex digits identify the content.
DATASET_DIGEST_CHARS = 16
# Rows an MLflow dataset's schema is inferred from (plus one per column with a missing value).
SCHEMA_SAMPLE_ROWS = 10_000

# Bytes of CSV parsed per batch: large blocks mean fewer, larger chunks to join (less memory).
CSV_BLOCK_BYTES = 64 << 20
# Rows converted to Arrow at a time when a large table is written to Parquet (one row group each).
PARQUET_CHUNK_ROWS = 1_000_000

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.zip", ".csv.bz2")
PARQUET_SUFFIXES = (".parquet", ".pq")
HTTP_TIMEOUT_SECONDS = 60


def resolve_data_uri(uri: str) -> str:
    """Make a user-given data location unambiguous: relative paths resolve inside the project."""
    if urllib.parse.urlparse(uri).scheme == "" and not Path(uri).expanduser().is_absolute():
        return str(project_path(uri))
    return uri


def fetch(uri: str, dst_dir: str | Path, what: str, timeout: float | None = None) -> Path:
    """A local file with the content at ``uri``; downloads when it is not already local.

    ``what`` says what the URI is for ("train split", "dataset", ...) in error messages.
    ``timeout``: seconds the whole download may take (a server that trickles bytes, or never
    answers, fails it then); None: each HTTP read may wait ``HTTP_TIMEOUT_SECONDS``, no limit in all.
    """
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = Path(urllib.request.url2pathname(parsed.path)) if parsed.scheme == "file" else project_path(uri)
        if not path.exists():
            raise InputError(f"{what} {uri}: file not found")
        if path.is_dir():
            raise InputError(f"{what} {uri}: is a directory, expected a file")
        return path
    if timeout is None:
        return _download(uri, Path(dst_dir), what, HTTP_TIMEOUT_SECONDS)
    # Each read keeps its own limit: the deadline, not a read that times out with it, says why.
    return _within(timeout, lambda: _download(uri, Path(dst_dir), what, HTTP_TIMEOUT_SECONDS), f"{what} {uri}")


def _download(uri: str, dst_dir: Path, what: str, read_timeout: float) -> Path:
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("http", "https"):
        target = dst_dir / (Path(parsed.path).name or "download")
        try:
            with urllib.request.urlopen(uri, timeout=read_timeout) as response, open(target, "wb") as out:
                shutil.copyfileobj(response, out)
        except urllib.error.HTTPError as exc:
            raise InputError(f"{what} {uri}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise InputError(f"{what} {uri}: cannot download ({describe(exc)})") from None
        return target
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst_dir)))
    except ImportError as exc:
        # e.g. s3:// needs boto3, gs:// google-cloud-storage: optional, not in requirements.txt.
        raise InputError(f"{what} {uri}: cannot download: the Python package {exc.name!r} is not installed (pip install it)") from None
    except (MlflowException, OSError) as exc:
        raise InputError(f"{what} {uri}: cannot download ({describe(exc)})") from None


def _within(seconds: float, work: Callable[[], Path], what: str) -> Path:
    """``work()``, or an InputError once ``seconds`` have passed.

    Socket timeouts bound each read, not a download: a server sending a byte every few seconds
    never trips them. The work runs in a daemon thread that is left behind when it is late (the
    run is failing then; the thread ends with the process).
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["path"] = work()
        except BaseException as exc:  # handed to the waiting thread, which raises it
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"download {what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise InputError(f"{what}: cannot download: not complete after {seconds:g} s (data.download_timeout)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["path"]


def table_format(uri: str) -> str:
    """``"csv"`` or ``"parquet"``, from the file name in ``uri``."""
    name = Path(urllib.parse.urlparse(uri).path).name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise InputError(f"{uri}: unsupported file type; expected a name ending in .csv or .parquet")


def _check_csv_header(path: Path, uri: str) -> None:
    """Refuse repeated column names, which pandas would otherwise rename silently (x, x.1)."""
    header = pd.read_csv(path, header=None, nrows=1, dtype=str, encoding="utf-8", keep_default_na=False)
    names = list(header.iloc[0]) if len(header) else []
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataError(f"{uri}: duplicate column name(s) {', '.join(map(repr, duplicated))}")


def release_free_memory() -> None:
    """Give the memory freed by a large read back to the system (glibc's ``malloc_trim``).

    Arrow's buffers, freed once converted, stay in the C heap otherwise; the large arrays that
    come next are mapped afresh, so a 10-million-row step would hold ~0.6 GB of dead memory.
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _read_differently(field: Any) -> bool:
    """Whether pyarrow reads this CSV column otherwise than pandas would."""
    import pyarrow as pa  # noqa: PLC0415

    return field.name == "" or pa.types.is_binary(field.type) or pa.types.is_temporal(field.type) or pa.types.is_null(field.type)


def _use_system_allocator() -> None:
    """Have Arrow allocate with malloc: its default pool keeps the memory of freed buffers, which
    :func:`release_free_memory` can then not give back (a large step would hold the file's data
    twice; measured on Parquet and CSV at 10 million rows)."""
    import pyarrow as pa  # noqa: PLC0415

    pa.set_memory_pool(pa.system_memory_pool())


def _read_parquet(path: Path) -> pd.DataFrame:
    """``pd.read_parquet(path)``, freeing the Arrow table column by column as it is converted
    (pandas keeps all of it until the end: twice the frame's size)."""
    import pyarrow.parquet as pq  # noqa: PLC0415 - only readers of Parquet files need it directly

    _use_system_allocator()
    table = pq.read_table(path)
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    release_free_memory()
    return frame


def _read_csv(path: Path, text_columns: Sequence[str], float_columns: Sequence[str] = ()) -> pd.DataFrame:
    """pyarrow's streaming CSV reader; pandas' C reader for files pyarrow refuses.

    Streaming record batches into one table and converting it column by column peaks at about
    1.2x the frame's size, against 2.4x for pandas' C reader and 3.3x for its pyarrow engine
    (10 million rows, measured). Where pyarrow stops at a problem, or reads what pandas reads
    differently (text that is not UTF-8 as bytes, dates as dates), the C reader reads the file
    instead and raises the errors this module explains (or reads what pyarrow would not).
    """
    import pyarrow as pa  # noqa: PLC0415 - only readers of CSV files need it
    import pyarrow.csv  # noqa: PLC0415

    _use_system_allocator()
    if path.name.endswith(".zip"):
        return pd.read_csv(path, encoding="utf-8", dtype=dict.fromkeys(text_columns, "string"))  # pyarrow cannot unzip
    try:
        reader = pyarrow.csv.open_csv(
            path,
            read_options=pyarrow.csv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            convert_options=pyarrow.csv.ConvertOptions(
                column_types=dict.fromkeys(text_columns, pa.string()) | dict.fromkeys(float_columns, pa.float64()),
                null_values=PANDAS_NA_STRINGS,
                strings_can_be_null=True,
            ),
        )
        # Each batch is one block of the file parsed (the file itself is read well ahead); for a
        # compressed file the blocks are of the uncompressed text, whose size is unknown: no report.
        size = 0 if path.suffix.lower() in COMPRESSED_SUFFIXES else path.stat().st_size
        progress = Progress(f"reading {path.name}", size, unit="bytes", log=logger)
        batches = []
        for batch in reader:
            batches.append(batch)
            progress.update(min(size, len(batches) * CSV_BLOCK_BYTES))
        table = pa.Table.from_batches(batches, schema=reader.schema)
        del batches
        progress.finish()
    except (pa.ArrowException, OSError):
        table = None
    if table is None or any(_read_differently(f) for f in table.schema):
        # Refused, or read differently from pandas: bytes for text that is not UTF-8, dates,
        # columns with no value at all, unnamed columns.
        return pd.read_csv(path, encoding="utf-8", dtype=dict.fromkeys(text_columns, "string"))
    # One column at a time, each dropped from the table once converted: the file's data is in
    # memory about once, not twice.
    columns = {}
    for name in table.column_names:
        columns[name] = table.column(name).to_pandas()
        table = table.drop_columns([name])
    frame = pd.DataFrame(columns, copy=False)
    release_free_memory()
    for name in text_columns:
        if name in frame.columns:
            frame[name] = frame[name].astype("string")
    return frame


def read_table(uri: str, what: str = "dataset", text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read a CSV or Parquet table from any supported URI.

    ``text_columns`` are read from CSV as text, as written (``007`` stays ``007``).
    """
    with tempfile.TemporaryDirectory() as tmp:
        return _parse_table(fetch(uri, tmp, what), uri, text_columns)


def read_table_with_digest(
    uri: str, what: str = "dataset", text_columns: Sequence[str] = (), float_columns: Sequence[str] = (), timeout: float | None = None
) -> tuple[pd.DataFrame, str]:
    """:func:`read_table`, and the SHA-256 of exactly the bytes that were parsed.

    ``float_columns`` are read from CSV straight as float64 when they all parse as numbers (else
    as pandas would read them, for the schema check to explain): no integer copy to convert.
    A download is parsed from its own copy; a local file rewritten while it is read is refused
    (its digest would not describe the rows), not copied first (that would double the I/O).
    """
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:  # a late download may still write there
        path = fetch(uri, tmp, what, timeout)
        before = _version_of(path)
        digest = sha256_file(path)
        frame = _parse_table(path, uri, text_columns, float_columns)
        try:
            changed = _version_of(path) != before
        except OSError:  # deleted or replaced meanwhile
            changed = True
        if changed:
            raise DataError(f"{uri}: the file changed while it was read; run again once it is written")
        return frame, digest


def _version_of(path: Path) -> tuple[int, int, int]:
    """What changes when a file is rewritten, in place or replaced."""
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _parse_table(path: Path, uri: str, text_columns: Sequence[str], float_columns: Sequence[str] = ()) -> pd.DataFrame:
    fmt = table_format(uri)
    try:
        if fmt == "csv":
            _check_csv_header(path, uri)
            return _read_csv(path, text_columns, float_columns)
        return _read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{uri}: the file is empty (no header, no rows)") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{uri}: not UTF-8 text (invalid byte 0x{exc.object[exc.start]:02x}); save the file as UTF-8") from None
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        raise DataError(f"{uri}: cannot parse as {fmt} ({describe(exc)})") from None


def read_text(uri: str, what: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return fetch(uri, tmp, what).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{what} {uri}: not a text file (is it the right URI?)") from None


def read_json(uri: str, what: str) -> Any:
    try:
        return json.loads(read_text(uri, what))
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} {uri}: not valid JSON ({exc})") from None


def run_artifact_uri(artifact_path: str) -> str:
    """The portable ``runs:/`` URI of an artifact of the active run."""
    return f"runs:/{mlflow.active_run().info.run_id}/{artifact_path}"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def log_file(local: str | Path, artifact_path: str, digest: str | None = None) -> LoggedArtifact:
    """Log the file ``local`` as ``artifact_path`` (directory + file name) of the active run.

    ``digest`` overrides the SHA-256 of the file's bytes, for formats whose bytes differ between
    writes of the same content (e.g. skops: object ids and zip timestamps).
    """
    if Path(local).name != Path(artifact_path).name:
        raise ValueError(f"{local} would be logged under another name than {artifact_path}")
    parent = Path(artifact_path).parent.as_posix()
    mlflow.log_artifact(str(local), artifact_path=None if parent == "." else parent)
    return LoggedArtifact(uri=run_artifact_uri(artifact_path), digest=digest or sha256_file(local))


def log_table(frame: pd.DataFrame, artifact_path: str) -> LoggedArtifact:
    """Log ``frame`` as a Parquet artifact of the active run."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / Path(artifact_path).name
        write_parquet(frame, local)
        return log_file(local, artifact_path)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """``frame.to_parquet(path, index=False)``, converting at most PARQUET_CHUNK_ROWS rows at a time.

    pandas converts the whole frame to Arrow first: a second full-size copy of a large split.
    """
    if len(frame) <= PARQUET_CHUNK_ROWS or any(dtype == "object" for dtype in frame.dtypes):
        # (Object columns: the first chunk alone may not show their type, e.g. all missing.)
        frame.to_parquet(path, index=False)
        return
    import pyarrow as pa  # noqa: PLC0415 - only writers of large tables need it directly
    import pyarrow.parquet as pq  # noqa: PLC0415

    progress = Progress(f"writing {path.name}", len(frame), log=logger)
    first = pa.Table.from_pandas(frame.iloc[:PARQUET_CHUNK_ROWS], preserve_index=False)
    with pq.ParquetWriter(path, first.schema) as writer:
        writer.write_table(first)
        del first
        for start in range(PARQUET_CHUNK_ROWS, len(frame), PARQUET_CHUNK_ROWS):
            progress.update(start)
            writer.write_table(
                pa.Table.from_pandas(frame.iloc[start : start + PARQUET_CHUNK_ROWS], schema=writer.schema, preserve_index=False)
            )
    progress.finish()


def log_bytes(data: bytes, artifact_path: str) -> LoggedArtifact:
    """Log ``data`` as the file ``artifact_path`` of the active run (e.g. a plot drawn once as PNG
    for both the artifact and a card)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / Path(artifact_path).name
        local.write_bytes(data)
        return log_file(local, artifact_path)


def log_json(obj: Any, artifact_path: str) -> LoggedArtifact:
    """Log ``obj`` as a JSON artifact of the active run."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / Path(artifact_path).name
        local.write_text(json.dumps(obj, indent=2, default=str), encoding="utf-8")
        return log_file(local, artifact_path)


def to_dataset(
    frame: pd.DataFrame, name: str, source: str | None, target: str | None, *, sha256: str, predictions: str | None = None
) -> mlflow.data.pandas_dataset.PandasDataset:
    """An MLflow dataset (for ``mlflow.log_input``) with ``source`` when MLflow can describe it.

    Two of MLflow's per-cell Python loops are avoided, both linear in the rows (10 million rows:
    ~20 s and 1.5 GB for the digest, ~45 s for the schema): the digest is the start of
    ``sha256``, the SHA-256 of the file the frame was read from or written to (the digest the step
    cache uses), and the schema is inferred from a sample with the same column types and the
    same columns having missing values.
    """
    dataset = _from_pandas(frame, name, source, target, digest=sha256[:DATASET_DIGEST_CHARS], predictions=predictions)
    if len(frame) > SCHEMA_SAMPLE_ROWS:
        dataset.schema = _from_pandas(_schema_sample(frame), name, None, target, digest="sample", predictions=predictions).schema
    return dataset


def _from_pandas(
    frame: pd.DataFrame, name: str, source: str | None, target: str | None, *, digest: str, predictions: str | None
) -> mlflow.data.pandas_dataset.PandasDataset:
    if source is not None:
        try:
            with warnings.catch_warnings():
                # MLflow warns when two registered source types both accept a local path.
                warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
                return mlflow.data.from_pandas(frame, source=source, targets=target, name=name, digest=digest, predictions=predictions)
        except MlflowException:
            pass  # MLflow has no dataset-source type for some URI schemes (e.g. mlflow-artifacts:/).
    return mlflow.data.from_pandas(frame, targets=target, name=name, digest=digest, predictions=predictions)


def _schema_sample(frame: pd.DataFrame) -> pd.DataFrame:
    """The first SCHEMA_SAMPLE_ROWS rows, plus a row with a missing value for each column that has
    one only further down: the same column types and the same optional columns as ``frame``."""
    head = frame.head(SCHEMA_SAMPLE_ROWS)
    extra = []
    for column in frame.columns:
        missing = frame[column].isna()
        if missing.any() and not head[column].isna().any():
            extra.append(missing.idxmax())
    return pd.concat([head, frame.loc[extra]]) if extra else head


def load_manifest(uri: str) -> tuple[Manifest, DataSchema]:
    """Ingest's manifest at ``uri`` and the schema the data satisfied."""
    manifest = Manifest.from_json(read_json(uri, what="ingest manifest"), uri, "ingest manifest")
    return manifest, manifest.data_schema(uri)


def load_evaluation(uri: str) -> EvaluationResult:
    """evaluate's result at ``uri``."""
    return EvaluationResult.from_json(read_json(uri, what="evaluation result"), uri, "evaluation result")


def log_record(record: Manifest | EvaluationResult, artifact_path: str) -> LoggedArtifact:
    """Log a manifest or an evaluation result as the JSON artifact ``artifact_path``."""
    return log_bytes(record.to_json().encode("utf-8"), artifact_path)


def read_split(uri: str, what: str, schema: DataSchema) -> pd.DataFrame:
    """A split logged by ingest, checked to have the columns of ``schema`` (from its manifest)."""
    frame = read_table(uri, what=what)
    missing = [c.name for c in schema.columns if c.name not in frame.columns]
    if missing:
        names = ", ".join(map(repr, missing))
        raise InputError(f"{what} {uri}: missing column(s) {names} of the manifest's schema; pass the split and manifest of one ingest run")
    return frame


def load_model(uri: str, what: str = "model") -> mlflow.pyfunc.PyFuncModel:
    """The MLflow model at ``uri`` as a pyfunc; one line naming ``uri`` when it cannot be loaded."""
    try:
        return mlflow.pyfunc.load_model(uri)
    except Exception as exc:
        # Missing artifacts, a flavor whose package is not installed, untrusted skops types...
        raise InputError(f"{what} {uri}: cannot load ({type(exc).__name__}: {first_line(exc)})") from None
