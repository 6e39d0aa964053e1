"""The bundled classification example: data/breast_cancer.csv, its script and its reviewed schema."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from types import ModuleType

import pandas as pd
import pytest

from steps.core.schema import load_schema, parse_schema, validate_frame
from steps.core.schema_draft import draft
from tests.conftest import PROJECT_ROOT

DATA = PROJECT_ROOT / "data/breast_cancer.csv"
SCHEMA = "conf/breast_cancer.schema.yaml"
SCRIPT = PROJECT_ROOT / "data/make_classification_example.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_classification_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_data() -> pd.DataFrame:
    return pd.read_csv(DATA, dtype={"diagnosis": "string"})


def test_the_script_writes_the_committed_csv(script, tmp_path):
    output = tmp_path / "breast_cancer.csv"
    script.main(["--output", str(output)])
    assert output.read_bytes() == DATA.read_bytes(), "run python data/make_classification_example.py and commit the CSV"


def test_the_csv_has_snake_case_measurements_and_string_labels():
    frame = read_data()
    assert frame.shape == (569, 31)
    assert frame.columns[0] == "mean_radius" and frame.columns[-1] == "diagnosis"
    assert all(name.islower() and " " not in name for name in frame.columns)
    assert frame["diagnosis"].value_counts().to_dict() == {"benign": 357, "malignant": 212}


def test_the_csv_satisfies_its_reviewed_schema():
    schema = load_schema(SCHEMA)
    validated = validate_frame(read_data(), schema, str(DATA))
    assert len(validated) == 569
    assert schema.target == "diagnosis"
    assert (schema.target_spec.dtype, schema.target_spec.allowed, schema.target_spec.nullable) == ("string", ("benign", "malignant"), False)
    assert schema.thresholds == {}
    assert all(schema.column(name).min == 0 and schema.column(name).max is None for name in schema.features)


def test_the_reviewed_schema_is_the_draft_with_bounds_added():
    drafted = draft(read_data(), None, 20, str(DATA))
    assert (drafted.target, drafted.task) == ("diagnosis", "classification")
    reviewed = load_schema(SCHEMA)
    unbounded = tuple(replace(spec, min=None, max=None) for spec in reviewed.columns)
    assert replace(reviewed, columns=unbounded) == parse_schema(drafted.to_dict(), "draft")
