"""Write data/breast_cancer.csv from scikit-learn's bundled breast cancer dataset.

The data ships inside scikit-learn, so nothing is downloaded. The 30 measurements keep
scikit-learn's names in snake_case (``mean radius`` -> ``mean_radius``); the class label is the
column ``diagnosis``, ``malignant`` or ``benign``. conf/breast_cancer.schema.yaml is its schema.

    python data/make_classification_example.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from sklearn.datasets import load_breast_cancer

DEFAULT_OUTPUT = Path(__file__).with_name("breast_cancer.csv")
TARGET = "diagnosis"


def build_frame() -> pd.DataFrame:
    """The breast cancer data as one frame of snake_case feature columns plus ``diagnosis``."""
    bunch = load_breast_cancer(as_frame=True)
    features = bunch.data.rename(columns=lambda name: "_".join(name.split()))
    labels = pd.Series(bunch.target_names[bunch.target.to_numpy()], name=TARGET)
    return pd.concat([features, labels], axis=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="CSV file to write")
    args = parser.parse_args(argv)
    # "\n" line endings on every platform: the committed file is compared byte for byte.
    build_frame().to_csv(args.output, index=False, lineterminator="\n")


if __name__ == "__main__":
    main()
