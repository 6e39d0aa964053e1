"""schema: draft a schema for a data file of your own, to review before ingest checks data against it.

``mlflow run . -e schema -P data_uri=my_data.csv`` reads the file (CSV or Parquet, any URI ingest
accepts), infers each column's type from its values, takes ``-P target`` as the target (else
guesses it) and writes the draft, with what it observed as comments, to
``conf/<file name>.schema.yaml`` (or ``-P output``). An existing file is never replaced unless
``-P overwrite=true``. The draft is also logged as the run's artifact ``schema/schema.yaml``;
steps/core/schema_draft.py explains what it infers.
"""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import mlflow
import pandas as pd

from steps.core.conf import defaults, display_path, project_path
from steps.core.errors import InputError
from steps.core.progress import stage
from steps.core.schema_draft import DraftSettings, SchemaDraft, draft, render
from steps.mlflow_io.artifacts import CSV_SUFFIXES, PARQUET_SUFFIXES, log_bytes, read_table_with_digest, resolve_data_uri
from steps.mlflow_io.contracts import Artifact, LoggedArtifact
from steps.mlflow_io.step_run import add_settings, run_step, settings, step_parser

logger = logging.getLogger(__name__)

# Where a draft goes when -P output is empty: {stem} is the data file's name without its extension.
DEFAULT_OUTPUT = "conf/{stem}.schema.yaml"


@dataclass(frozen=True)
class SchemaOutputs:
    draft: SchemaDraft
    text: str


def run(raw: pd.DataFrame, options: DraftSettings, source: str) -> SchemaOutputs:
    """The draft schema of ``raw`` (read from ``source``) and its YAML text."""
    result = draft(raw, options.target.strip() or None, options.max_categories, source)
    return SchemaOutputs(result, render(result, source))


def default_output(data_uri: str) -> str:
    """``conf/<stem>.schema.yaml`` for the file ``data_uri`` names (``data/x.csv.gz`` -> ``conf/x.schema.yaml``)."""
    name = urllib.parse.unquote(Path(urllib.parse.urlparse(data_uri).path).name)
    suffix = next((s for s in (*CSV_SUFFIXES, *PARQUET_SUFFIXES) if name.lower().endswith(s)), Path(name).suffix)
    return DEFAULT_OUTPUT.format(stem=name[: len(name) - len(suffix)] or "data")


def output_path(options: DraftSettings, data_uri: str) -> Path:
    """Where the draft goes: ``-P output`` (relative paths inside the project), else :func:`default_output`."""
    return project_path(options.output.strip() or default_output(data_uri))


def check_output(path: Path, overwrite: bool) -> None:
    """Refuse an output that exists (unless ``overwrite``), is a directory, or has no directory to go in."""
    shown = display_path(path)
    if path.is_dir():
        raise InputError(f"-P output: {shown} is a directory; name a file, e.g. -P output={shown}/schema.yaml")
    if path.exists() and not overwrite:
        raise InputError(f"{shown} exists; review or move it, pass -P overwrite=true to replace it, or -P output=<another file>")
    if not path.parent.is_dir():
        raise InputError(f"-P output: no directory {display_path(path.parent)} to write {path.name} in")


def write_output(path: Path, text: str, overwrite: bool) -> None:
    """Write ``text`` to ``path``; without ``overwrite``, never over a file that appeared meanwhile."""
    try:
        with path.open("w" if overwrite else "x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise InputError(f"{display_path(path)} exists; pass -P overwrite=true to replace it, or -P output=<another file>") from None
    except OSError as exc:
        raise InputError(f"cannot write {display_path(path)}: {exc.strerror or exc}") from None


def next_command(data_uri: str, schema_file: str) -> str:
    """The pipeline run that uses the reviewed draft, under a model name of the data's own (a
    champion of other data, e.g. the example's, cannot be compared with it)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", PurePosixPath(urllib.parse.urlparse(data_uri).path).name.split(".")[0]).strip("-") or "my-data"
    return shlex.join(["mlflow", "run", ".", "-P", f"data_uri={data_uri}", "-P", f"schema={schema_file}", "-P", f"model_name={name}"])


def build_parser() -> argparse.ArgumentParser:
    parser = step_parser("schema", __doc__, inputs=())
    parser.add_argument(
        "--data_uri", type=str, default="", help="the CSV or Parquet file to draft a schema for: path, file://, http(s)://, artifact URI"
    )
    add_settings(parser, "schema", model=DraftSettings)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    run_step("schema", build_parser(), _schema, argv)


def _schema(args: argparse.Namespace) -> dict[str, LoggedArtifact]:
    uri = args.data_uri.strip()
    if not uri:
        raise InputError("missing data_uri: pass the file to draft a schema for, e.g. -P data_uri=data/my_data.csv")
    options = settings(args, DraftSettings, "schema")
    path = output_path(options, uri)
    check_output(path, options.overwrite)  # before reading what may be a large file
    with stage(f"read {uri}", log=logger):
        raw, _ = read_table_with_digest(resolve_data_uri(uri), what="dataset", timeout=defaults("data")["download_timeout"])
    out = run(raw, options, uri)
    write_output(path, out.text, options.overwrite)
    logged = log_bytes(out.text.encode("utf-8"), Artifact.SCHEMA)
    mlflow.log_metrics({"rows": out.draft.rows, "columns": len(out.draft.columns), "columns_left_out": len(out.draft.left_out)})
    shown = display_path(path)
    logger.info(
        "wrote a draft schema to %s (target %r, task %s); review every line, then run: %s",
        shown,
        out.draft.target,
        out.draft.task,
        next_command(uri, shown),
    )
    return {"schema_uri": logged}


if __name__ == "__main__":
    main()
