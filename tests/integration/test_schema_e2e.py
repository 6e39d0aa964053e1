"""End to end: `mlflow run . -e schema` drafts a schema for a file of one's own, into a temporary store.

A good run writes the draft where ``-P output`` says, logs the same text as ``schema/schema.yaml``
of a FINISHED run and says in one line what to run next; a second run replaces the file only with
``-P overwrite=true``. Bad input (an output that exists, an unknown target, no data_uri, no such
file) exits non-zero with exactly one ``error:`` line, no traceback, and a FAILED run.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.entities import Run

from steps.core.schema import parse_schema, validate_frame
from tests.integration.conftest import PipelineRun, explain, run_pipeline

pytestmark = pytest.mark.e2e

ERROR_PREFIX = "error: "
ARTIFACT = "schema/schema.yaml"


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CSV with a name YAML misreads ('yes'), true/false text, an integer column with a missing
    value, a column with no value at all and a string target named like one."""
    path = tmp_path_factory.mktemp("data") / "patients.csv"
    rows = 30
    pd.DataFrame(
        {
            "age": [20 + i if i != 4 else None for i in range(rows)],
            "yes": ["true" if i % 3 else "false" for i in range(rows)],
            "city": [("Oslo", "Lima", "Pune")[i % 3] for i in range(rows)],
            "notes": [None] * rows,
            "outcome": [("healed", "not healed")[i % 2] for i in range(rows)],
        }
    ).to_csv(path, index=False)
    return path


def schema_run(run: PipelineRun) -> Run:
    """The one run of the schema entry point in the store ``run`` wrote to."""
    runs = [r for r in run.runs() if r.data.tags.get("mlflow.project.entryPoint") == "schema"]
    assert len(runs) == 1, explain(run)
    return runs[0]


def test_the_draft_is_written_logged_and_says_what_to_run_next(tmp_path, data_file):
    output = tmp_path / "mine.schema.yaml"
    run = run_pipeline(tmp_path / "store", f"data_uri={data_file}", f"output={output}", entry_point="schema")
    assert run.process.returncode == 0, explain(run)
    assert not [line for line in run.process.stderr.splitlines() if line.startswith(ERROR_PREFIX)], explain(run)

    text = output.read_text(encoding="utf-8")
    schema = parse_schema(yaml.safe_load(text), str(output))
    assert schema.target == "outcome"
    assert {c.name: c.dtype for c in schema.columns} == {"age": "int", "yes": "bool", "city": "string", "outcome": "string"}
    assert schema.column("outcome").allowed == ("healed", "not healed")
    assert "# left out, no value in any row: notes" in text
    validate_frame(pd.read_csv(data_file), schema, str(data_file))  # the data it was drafted from passes it

    drafted = schema_run(run)
    assert drafted.info.status == "FINISHED"
    assert drafted.data.tags["pipeline.output.schema_uri"] == f"runs:/{drafted.info.run_id}/{ARTIFACT}"
    assert run.artifact_text(drafted.info.run_id, ARTIFACT) == text
    assert drafted.data.metrics["rows"] == 30 and drafted.data.metrics["columns_left_out"] == 1
    name = data_file.name.split(".")[0]
    next_run = shlex.join(["mlflow", "run", ".", "-P", f"data_uri={data_file}", "-P", f"schema={output}", "-P", f"model_name={name}"])
    assert f"wrote a draft schema to {output} (target 'outcome', task classification); review every line, then run: {next_run}" in (
        run.process.stderr
    ), explain(run)

    again = run_pipeline(
        tmp_path / "store-again", f"data_uri={data_file}", f"output={output}", "overwrite=true", "target=age", entry_point="schema"
    )
    assert again.process.returncode == 0, explain(again)
    assert parse_schema(yaml.safe_load(output.read_text(encoding="utf-8")), str(output)).target == "age"


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("output-exists", ("output={output}",), ("schema: ", "{output} exists", "-P overwrite=true")),
        ("unknown-target", ("output={fresh}", "target=outcom"), ("has no column 'outcom'", "(did you mean 'outcome'?)")),
        ("no-data-uri", ("output={fresh}",), ("missing data_uri", "-P data_uri=")),
        ("no-such-file", ("output={fresh}",), ("dataset", "nope.csv", "file not found")),
    ],
)
def test_bad_input_is_one_error_line_and_a_failed_run(tmp_path, data_file, name, params, expected):
    output = tmp_path / "existing.schema.yaml"
    output.write_text("# reviewed by hand\n", encoding="utf-8")
    values = {"output": output, "fresh": tmp_path / "fresh.schema.yaml"}
    data = {"no-data-uri": (), "no-such-file": (f"data_uri={tmp_path / 'nope.csv'}",)}.get(name, (f"data_uri={data_file}",))
    run = run_pipeline(tmp_path / "store", *data, *(p.format(**values) for p in params), entry_point="schema")
    stderr = run.process.stderr

    assert run.process.returncode != 0, explain(run)
    assert "Traceback (most recent call last)" not in stderr, explain(run)
    errors = [line for line in stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(errors) == 1, explain(run)
    for words in expected:
        assert words.format(**values) in errors[0], errors[0]
    failed = schema_run(run)
    assert failed.info.status == "FAILED"
    assert failed.data.tags["pipeline.error"] == errors[0].removeprefix(ERROR_PREFIX)
    assert output.read_text(encoding="utf-8") == "# reviewed by hand\n"  # never replaced
    assert not values["fresh"].exists()
