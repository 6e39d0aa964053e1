"""Generate a benchmark dataset of any size shaped like data/example_data.csv.

Same columns, types, rounding and ranges as the example (the diabetes data): the feature columns
are drawn from a multivariate normal with the example's means and covariances (so s1, s2 and s3
stay correlated), clipped to the example's ranges; ``sex`` is 1 or 2 in the example's proportion;
about 1% of the values of each numeric feature column are missing. ``target`` is the example's
least-squares linear fit of the features plus normal noise of the example's residual spread, so a
linear model reaches a test R² of about 0.45-0.5, as on the example. Deterministic for a seed.

Rows are generated and written in chunks with pyarrow, so memory stays flat whatever the size:

    python benchmarks/make_data.py --rows 1000000 --output OUT.csv [--seed 0] [--parquet OUT.parquet]
"""

from __future__ import annotations

import argparse
import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet

logger = logging.getLogger(__name__)

EXAMPLE = Path(__file__).resolve().parent.parent / "data" / "example_data.csv"
TARGET = "target"
COLUMNS = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6", TARGET]
# Decimal places of each column in the example (0: whole numbers, written as integers).
DECIMALS = {"age": 0, "sex": 0, "bmi": 1, "bp": 2, "s1": 0, "s2": 1, "s3": 0, "s4": 2, "s5": 4, "s6": 0, TARGET: 0}
# Fraction of missing values in each numeric feature column (never in sex or the target).
MISSING_FRACTION = 0.01
CHUNK_ROWS = 500_000
SCHEMA = pa.schema([(name, pa.int64() if DECIMALS[name] == 0 else pa.float64()) for name in COLUMNS])


@dataclass(frozen=True)
class Shape:
    """What the generated data imitates, measured on the example."""

    mean: np.ndarray  # of the features, in COLUMNS order (sex coded 1/2)
    cholesky: np.ndarray  # of the features' covariance
    low: np.ndarray  # per column, features then target
    high: np.ndarray
    sex_threshold: float  # sex is 2 where its latent normal value is above this
    coefficients: np.ndarray  # intercept, then one per feature
    noise: float  # standard deviation of the residuals


def measure(example: pd.DataFrame) -> Shape:
    features = example[COLUMNS[:-1]].to_numpy(dtype="float64")
    target = example[TARGET].to_numpy(dtype="float64")
    design = np.column_stack([np.ones(len(features)), features])
    coefficients, *_ = np.linalg.lstsq(design, target, rcond=None)
    residuals = target - design @ coefficients
    mean = features.mean(axis=0)
    share_of_2 = float((example["sex"] == 2).mean())
    sex = COLUMNS.index("sex")
    std_sex = float(features[:, sex].std(ddof=1))
    # Where a normal with sex's mean and spread leaves the example's share of 2s above it.
    threshold = NormalDist(mean[sex], std_sex).inv_cdf(1 - share_of_2)
    bounds = example[COLUMNS].to_numpy(dtype="float64")
    return Shape(
        mean=mean,
        cholesky=np.linalg.cholesky(np.cov(features, rowvar=False)),
        low=bounds.min(axis=0),
        high=bounds.max(axis=0),
        sex_threshold=threshold,
        coefficients=coefficients,
        noise=float(residuals.std(ddof=design.shape[1])),
    )


def generate_chunk(shape: Shape, rows: int, rng: np.random.Generator) -> pa.Table:
    """``rows`` rows of data shaped like the example."""
    latent = shape.mean + rng.standard_normal((rows, len(shape.mean))) @ shape.cholesky.T
    sex = COLUMNS.index("sex")
    latent[:, sex] = np.where(latent[:, sex] > shape.sex_threshold, 2.0, 1.0)
    features = np.clip(latent, shape.low[:-1], shape.high[:-1])
    target = shape.coefficients[0] + features @ shape.coefficients[1:] + rng.normal(0.0, shape.noise, rows)
    target = np.clip(target, shape.low[-1], shape.high[-1])
    arrays = []
    for position, name in enumerate(COLUMNS):
        values = np.round(target if name == TARGET else features[:, position], DECIMALS[name])
        mask = None
        if name not in ("sex", TARGET):
            mask = rng.random(rows) < MISSING_FRACTION
        arrays.append(pa.array(values.astype("int64") if DECIMALS[name] == 0 else values, mask=mask, type=SCHEMA.field(name).type))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def write(rows: int, output: Path, seed: int = 0, parquet: Path | None = None, example: Path = EXAMPLE) -> None:
    """Write ``rows`` generated rows to the CSV ``output`` (and to ``parquet`` when given)."""
    if rows < 1:
        raise ValueError(f"rows must be positive, got {rows}")
    shape = measure(pd.read_csv(example))
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    # No quoting: the header reads exactly as the example's (and there are no text values).
    csv_options = pa.csv.WriteOptions(quoting_style="none", quoting_header="none")
    with ExitStack() as stack:
        writers: list[pa.csv.CSVWriter | pa.parquet.ParquetWriter] = [pa.csv.CSVWriter(output, SCHEMA, write_options=csv_options)]
        if parquet is not None:
            writers.append(pa.parquet.ParquetWriter(parquet, SCHEMA))
        for writer in writers:
            stack.enter_context(writer)
        done = 0
        while done < rows:
            chunk = generate_chunk(shape, min(CHUNK_ROWS, rows - done), rng)
            for writer in writers:
                writer.write_table(chunk)
            done += chunk.num_rows
            logger.info("%d/%d rows written (%.1f s)", done, rows, time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, required=True, help="number of rows to generate")
    parser.add_argument("--output", type=Path, required=True, help="CSV file to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed and rows: same file)")
    parser.add_argument("--parquet", type=Path, default=None, help="also write the same rows to this Parquet file")
    args = parser.parse_args(argv)
    write(args.rows, args.output, seed=args.seed, parquet=args.parquet)


if __name__ == "__main__":
    main()
