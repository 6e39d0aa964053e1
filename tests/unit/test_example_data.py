"""The bundled regression example: data/example_data.csv and data/new_patients.csv, from their script."""

from __future__ import annotations

import importlib.util

import pandas as pd

from steps.core.schema import load_schema, validate_frame
from tests.conftest import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "data/make_example_data.py"
EXAMPLE = PROJECT_ROOT / "data/example_data.csv"
NEW_PATIENTS = PROJECT_ROOT / "data/new_patients.csv"


def load_script():
    spec = importlib.util.spec_from_file_location("make_example_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_writes_the_committed_files(tmp_path):
    example, patients = tmp_path / "example_data.csv", tmp_path / "new_patients.csv"
    load_script().main(["--output", str(example), "--new-patients", str(patients)])
    assert example.read_bytes() == EXAMPLE.read_bytes(), "run python data/make_example_data.py and commit the CSVs"
    assert patients.read_bytes() == NEW_PATIENTS.read_bytes(), "run python data/make_example_data.py and commit the CSVs"


def test_new_patients_are_example_rows_without_the_target_and_with_an_id():
    patients, example = pd.read_csv(NEW_PATIENTS), pd.read_csv(EXAMPLE)
    assert list(patients.columns) == ["patient_id", *example.columns.drop("target")]
    assert patients["patient_id"].is_unique
    features = patients.drop(columns="patient_id")
    pd.testing.assert_frame_equal(features, example[features.columns].head(len(features)))
    # predict checks the rows against the schema; the target may be absent and patient_id passes through.
    schema = load_schema("conf/schema.yaml")
    assert "patient_id" not in schema.features
    validate_frame(features, schema, str(NEW_PATIENTS), require_target=False)
