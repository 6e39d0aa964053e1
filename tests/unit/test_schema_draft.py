"""The schema draft (steps/core/schema_draft.py) and the pure parts of its entry point (steps/schema.py).

The one property every test leans on: whatever the frame, the rendered text loads with
parse_schema, and the frame it was drafted from passes validate_frame against it.
"""

from __future__ import annotations

import random
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from steps import schema as schema_step
from steps.core.conf import PROJECT_ROOT, defaults, validate
from steps.core.errors import ConfigError, DataError, InputError
from steps.core.schema import DataSchema, parse_schema, validate_frame
from steps.core.schema_draft import DraftSettings, SchemaDraft, draft, render


def parsed(result: SchemaDraft, source: str = "test.csv") -> DataSchema:
    return parse_schema(yaml.safe_load(render(result, source)), source)


def roundtrip(frame: pd.DataFrame, target: str | None = None, max_categories: int = 20) -> tuple[SchemaDraft, DataSchema, str]:
    """The draft of ``frame``, its rendered text parsed, and the text; the frame passes the parsed schema."""
    result = draft(frame, target, max_categories, "test.csv")
    text = render(result, "test.csv")
    schema = parse_schema(yaml.safe_load(text), "test.csv")
    assert schema.to_dict() == parse_schema(result.to_dict(), "draft").to_dict()
    usable = frame[frame.columns[[str(c) in [s.name for s in schema.columns] for c in frame.columns]]]
    usable = usable.set_axis([str(c) for c in usable.columns], axis=1)
    if not usable[schema.target].isna().any():
        validate_frame(usable, schema, "test.csv")
    return result, schema, text


def column_lines(text: str) -> list[str]:
    lines = text.splitlines()
    return lines[lines.index("columns:") + 1 :]


def column_line(text: str, name: str) -> str:
    return next(line for line in column_lines(text) if line.startswith(f"  {name}:"))


@pytest.fixture
def people() -> pd.DataFrame:
    rows = 60
    rng = np.random.default_rng(0)
    age = rng.integers(19, 80, rows).astype("float64")
    age[[0, 1]] = [19, 79]
    age[[5, 6, 7]] = np.nan  # an integer column with missing values reads as floats
    return pd.DataFrame(
        {
            "age": age,
            "bmi": rng.normal(25, 4, rows).round(2),
            "smoker": rng.choice(["true", "FALSE", " True "], rows),
            "member": pd.Series(rng.choice([True, False], rows), dtype=object).where(np.arange(rows) != 3, None),
            "city": rng.choice(["Oslo", "Lima", "Pune"], rows),
            "id": [f"p{i:04d}" for i in range(rows)],
            "Target": rng.normal(100, 10, rows),
        }
    )


def test_each_column_gets_its_type_and_only_the_target_is_not_nullable(people):
    result, schema, text = roundtrip(people)
    assert {c.name: c.dtype for c in schema.columns} == {
        "age": "int",
        "bmi": "float",
        "smoker": "bool",
        "member": "bool",
        "city": "string",
        "id": "string",
        "Target": "float",
    }
    assert schema.target == "Target" and result.target_guessed and "named like a target" in result.target_guessed
    assert schema.column("city").allowed == ("Lima", "Oslo", "Pune")
    assert schema.column("id").allowed is None  # 60 distinct values: more than 20
    assert [c.name for c in schema.columns if not c.nullable] == ["Target"]
    assert all(c.min is None and c.max is None for c in schema.columns)  # observations are comments, not bounds
    assert column_line(text, "age") == "  age: {dtype: int}  # observed 19 .. 79, 3 missing"
    assert "Target: {dtype: float, nullable: false}  # the target; observed " in column_line(text, "Target")
    assert "60 distinct values, more than 20 to list" in column_line(text, "id")
    assert "1 missing" in column_line(text, "member")


def test_the_text_is_commented_one_line_per_column():
    frame = pd.DataFrame({"a": [1.5, 2.5], "b": ["x", "y"], "c": [None, None], "target": [1.0, 2.0]})
    result = draft(frame, None, 20)
    text = render(result, "data/my file.csv")
    lines = text.splitlines()
    assert lines[0] == "# Schema drafted from data/my file.csv on 2 rows by `mlflow run . -e schema`."
    assert any("review every line" in line for line in lines[:6])
    block = column_lines(text)
    assert [line.split(":")[0].strip() for line in block] == ["a", "b", "target", "# left out, no value in any row"]
    assert block[-1] == "  # left out, no value in any row: c"
    assert lines[lines.index("columns:") - 2].startswith("target: target  # guessed: named like a target")


@pytest.mark.parametrize(
    ("values", "task", "words"),
    [
        (["yes", "no"] * 10, "classification", "labels (string, 2 distinct)"),
        ([True, False] * 10, "classification", "labels (bool, 2 distinct)"),
        (np.linspace(0, 1, 20), "regression", "a float"),
        (list(range(20)) * 2, "ambiguous", "set model.task or categorical: true (the target is an integer with 20 distinct"),
        (list(range(40)), "regression", "an integer with 40 distinct values"),
    ],
)
def test_the_task_is_guessed_from_the_target(values, task, words):
    frame = pd.DataFrame({"x": np.arange(len(values), dtype="float64") + 0.5, "y": values})
    result, _, text = roundtrip(frame)
    assert result.task == task
    assert f"# task: {task}: " in text and words in text


def test_a_given_target_is_used_and_a_wrong_one_is_one_line_with_a_suggestion():
    frame = pd.DataFrame({"diagnosis": ["a", "b"], "radius": [1.0, 2.0], "empty": [np.nan, np.nan]})
    result, schema, text = roundtrip(frame, target="radius")
    assert schema.target == "radius" and result.target_guessed is None
    assert "target: radius  # given" in text
    with pytest.raises(ConfigError, match=r"^test.csv has no column 'diagnosys' \(did you mean 'diagnosis'\?\); pass one of its"):
        draft(frame, "diagnosys", 20, "test.csv")
    with pytest.raises(ConfigError, match=r"-P target: column 'empty' of test.csv has no value in any row"):
        draft(frame, "empty", 20, "test.csv")


def test_without_a_target_name_the_last_column_with_values_is_the_target():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0], "notes": [None, None]})
    result, schema, _ = roundtrip(frame)
    assert schema.target == "b" and result.target_guessed.startswith("the last column")
    named = pd.DataFrame({"y": [1.0, 2.0], "LABEL": ["a", "b"], "z": [1.0, 2.0]})
    assert draft(named, None, 20).target == "LABEL"  # label comes before y in the names tried


def test_observed_problems_are_noted_where_ingest_would_refuse_them():
    frame = pd.DataFrame({"x": [1.5, np.inf, 2.5, 3.5], "flag": [1, 1, 1, 1], "target": ["a", None, "b", "a"]})
    result = draft(frame, None, 20)
    text = render(result, "f.csv")
    assert "observed 1.5 .. 3.5, 1 infinite (ingest refuses them)" in column_line(text, "x")
    assert "the same value in every row" in column_line(text, "flag")
    assert "a 2, b 1, 1 missing; ingest refuses missing targets" in column_line(text, "target")
    assert parsed(result).target == "target"


def test_a_text_column_of_mostly_numbers_is_pointed_out():
    frame = pd.DataFrame({"size": [str(i) for i in range(30)] + ["n/a?"], "target": np.arange(31.0)})
    _, schema, text = roundtrip(frame)
    assert schema.column("size").dtype == "string"
    assert "30 of its values are numbers" in column_line(text, "size")


# Names and values YAML would read as something else, or that need escaping to stay on one line.
ODD = [
    "yes", "No", "on", "true", "null", "~", "1", "1.5", "0x1F", "1e3", "2024-01-01", "a: b", "x # y", "#x", "",
    " lead", "trail ", "-", "- a", "?", "? b", "[a]", "{b}", "a, b", "'q'", '"q"', "*ref", "&anchor", "!tag", "%d", "@at",
    "`tick", "|", ">", "a\nb", "a\r\nb", "tab\there", "\x00nul", "\x07bell", "\u2028sep", "\x85nel", "\ufeffbom", "é ü 中",
    "emoji 🙂", "<<", "=", "x" * 1100,
]  # fmt: skip


@pytest.mark.parametrize("name", ODD, ids=lambda n: repr(n[:12]))
def test_odd_names_and_values_come_back_exactly(name):
    frame = pd.DataFrame({name: [1.0, 2.0, 3.0], "kind": [name, "plain", name], "other": [name, "x", "y"]})
    for target in [t for t in (name, "kind") if t]:  # (an empty target means: guess it)
        _, schema, text = roundtrip(frame, target=target)
        # One line per column; a name too long to be a key on its line is an explicit key (? name).
        assert len(column_lines(text)) == (3 if len(name) < 1000 else 4)
        assert [c.name for c in schema.columns] == [name, "kind", "other"]
        assert schema.column("kind").allowed == tuple(sorted({name, "plain"}))
        assert schema.target == target


def test_odd_names_of_columns_left_out_stay_in_their_comment():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b\nc #x": [None, None], "\x00": [None, None], "target": [1.0, 2.0]})
    text = render(draft(frame, None, 20), "x.csv")
    assert '  # left out, no value in any row: "b\\nc #x"' in text
    assert '  # left out, no value in any row: "\\0"' in text
    assert parse_schema(yaml.safe_load(text), "x.csv").features == ["a"]


def test_a_source_name_with_line_breaks_stays_a_comment():
    text = render(draft(pd.DataFrame({"a": [1.0], "target": [2.0]}), None, 20), "evil\nname: 1\x00.csv")
    assert text.splitlines()[0] == "# Schema drafted from evil name: 1\\u0000.csv on 1 rows by `mlflow run . -e schema`."
    assert parse_schema(yaml.safe_load(text), "x").target == "target"


@pytest.mark.parametrize("seed", range(40))
def test_any_frame_drafts_a_schema_that_loads(seed):
    rng = random.Random(seed)
    pieces = ["a", "yes", "1", ":", " ", "#", "\n", "'", '"', "-", "?", "é", "\t", "null", "[", "{", ",", "0", "true"]
    names = list(dict.fromkeys("".join(rng.choices(pieces, k=rng.randint(0, 4))) for _ in range(rng.randint(2, 7))))
    if len(names) < 2:
        names.append("fallback")
    rows = rng.randint(1, 30)
    columns = {}
    for name in names:
        kind = rng.choice(["float", "int", "int_missing", "bool", "bool_text", "text", "many_text", "empty", "mixed"])
        values: list[object] = {
            "float": [rng.uniform(-5, 5) for _ in range(rows)],
            "int": [rng.randint(-3, 3) for _ in range(rows)],
            "int_missing": [rng.choice([1.0, 2.0, np.nan]) for _ in range(rows)],
            "bool": [rng.choice([True, False, None]) for _ in range(rows)],
            "bool_text": [rng.choice(["true", "False", None]) for _ in range(rows)],
            "text": [rng.choice([*pieces, None]) for _ in range(rows)],
            "many_text": [f"v{i}{rng.choice(pieces)}" for i in range(rows)],
            "empty": [None] * rows,
            "mixed": [rng.choice([1, "b", 2.5, None, True]) for _ in range(rows)],
        }[kind]
        columns[name] = pd.Series(values, dtype=object if kind in ("bool", "text", "mixed", "empty", "bool_text") else None)
    frame = pd.DataFrame(columns)
    try:
        result = draft(frame, None, rng.randint(1, 5))
    except DataError:
        assert sum(not frame[c].isna().all() for c in frame.columns) < 2
        return
    text = render(result, "random.csv")
    schema = parse_schema(yaml.safe_load(text), "random.csv")
    assert [c.name for c in schema.columns] == [c.name for c in result.columns]
    assert len(column_lines(text)) == len(result.columns) + len(result.left_out)  # one line each


def test_columns_of_other_types_are_drafted_as_text():
    frame = pd.DataFrame(
        {
            "when": pd.to_datetime(["2024-01-01", "2024-01-02"]),
            "z": [1 + 2j, 3j],
            "level": pd.Categorical(["low", "high"]),
            "count": pd.array([1, None], dtype="Int64"),
            "ok": pd.array([True, None], dtype="boolean"),
            "target": [1.5, 2.5],
        }
    )
    _, schema, _ = roundtrip(frame)
    assert {c.name: c.dtype for c in schema.columns} == {
        "when": "string",
        "z": "string",
        "level": "string",
        "count": "int",
        "ok": "bool",
        "target": "float",
    }
    assert schema.column("level").allowed == ("high", "low")


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame(), r"the file is empty"),
        (pd.DataFrame({"a": [], "b": []}), r"no data rows \(only a header\)"),
        (pd.DataFrame({"a": [1.0, 2.0]}), r"a schema needs a target and at least one feature column with values; only 'a' has values"),
        (pd.DataFrame({"a": [1.0], "b": [None]}), r"only 'a' has values \(1 column\(s\) have none\)"),
        (pd.DataFrame({"a": [None], "b": [None]}), r"no column has a value in any row"),
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), r"duplicate column name\(s\) 'a'"),
    ],
)
def test_frames_no_schema_fits_are_one_line_errors(frame, message):
    with pytest.raises(DataError, match=message) as info:
        draft(frame, None, 20, "f.csv")
    assert str(info.value).startswith("f.csv") and "\n" not in str(info.value)


def test_the_schema_section_of_the_config_file_is_valid_and_checked():
    options = validate(DraftSettings, "schema", defaults("schema"))
    assert (options.target, options.output, options.max_categories, options.overwrite) == ("", "", 20, False)
    with pytest.raises(ConfigError, match=r"^schema.max_categories: must be at least 1, got 0$"):
        validate(DraftSettings, "schema", {**defaults("schema"), "max_categories": 0})
    with pytest.raises(ConfigError, match=r"unknown key 'schema.outptu' \(did you mean 'schema.output'\?\)"):
        validate(DraftSettings, "schema", {**defaults("schema"), "outptu": "x"})


# --- the entry point's pure parts --------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("data/breast_cancer.csv", "conf/breast_cancer.schema.yaml"),
        ("/abs/My Data.CSV.GZ", "conf/My Data.schema.yaml"),
        ("https://example.org/files/rows%20v2.parquet?x=1", "conf/rows v2.schema.yaml"),
        ("runs:/0123/data/train.parquet", "conf/train.schema.yaml"),
        ("file:///tmp/x.y.csv", "conf/x.y.schema.yaml"),
        ("s3://bucket/", "conf/data.schema.yaml"),
    ],
)
def test_the_default_output_is_named_after_the_data_file(uri, expected):
    assert schema_step.default_output(uri) == expected


def test_the_output_is_refused_when_it_exists_is_a_directory_or_has_no_directory(tmp_path):
    existing = tmp_path / "s.yaml"
    existing.write_text("kept")
    with pytest.raises(InputError, match=r"s.yaml exists; review or move it, pass -P overwrite=true to replace it"):
        schema_step.check_output(existing, overwrite=False)
    schema_step.check_output(existing, overwrite=True)
    with pytest.raises(InputError, match=r"-P output: .* is a directory"):
        schema_step.check_output(tmp_path, overwrite=True)
    with pytest.raises(InputError, match=r"-P output: no directory .*nope to write s.yaml in"):
        schema_step.check_output(tmp_path / "nope" / "s.yaml", overwrite=False)
    with pytest.raises(InputError, match=r"exists; pass -P overwrite=true"):
        schema_step.write_output(existing, "new", overwrite=False)
    assert existing.read_text() == "kept"
    schema_step.write_output(existing, "new", overwrite=True)
    assert existing.read_text() == "new"


def test_relative_outputs_resolve_inside_the_project_and_the_next_command_uses_them():
    options = validate(DraftSettings, "schema", {**defaults("schema"), "output": "conf/mine.yaml"})
    assert schema_step.output_path(options, "data/x.csv") == PROJECT_ROOT / "conf/mine.yaml"
    assert schema_step.output_path(validate(DraftSettings, "schema", defaults("schema")), "x.csv") == PROJECT_ROOT / "conf/x.schema.yaml"
    command = schema_step.next_command("data/my rows.csv", "conf/x.schema.yaml")
    assert command == "mlflow run . -P 'data_uri=data/my rows.csv' -P schema=conf/x.schema.yaml -P model_name=my-rows"


def test_run_guesses_the_target_when_the_option_is_empty(people):
    options = validate(DraftSettings, "schema", {**defaults("schema"), "target": " "})
    out = schema_step.run(people, options, "people.csv")
    assert out.draft.target == "Target"
    assert out.text == render(out.draft, "people.csv")
    assert re.search(r"^target: Target  # guessed", out.text, re.M)
