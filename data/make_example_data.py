"""Write data/example_data.csv and data/new_patients.csv from scikit-learn's bundled diabetes dataset.

The data ships inside scikit-learn, so nothing is downloaded. Values are the raw, unscaled
measurements (``scaled=False``); the regression target is the column ``target``.

data/new_patients.csv is a small batch to score with ``-e predict``: the first rows' features,
without ``target``, and a ``patient_id`` column the schema does not name (predict passes it
through to its predictions, so each prediction can be matched to its patient).

    python data/make_example_data.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from sklearn.datasets import load_diabetes

DEFAULT_OUTPUT = Path(__file__).with_name("example_data.csv")
DEFAULT_NEW_PATIENTS = Path(__file__).with_name("new_patients.csv")
NEW_PATIENT_ROWS = 10


def build_frame() -> pd.DataFrame:
    """The diabetes data as one frame of raw feature columns plus ``target``."""
    return load_diabetes(as_frame=True, scaled=False).frame


def build_new_patients(frame: pd.DataFrame) -> pd.DataFrame:
    """The first rows of ``frame`` without ``target``, each with a ``patient_id`` in front."""
    patients = frame.drop(columns="target").head(NEW_PATIENT_ROWS).reset_index(drop=True)
    patients.insert(0, "patient_id", [f"patient-{number:03d}" for number in range(1, len(patients) + 1)])
    return patients


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="CSV file to write")
    parser.add_argument("--new-patients", type=Path, default=DEFAULT_NEW_PATIENTS, help="CSV file of rows to score")
    args = parser.parse_args(argv)
    frame = build_frame()
    frame.to_csv(args.output, index=False)
    # "\n" line endings on every platform: the committed file is compared byte for byte.
    build_new_patients(frame).to_csv(args.new_patients, index=False, lineterminator="\n")


if __name__ == "__main__":
    main()
