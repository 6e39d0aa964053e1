"""The benchmark floor: the pipeline's computation in one process, without MLflow.

Reads the dataset (CSV with pandas' pyarrow engine, or Parquet), checks it (required columns,
numeric, no missing target), splits it like ingest (same test size and seed), fits the same
preprocessing (median imputation and scaling of the numeric columns, one-hot encoding of ``sex``)
and ElasticNet on the train split, and scores RMSE and R² on the test split. Nothing is logged or
saved: the time it takes is the least any pipeline doing this work can take.

The model's and the split's defaults are read from conf/pipeline.yaml. Prints one JSON line with
the metrics, the seconds spent in each phase and the peak resident memory (MB):

    python benchmarks/floor.py --data data/example_data.csv [--alpha 0.3] [--l1_ratio 0.5] [--max_iter 5000]

or, from Python, ``run(path, {"alpha": 0.3})`` returns the same dictionary.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import ElasticNet
from sklearn.metrics import r2_score, root_mean_squared_error
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

CONFIG = Path(__file__).resolve().parent.parent / "conf" / "pipeline.yaml"
TARGET = "target"
NUMERIC = ["age", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
CATEGORICAL = ["sex"]
FEATURES = NUMERIC + CATEGORICAL


def default_params(config: Path = CONFIG) -> dict[str, Any]:
    """alpha, l1_ratio, max_iter, test_size and seed as conf/pipeline.yaml sets them."""
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    model, data = raw["model"], raw["data"]
    return {
        "alpha": float(model["alpha"]),
        "l1_ratio": float(model["l1_ratio"]),
        "max_iter": int(model["max_iter"]),
        "test_size": float(data["test_size"]),
        "seed": int(data["seed"]),
    }


def read(path: str | Path) -> pd.DataFrame:
    if str(path).endswith(".parquet"):
        return pd.read_parquet(path)
    return pd.read_csv(path, engine="pyarrow")


def validate(data: pd.DataFrame) -> pd.DataFrame:
    """The schema's columns, checked: present, numeric, no missing target."""
    missing = [c for c in [*FEATURES, TARGET] if c not in data.columns]
    if missing:
        raise ValueError(f"missing column(s): {', '.join(missing)}")
    non_numeric = [c for c in [*FEATURES, TARGET] if not pd.api.types.is_numeric_dtype(data[c])]
    if non_numeric:
        raise ValueError(f"non-numeric column(s): {', '.join(non_numeric)}")
    if data[TARGET].isna().any():
        raise ValueError(f"{int(data[TARGET].isna().sum())} missing target value(s)")
    return data[[*FEATURES, TARGET]]


def build_model(alpha: float, l1_ratio: float, max_iter: int) -> Pipeline:
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    preprocess = ColumnTransformer(
        [("numeric", numeric, NUMERIC), ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), CATEGORICAL)]
    )
    return Pipeline([("preprocess", preprocess), ("regressor", ElasticNet(alpha=alpha, l1_ratio=l1_ratio, max_iter=max_iter))])


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (ru_maxrss: KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run(path: str | Path, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read, validate, split, fit and score ``path``; ``params`` override conf/pipeline.yaml's defaults."""
    values = default_params()
    unknown = set(params or {}) - set(values)
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(sorted(unknown))}; valid: {', '.join(values)}")
    values.update(params or {})
    timings: dict[str, float] = {}
    start = clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[phase] = now - clock
        clock = now

    data = read(path)
    lap("read")
    data = validate(data)
    lap("validate")
    train, test = train_test_split(data, test_size=values["test_size"], random_state=values["seed"], shuffle=True)
    lap("split")
    model = build_model(values["alpha"], values["l1_ratio"], values["max_iter"])
    model.fit(train[FEATURES], train[TARGET])
    lap("fit")
    predictions = model.predict(test[FEATURES])
    metrics = {"rmse": float(root_mean_squared_error(test[TARGET], predictions)), "r2": float(r2_score(test[TARGET], predictions))}
    lap("score")
    timings["total"] = time.perf_counter() - start
    return {
        "data": str(path),
        "rows": len(data),
        "train_rows": len(train),
        "test_rows": len(test),
        "params": values,
        "metrics": metrics,
        "seconds": {phase: round(seconds, 4) for phase, seconds in timings.items()},
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CSV or Parquet file with the feature columns and `target`")
    for name, value in default_params().items():
        parser.add_argument(f"--{name}", type=type(value), default=None, help=f"default {value} (conf/pipeline.yaml)")
    args = parser.parse_args(argv)
    overrides = {name: value for name, value in vars(args).items() if name != "data" and value is not None}
    try:
        result = run(args.data, overrides)
    except (OSError, ValueError) as exc:
        parser.exit(1, f"floor: {args.data}: {exc}\n")
    print(json.dumps(result))  # noqa: T201 (the result is the script's output)


if __name__ == "__main__":
    main()
