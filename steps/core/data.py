"""The data section of conf/pipeline.yaml, and the train/test split ingest makes of it."""

from __future__ import annotations

import math

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from steps.core.errors import DataError

# Each split needs at least this many rows (R² and RMSE are meaningless on fewer).
MIN_SPLIT_ROWS = 2
# The longest download deadline accepted (a thread's wait cannot be longer than about 290 years).
MAX_DOWNLOAD_SECONDS = 30 * 24 * 3600


class DataSettings(BaseModel):
    """Where the rows come from, the schema they must satisfy, and how they are split."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)

    uri: str
    schema_file: str = Field(alias="schema")
    test_size: float
    seed: int
    drop_missing_target: bool
    download_timeout: float

    @field_validator("uri", "schema_file")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("test_size")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0 < value < 1:
            raise ValueError(f"must be between 0 and 1 (exclusive), got {value}")
        return value

    @field_validator("download_timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not 0 < value <= MAX_DOWNLOAD_SECONDS:
            raise ValueError(f"must be a number of seconds between 0 (exclusive) and {MAX_DOWNLOAD_SECONDS:,} (30 days), got {value}")
        return value

    @field_validator("seed")
    @classmethod
    def _seed(cls, value: int) -> int:
        if not 0 <= value < 2**32:
            raise ValueError(f"must be between 0 and 2**32 - 1, got {value}")
        return value


def split(data: pd.DataFrame, test_size: float, seed: int, source: str, stratify: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, test)`` rows of validated ``data``, reproducibly (``seed``); ``source`` names it in errors.

    ``stratify``: a class column whose class proportions both splits keep (classification).
    """
    n_test = math.ceil(len(data) * test_size)
    if len(data) < 2 * MIN_SPLIT_ROWS:
        raise DataError(f"{source}: {len(data)} row(s) are too few to split; train and test need at least {MIN_SPLIT_ROWS} rows each")
    if n_test < MIN_SPLIT_ROWS or len(data) - n_test < MIN_SPLIT_ROWS:
        raise DataError(
            f"{source}: test_size={test_size} splits {len(data)} rows into {len(data) - n_test} train and {n_test} test rows; "
            f"each split needs at least {MIN_SPLIT_ROWS} rows"
        )
    from sklearn.model_selection import train_test_split  # noqa: PLC0415 - ingest splits; the driver only checks settings

    if stratify is None:
        train, test = train_test_split(data, test_size=n_test, random_state=seed, shuffle=True)
        return train.reset_index(drop=True), test.reset_index(drop=True)
    counts = data[stratify].value_counts()
    rare = counts[counts < 2]
    if len(rare):
        raise DataError(
            f"{source}: column {stratify!r}: class {rare.index[0]!r} has {int(rare.iloc[0])} row; "
            "a stratified split needs at least 2 rows of every class (remove it or add rows)"
        )
    if n_test < len(counts) or len(data) - n_test < len(counts):
        raise DataError(
            f"{source}: test_size={test_size} gives {n_test} test and {len(data) - n_test} train rows for {len(counts)} classes; "
            "each split needs a row of every class"
        )
    train, test = train_test_split(data, test_size=n_test, random_state=seed, shuffle=True, stratify=data[stratify])
    for name, part in (("test", test), ("train", train)):
        absent = [label for label in counts.index if label not in set(part[stratify])]
        if absent:
            raise DataError(
                f"{source}: column {stratify!r}: class {absent[0]!r} ({int(counts[absent[0]])} rows) has no row in the {name} split "
                f"(test_size={test_size}); every class needs rows in both: use a larger test_size, or more rows of the rare classes"
            )
    return train.reset_index(drop=True), test.reset_index(drop=True)
