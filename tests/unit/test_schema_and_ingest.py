"""The schema checks ingest runs, and the ingest core (validate + split)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from steps import ingest
from steps.core.conf import validate
from steps.core.data import DataSettings, split
from steps.core.errors import ConfigError, DataError
from steps.core.schema import DataSchema, load_schema, parse_schema, validate_frame
from steps.core.tasks import CLASSIFICATION, REGRESSION
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


# -- classification data: the stratified split, rows with no target, bool columns ----------------


def labelled(counts: dict[object, int], dtype: str = "string", seed: int = 0) -> tuple[pd.DataFrame, DataSchema]:
    """A frame with ``counts[label]`` rows of each label in target ``y`` (shuffled), and its schema."""
    labels = [label for label, count in counts.items() for _ in range(count)]
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x": rng.normal(size=len(labels)), "y": pd.Series(labels, dtype=object).sample(frac=1, random_state=seed)})
    schema = parse_schema({"target": "y", "columns": {"x": {}, "y": {"dtype": dtype}}}, source="s.yaml")
    return frame.reset_index(drop=True), schema


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_a_classification_split_keeps_the_class_proportions(seed):
    frame, schema = labelled({"a": 60, "b": 30, "c": 10})
    out = ingest.run(frame, schema, data_settings(test_size=0.2, seed=seed), "auto", "f.csv")
    assert out.task is CLASSIFICATION
    assert out.test["y"].value_counts().to_dict() == {"a": 12, "b": 6, "c": 2}
    assert out.train["y"].value_counts().to_dict() == {"a": 48, "b": 24, "c": 8}
    again = ingest.run(frame, schema, data_settings(test_size=0.2, seed=seed), "auto", "f.csv")
    pd.testing.assert_frame_equal(out.test, again.test)  # still reproducible


def test_a_regression_split_is_not_stratified(small_schema):
    # The same rows split by a float target: the seed alone decides (as before tasks existed).
    frame = make_frame(rows=50)
    out = ingest.run(frame, small_schema, data_settings(test_size=0.2, seed=3), "auto", "f.csv")
    train, test = split(out.data, test_size=0.2, seed=3, source="f.csv")
    pd.testing.assert_frame_equal(out.train, train)
    pd.testing.assert_frame_equal(out.test, test)


def test_a_class_with_one_row_cannot_be_stratified_and_says_so():
    frame, schema = labelled({"a": 10, "b": 10, "rare": 1})
    message = (
        r"^f.csv: column 'y': class 'rare' has 1 row; a stratified split needs at least 2 rows of every class "
        r"\(remove it or add rows\)$"
    )
    with pytest.raises(DataError, match=message):
        ingest.run(frame, schema, data_settings(), "auto", "f.csv")


def test_a_test_split_too_small_for_every_class_is_refused():
    frame, schema = labelled({"a": 2, "b": 2, "c": 2})
    message = r"^f.csv: test_size=0.2 gives 2 test and 4 train rows for 3 classes; each split needs a row of every class$"
    with pytest.raises(DataError, match=message):
        ingest.run(frame, schema, data_settings(test_size=0.2), "auto", "f.csv")


@pytest.mark.parametrize("empty", [np.nan, None, "", "  "])
def test_rows_with_an_empty_target_are_dropped_and_counted_when_asked(empty):
    frame, schema = labelled({"a": 10, "b": 10})
    frame.loc[[2, 5, 11], "y"] = empty
    out = ingest.run(frame, schema, data_settings(drop_missing_target=True), "auto", "f.csv")
    assert out.dropped_rows == 3 and len(out.data) == 17 and len(out.train) + len(out.test) == 17
    assert set(out.data["y"]) == set(frame["y"].drop([2, 5, 11]))
    pd.testing.assert_series_equal(out.data["x"], frame["x"].drop([2, 5, 11]).reset_index(drop=True))


@pytest.mark.parametrize("empty", [np.nan, None, "", "  "])
def test_by_default_an_empty_target_is_refused_naming_drop_missing_target(empty):
    frame, schema = labelled({"a": 10, "b": 10})
    frame.loc[[2, 5], "y"] = empty
    message = (
        r"^f.csv: column 'y': 2 missing value\(s\), first at row 3 "
        r"\(to drop such rows instead: -P data.drop_missing_target=true\)$"
    )
    with pytest.raises(DataError, match=message):
        ingest.run(frame, schema, data_settings(), "auto", "f.csv")


def test_dropping_rows_with_no_target_works_for_a_quantity_too(small_schema):
    frame = make_frame(rows=30).assign(y=lambda f: f["y"].where(~f.index.isin([0, 29])))
    assert ingest.run(frame, small_schema, data_settings(drop_missing_target=True), "auto", "f.csv").dropped_rows == 2
    with pytest.raises(DataError, match=r"column 'y': 2 missing value\(s\), first at row 1 \(to drop such rows instead: -P data.drop"):
        ingest.run(frame, small_schema, data_settings(), "auto", "f.csv")
    complete = ingest.run(make_frame(rows=30), small_schema, data_settings(drop_missing_target=True), "auto", "f.csv")
    assert complete.dropped_rows == 0 and len(complete.data) == 30
    # A numeric column read as text (a blank cell kept as spaces) has no value there either, not a non-number.
    spaces = make_frame(rows=30).assign(y=lambda f: f["y"].astype(object).where(f.index != 4, "  "))
    with pytest.raises(DataError, match=r"column 'y': 1 missing value\(s\), first at row 5 \(to drop such rows instead"):
        ingest.run(spaces, small_schema, data_settings(), "auto", "f.csv")
    assert ingest.run(spaces, small_schema, data_settings(drop_missing_target=True), "auto", "f.csv").dropped_rows == 1


BOOL_SCHEMA = {"target": "y", "columns": {"flag": {"dtype": "bool"}, "x": {}, "y": {}}}


def test_bool_columns_read_true_false_yes_no_and_one_zero_in_any_case():
    schema = parse_schema(BOOL_SCHEMA, source="s.yaml")
    assert schema.column("flag").categorical and schema.categorical_features == ["flag"]
    text = ["true", "FALSE", "Yes", "no", "1", "0", " True ", None]
    frame = pd.DataFrame({"flag": text, "x": np.arange(8.0), "y": np.arange(8.0)})
    parsed = validate_frame(frame, schema, "f.csv")["flag"]
    assert parsed.tolist()[:7] == [True, False, True, False, True, False, True] and pd.isna(parsed.iloc[7])
    assert all(type(v) is bool for v in parsed.iloc[:7])
    # As a file's reader gives them: bools, 0/1 numbers, or 1.0/0.0 when a value is missing.
    for values in ([True, False, True], [1, 0, 1], [1.0, 0.0, np.nan]):
        got = validate_frame(pd.DataFrame({"flag": values, "x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0]}), schema, "f.csv")["flag"]
        assert got.tolist()[:2] == [True, False]


def test_a_value_a_bool_column_cannot_read_is_named():
    schema = parse_schema(BOOL_SCHEMA, source="s.yaml")
    frame = pd.DataFrame({"flag": ["yes", "no", "maybe", "2", "y"], "x": np.arange(5.0), "y": np.arange(5.0)})
    message = r"^f.csv: column 'flag': 3 value\(s\) that are not true/false \(true, false, 1, 0, yes, no\), first 'maybe' at row 3$"
    with pytest.raises(DataError, match=message):
        validate_frame(frame, schema, "f.csv")


def test_a_bool_target_is_a_classification_target():
    frame, schema = labelled({"yes": 10, "no": 10}, dtype="bool")
    out = ingest.run(frame, schema, data_settings(), "auto", "f.csv")
    assert out.task is CLASSIFICATION
    assert out.test["y"].value_counts().to_dict() == {True: 2, False: 2}


@pytest.mark.parametrize(
    ("header", "hint"),
    [
        (" x1", "(the file has ' x1' for 'x1': check case and spaces in its header)"),
        ("X1", "(the file has 'X1' for 'x1': check case and spaces in its header)"),
        ("x11", "(the file has 'x11': misspelt?)"),
    ],
)
def test_a_near_miss_column_name_is_named(small_schema, header, hint):
    frame = make_frame(rows=10).rename(columns={"x1": header})
    with pytest.raises(DataError) as info:
        validate_frame(frame, small_schema, "f.csv")
    assert str(info.value) == f"f.csv: missing column(s) 'x1' required by the schema {hint}"
