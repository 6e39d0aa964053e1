"""Write data/example_data.csv from scikit-learn's bundled diabetes dataset.

The data ships inside scikit-learn, so nothing is downloaded. Values are the raw, unscaled
measurements (``scaled=False``); the regression target is the column ``target``.

    python data/make_example_data.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sklearn.datasets import load_diabetes

DEFAULT_OUTPUT = Path(__file__).with_name("example_data.csv")


def build_frame():
    """The diabetes data as one frame of raw feature columns plus ``target``."""
    return load_diabetes(as_frame=True, scaled=False).frame


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="CSV file to write")
    args = parser.parse_args(argv)
    build_frame().to_csv(args.output, index=False)


if __name__ == "__main__":
    main()
