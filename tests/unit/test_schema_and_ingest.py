"""The schema checks ingest runs, and the ingest core (validate + split)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from steps import ingest
from steps.core.conf import validate
from steps.core.data import DataSettings
from steps.core.errors import ConfigError, DataError
from steps.core.schema import load_schema, parse_schema, validate_frame
from steps.core.tasks import REGRESSION
from tests.conftest import PROJECT_ROOT, SMALL_SCHEMA, data_settings, make_frame


def test_bundled_example_data_satisfies_the_bundled_schema():
    schema = load_schema("conf/schema.yaml")
    frame = pd.read_csv(PROJECT_ROOT / "data/example_data.csv")
    validated = validate_frame(frame, schema, "example")
    assert len(validated) == 442
    assert schema.target == "target"
    assert schema.categorical_features == ["sex"]


def test_valid_frame_is_typed_and_keeps_missing_feature_values(small_schema, small_frame):
    validated = validate_frame(small_frame.assign(extra=1), small_schema, "f.csv")
    assert list(validated.columns) == ["x1", "x2", "color", "y"]  # 'extra' dropped
    assert validated["x1"].dtype == "float64"
    assert validated["x1"].isna().sum() == 1
    assert validated["color"].isna().sum() == 1


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda f: f.drop(columns=["x2"]), r"f.csv: missing column\(s\) 'x2' required by the schema"),
        (lambda f: f.drop(columns=["y"]), r"f.csv: missing target column 'y'"),
        (
            lambda f: f.assign(x2=f["x2"].astype(object).where(f.index != 5, "abc")),
            r"column 'x2': 1 non-numeric value\(s\), first 'abc' at row 6",
        ),
        (lambda f: f.assign(x1=f["x1"].where(f.index != 7, 150.0)), r"column 'x1': 1 value\(s\) outside \[0, 100\], first 150.0 at row 8"),
        (
            lambda f: f.assign(color=f["color"].where(f.index != 4, "pink")),
            r"column 'color': 1 value\(s\) not in allowed \['red', 'green', 'blue'\], first 'pink' at row 5",
        ),
        (lambda f: f.assign(y=f["y"].where(f.index != 9, np.nan)), r"column 'y': 1 missing value\(s\), first at row 10"),
        (lambda f: f.assign(y=f["y"].where(f.index != 9, np.inf)), r"column 'y': 1 infinite value\(s\)"),
        (lambda f: f.assign(x2=np.nan), r"column 'x2': every value is missing"),
        (lambda f: f.iloc[0:0], r"f.csv: no data rows \(only a header\)"),
        (lambda f: pd.DataFrame(), r"f.csv: the file is empty"),
        (
            lambda f: pd.DataFrame({"x1;x2;color;y": ["1;2;red;3"]}),
            r"f.csv: the file looks delimited by ';' instead of ',' \(its header reads as one column 'x1;x2;color;y'\)",
        ),
        (lambda f: pd.DataFrame({"x1\tx2\tcolor\ty": ["1\t2\tred\t3"]}), r"f.csv: the file looks delimited by '\\t' instead of ','"),
        (lambda f: f.set_axis(["x1", "x1", "color", "y"], axis=1), r"duplicate column name\(s\) 'x1'"),
    ],
)
def test_schema_violations_name_the_column_and_the_problem(small_schema, small_frame, mutate, expected):
    with pytest.raises(DataError, match=expected) as info:
        validate_frame(mutate(small_frame), small_schema, "f.csv")
    assert "\n" not in str(info.value)


def test_several_problems_are_reported_together(small_schema, small_frame):
    bad = small_frame.assign(x1=200.0, x2="text", y=np.nan)
    with pytest.raises(DataError, match=r"column 'x1'.*; column 'x2'.*; column 'y'"):
        validate_frame(bad, small_schema, "f.csv")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"target": "z"}, r"target 'z' is not one of the columns"),
        ({"columns": {"x1": {"dtype": "double"}, "y": {}}}, r"columns.x1.dtype: expected one of float, int, string, bool"),
        ({"columns": {"x1": {"mni": 0}, "y": {}}}, r"columns.x1: unknown key 'mni' \(did you mean 'min'\?\)"),
        ({"columns": {"x1": {"min": 5, "max": 1}, "y": {}}}, r"columns.x1: min \(5\) is greater than max \(1\)"),
        ({"thresholds": {"r2": {"least": 0.3}}}, r"thresholds.r2: unknown key 'least'; expected min and/or max"),
        ({"thresholds": {"r2": {"min": "high"}}}, r"thresholds.r2.min: expected a finite number, got 'high'"),
        ({"columns": {"x1": {"dtype": "bool", "categorical": False}, "y": {}}}, r"a bool column must be categorical"),
        ({"columns": {"y": {}}}, r"at least one feature column"),
    ],
)
def test_schema_file_errors_name_the_key(change, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_schema({**SMALL_SCHEMA, **change}, source="s.yaml")


def test_string_columns_are_categorical_and_allowed_values_take_the_column_type():
    schema = parse_schema(
        {
            "target": "y",
            "columns": {"code": {"dtype": "string", "allowed": ["007", 10]}, "sex": {"categorical": True, "allowed": [1, 2]}, "y": {}},
        },
        source="s.yaml",
    )
    assert schema.categorical_features == ["code", "sex"]
    assert schema.column("code").allowed == ("007", "10")
    assert schema.column("sex").allowed == (1.0, 2.0)
    frame = pd.DataFrame({"code": ["007", "10", None], "sex": [1, 2, 1], "y": [1.0, 2.0, 3.0]})
    assert validate_frame(frame, schema, "f.csv")["code"].tolist()[:2] == ["007", "10"]


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ({"code": {"dtype": "string", "categorical": False}}, r"columns.code: a string column must be categorical"),
        ({"flag": {"dtype": "string", "allowed": [True, False]}}, r"columns.flag.allowed: True is not a string value \(quote it"),
        ({"x": {"allowed": [[1, 2]]}}, r"columns.x.allowed: \[1, 2\] is not a float value"),
        ({"x": {"min": float("nan")}}, r"columns.x.min: expected a finite number"),
        ({True: {}}, r"columns.True: column names must be strings; quote it"),
    ],
)
def test_column_spec_errors_name_the_key(columns, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_schema({"target": "y", "columns": {**columns, "y": {}}}, source="s.yaml")


def test_int_columns_and_one_sided_ranges(small_frame):
    schema = parse_schema({"target": "y", "columns": {"n": {"dtype": "int", "min": 0}, "m": {"max": 5}, "y": {}}}, source="s.yaml")
    good = pd.DataFrame({"n": [1, 2, None], "m": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0]})
    assert validate_frame(good, schema, "f.csv")["n"].dtype == "float64"
    bad = good.assign(n=[1.5, -1, 2], m=[1.0, 9.0, 3.0])
    with pytest.raises(DataError) as info:
        validate_frame(bad, schema, "f.csv")
    assert str(info.value) == (
        "f.csv: column 'n': 1 non-integer value(s), first 1.5 at row 1; column 'n': 1 value(s) below the minimum 0, first -1.0 at row 2; "
        "column 'm': 1 value(s) above the maximum 5, first 9.0 at row 2"
    )


def test_target_must_be_a_column_name():
    with pytest.raises(ConfigError, match=r"target must be a column name \(a string\), got 1"):
        parse_schema({"target": 1, "columns": {"x": {}, "1": {}}}, source="s.yaml")


def test_ingest_split_is_deterministic_and_complete(small_schema):
    frame = make_frame(rows=50)
    params = data_settings(uri="f.csv", schema="s.yaml", test_size=0.2, seed=3)
    first, second = ingest.run(frame, small_schema, params, "auto", "f.csv"), ingest.run(frame, small_schema, params, "auto", "f.csv")
    assert first.task is REGRESSION and first.dropped_rows == 0
    assert (len(first.train), len(first.test)) == (40, 10)
    pd.testing.assert_frame_equal(first.train, second.train)
    pd.testing.assert_frame_equal(first.test, second.test)
    together = pd.concat([first.train, first.test]).sort_values("y").reset_index(drop=True)
    pd.testing.assert_frame_equal(together, first.data.sort_values("y").reset_index(drop=True))
    other = ingest.run(frame, small_schema, params.model_copy(update={"seed": 4}), "auto", "f.csv")
    assert not other.test.equals(first.test)


def test_ingest_refuses_too_few_rows_to_split(small_schema):
    with pytest.raises(DataError, match=r"f.csv: 3 row\(s\) are too few to split; train and test need at least 2 rows each"):
        ingest.run(make_frame(rows=3, missing=False), small_schema, data_settings(test_size=0.2, seed=0), "auto", "f.csv")
    with pytest.raises(DataError, match=r"f.csv: test_size=0.01 splits 40 rows into 39 train and 1 test rows; each split needs at least 2"):
        ingest.run(make_frame(rows=40), small_schema, data_settings(test_size=0.01, seed=0), "auto", "f.csv")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"seed": -1}, r"^data.seed: must be between 0 and 2\*\*32 - 1, got -1$"),
        ({"test_size": 1.0}, r"^data.test_size: must be between 0 and 1 \(exclusive\), got 1.0$"),
        ({"uri": " "}, r"^data.uri: must not be empty$"),
        ({"seed": True}, r"^data.seed: expected an integer, got True$"),
        ({"sede": 1}, r"^unknown key 'data.sede' \(did you mean 'data.seed'\?\)$"),
        ({"drop_missing_target": "yes"}, r"^data.drop_missing_target: expected true or false, got 'yes'$"),
    ],
)
def test_data_settings_errors_name_the_key(values, message):
    good = {"uri": "f.csv", "schema": "conf/schema.yaml", "test_size": 0.2, "seed": 1, "drop_missing_target": False}
    with pytest.raises(ConfigError, match=message):
        validate(DataSettings, "data", good | values)
