"""The dataset schema (conf/schema.yaml) and the checks ingest runs against it."""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steps.core.conf import did_you_mean, display_path, project_path, read_yaml_with_digest
from steps.core.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

DTYPES = ("float", "int", "string", "bool")
# Text a bool column may hold (any case), and the value each one means.
BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
# The column of model predictions that evaluate and predict add next to the data's columns.
PREDICTION_COLUMN = "prediction"
_COLUMN_KEYS = ("dtype", "categorical", "allowed", "min", "max", "nullable")
_SCHEMA_KEYS = ("target", "columns", "thresholds")
_BOUNDS = ("min", "max")
# How many problems one error message lists before summarising the rest.
_MAX_LISTED = 3
# Delimiters to suggest when a CSV file reads as a single column.
_OTHER_DELIMITERS = (";", "\t", "|")


@dataclass(frozen=True)
class ColumnSpec:
    """What one column must look like."""

    name: str
    dtype: str = "float"
    categorical: bool = False
    allowed: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    nullable: bool = True

    @property
    def numeric(self) -> bool:
        return self.dtype in ("float", "int")

    @property
    def labels(self) -> bool:
        """Its values name classes (text, true/false, or declared categorical), not quantities."""
        return self.categorical or self.dtype in ("string", "bool")


@dataclass(frozen=True)
class DataSchema:
    """The columns a dataset must have, their types and ranges, and which one is the target."""

    target: str
    columns: tuple[ColumnSpec, ...] = field(default_factory=tuple)
    # Absolute bounds on the test metrics of models of this data, in its units:
    # {"r2": {"min": 0.3}, "rmse": {"max": 65.0}} (checked against the task's metrics by the gate).
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def target_spec(self) -> ColumnSpec:
        return self.column(self.target)

    @property
    def features(self) -> list[str]:
        return [c.name for c in self.columns if c.name != self.target]

    @property
    def numeric_features(self) -> list[str]:
        return [c.name for c in self.columns if c.name != self.target and not c.categorical]

    @property
    def categorical_features(self) -> list[str]:
        return [c.name for c in self.columns if c.name != self.target and c.categorical]

    @property
    def text_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.dtype == "string"]

    @property
    def float_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.dtype == "float"]

    def column(self, name: str) -> ColumnSpec:
        return next(c for c in self.columns if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        """The YAML form of the schema (as in conf/schema.yaml), without unset options."""
        columns = {}
        for spec in self.columns:
            values = {k: v for k, v in asdict(spec).items() if k != "name" and v is not None}
            if values.get("allowed") is not None:
                values["allowed"] = list(values["allowed"])
            columns[spec.name] = values
        result: dict[str, Any] = {"target": self.target, "columns": columns}
        if self.thresholds:
            result["thresholds"] = {metric: dict(bounds) for metric, bounds in self.thresholds.items()}
        return result


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _allowed_values(allowed: Any, dtype: str, where: str) -> tuple[Any, ...] | None:
    """``allowed`` converted to the column's type, so YAML's guesses do not reject every row."""
    if allowed is None:
        return None
    if not isinstance(allowed, list) or not allowed:
        raise ConfigError(f"{where}.allowed: expected a non-empty list of values, got {allowed!r}")
    values = []
    for value in allowed:
        if dtype == "string" and isinstance(value, str | int) and not isinstance(value, bool):
            values.append(str(value))
        elif dtype == "bool" and isinstance(value, bool):
            values.append(value)
        elif dtype != "string" and _is_number(value):
            values.append(float(value))
        else:
            hint = " (quote it: YAML reads yes/no/on/off as booleans)" if isinstance(value, bool) else ""
            raise ConfigError(f"{where}.allowed: {value!r} is not a {dtype} value{hint}")
    return tuple(values)


def _parse_column(name: Any, spec_raw: Any, source: str) -> ColumnSpec:
    where = f"{source}: columns.{name}"
    if not isinstance(name, str):
        raise ConfigError(f"{where}: column names must be strings; quote it (YAML read it as {type(name).__name__})")
    spec_raw = {} if spec_raw is None else spec_raw
    if not isinstance(spec_raw, dict):
        raise ConfigError(f"{where}: expected a mapping of {', '.join(_COLUMN_KEYS)}")
    for key in spec_raw:
        if key not in _COLUMN_KEYS:
            raise ConfigError(f"{where}: unknown key '{key}'{did_you_mean(str(key), _COLUMN_KEYS)}")
    dtype = spec_raw.get("dtype", "float")
    if dtype not in DTYPES:
        raise ConfigError(f"{where}.dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    for key in ("categorical", "nullable"):
        if key in spec_raw and not isinstance(spec_raw[key], bool):
            raise ConfigError(f"{where}.{key}: expected true or false, got {spec_raw[key]!r}")
    # Text and true/false can only be one-hot encoded, so string and bool columns are categorical.
    categorical = spec_raw.get("categorical", dtype in ("string", "bool"))
    if dtype in ("string", "bool") and not categorical:
        raise ConfigError(f"{where}: a {dtype} column must be categorical (remove 'categorical: false' or use a numeric dtype)")
    low, high = spec_raw.get("min"), spec_raw.get("max")
    for key, value in (("min", low), ("max", high)):
        if value is not None and (not _is_number(value) or dtype not in ("float", "int")):
            raise ConfigError(f"{where}.{key}: expected a finite number on a numeric column, got {value!r}")
    if low is not None and high is not None and low > high:
        raise ConfigError(f"{where}: min ({low}) is greater than max ({high})")
    return ColumnSpec(
        name=name,
        dtype=dtype,
        categorical=categorical,
        allowed=_allowed_values(spec_raw.get("allowed"), dtype, where),
        min=low,
        max=high,
        nullable=spec_raw.get("nullable", True),
    )


def parse_schema(raw: Any, source: str) -> DataSchema:
    """Validate the YAML form of a schema; errors name ``source`` and the offending key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with 'target' and 'columns'")
    for key in raw:
        if key not in _SCHEMA_KEYS:
            raise ConfigError(f"{source}: unknown key '{key}'{did_you_mean(str(key), _SCHEMA_KEYS)}")
    columns_raw = raw.get("columns")
    if not isinstance(columns_raw, dict) or not columns_raw:
        raise ConfigError(f"{source}: 'columns' must map each column name to its spec")
    specs = [_parse_column(name, spec_raw, source) for name, spec_raw in columns_raw.items()]
    target = raw.get("target")
    if not isinstance(target, str):
        raise ConfigError(f"{source}: target must be a column name (a string), got {target!r}")
    names = [s.name for s in specs]
    if target not in names:
        raise ConfigError(f"{source}: target {target!r} is not one of the columns{did_you_mean(str(target), names)}")
    target_spec = specs[names.index(target)]
    if len(specs) < 2:
        raise ConfigError(f"{source}: the schema needs at least one feature column besides the target")
    # A missing or infinite target can never be used for training, whatever the file says.
    specs[names.index(target)] = ColumnSpec(**{**asdict(target_spec), "nullable": False})
    return DataSchema(target=target, columns=tuple(specs), thresholds=_parse_thresholds(raw.get("thresholds"), source))


def _parse_thresholds(raw: Any, source: str) -> dict[str, dict[str, float]]:
    """``thresholds: {r2: {min: 0.3}, rmse: {max: 65}}``: each metric's bound(s), as numbers.

    Which metric names are valid depends on the task; the gate checks them (steps/core/gate.py).
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: thresholds: expected a mapping such as {{r2: {{min: 0.3}}, rmse: {{max: 65}}}}")
    thresholds = {}
    for metric, bounds in raw.items():
        where = f"{source}: thresholds.{metric}"
        if not isinstance(bounds, dict) or not bounds:
            raise ConfigError(f"{where}: expected {{min: <number>}} and/or {{max: <number>}}, got {bounds!r}")
        for key, value in bounds.items():
            if key not in _BOUNDS:
                raise ConfigError(f"{where}: unknown key '{key}'{did_you_mean(str(key), _BOUNDS)}; expected min and/or max")
            if not _is_number(value):
                raise ConfigError(f"{where}.{key}: expected a finite number, got {value!r}")
        thresholds[str(metric)] = {key: float(value) for key, value in bounds.items()}
    return thresholds


def extra_columns(names: Iterable[object], schema: DataSchema) -> list[str]:
    """The columns of a file that ``schema`` does not name (IDs, notes): the caller says what it does with them."""
    known = {c.name for c in schema.columns}
    return [str(n) for n in names if str(n) not in known]


def load_schema(path: str | Path) -> DataSchema:
    """Load and validate a schema file (relative paths resolve inside the project)."""
    return load_schema_with_digest(path)[0]


def load_schema_with_digest(path: str | Path) -> tuple[DataSchema, str]:
    """:func:`load_schema`, and the SHA-256 of the bytes it was parsed from (the cache keys ingest by it)."""
    raw, digest = read_yaml_with_digest(path)
    return parse_schema(raw, display_path(project_path(path))), digest


def _first(mask: pd.Series, values: pd.Series) -> str:
    """``first <value> at row <n>`` for the first True of ``mask`` (rows count from 1)."""
    position = int(np.flatnonzero(mask.to_numpy())[0])
    value = values.iloc[position]
    value = value.item() if isinstance(value, np.generic) else value
    return f"first {value!r} at row {position + 1}"


def _range_text(spec: ColumnSpec) -> str:
    if spec.min is not None and spec.max is not None:
        return f"outside [{spec.min}, {spec.max}]"
    return f"below the minimum {spec.min}" if spec.min is not None else f"above the maximum {spec.max}"


def _flag(problems: list[str], mask: pd.Series, label: str, values: pd.Series) -> None:
    """Add ``<count> <label>, first <value> at row <n>`` to ``problems`` when ``mask`` has any."""
    if mask.any():
        problems.append(f"{int(mask.sum())} {label}, {_first(mask, values)}")


def _column_problems(spec: ColumnSpec, raw: pd.Series, hint: str = "") -> tuple[pd.Series, list[str]]:
    """The column cast to its schema type, and what is wrong with it (``hint``: what to do about missing values)."""
    problems: list[str] = []
    missing_before = raw.isna()
    if spec.numeric:
        values = pd.to_numeric(raw, errors="coerce").astype("float64")
        _flag(problems, values.isna() & ~missing_before, "non-numeric value(s)", raw)
        infinite = pd.Series(np.isinf(values.to_numpy()))
        if infinite.any():  # (mask() copies the column even when nothing is masked)
            _flag(problems, infinite, "infinite value(s)", values)
            values = values.mask(infinite)
        if spec.dtype == "int":
            _flag(problems, values.notna() & (values % 1 != 0), "non-integer value(s)", values)
    elif spec.dtype == "bool":
        values = _as_bool(raw)
        _flag(problems, values.isna() & ~missing_before, f"value(s) that are not true/false ({', '.join(BOOL_TEXT)})", raw)
    else:
        values = raw.astype("string").astype(object).where(~missing_before, np.nan)

    present = values.notna()
    if not present.any():
        if missing_before.all():
            problems.append("every value is missing")
        return values, problems
    if not spec.nullable and missing_before.any():
        first_row = int(np.flatnonzero(missing_before.to_numpy())[0]) + 1
        problems.append(f"{int(missing_before.sum())} missing value(s), first at row {first_row}{hint}")
    if spec.numeric:
        low = spec.min if spec.min is not None else -math.inf
        high = spec.max if spec.max is not None else math.inf
        _flag(problems, present & ((values < low) | (values > high)), f"value(s) {_range_text(spec)}", values)
    if spec.allowed is not None:
        _flag(problems, present & ~values.isin(set(spec.allowed)), f"value(s) not in allowed {list(spec.allowed)}", values)
    return values, problems


def _as_bool(raw: pd.Series) -> pd.Series:
    """True/False (objects) from bools, 0/1 or text such as ``yes``; NaN where it is none of them."""
    if pd.api.types.is_bool_dtype(raw):
        return raw.astype(object)
    text = raw.astype("string").str.strip().str.lower()
    # 1.0 and 0.0 too: a numeric column with a missing value reads as floats.
    text = text.replace({"1.0": "1", "0.0": "0"})
    return text.map(BOOL_TEXT, na_action="ignore").astype(object).where(text.isin(list(BOOL_TEXT)), np.nan)


def _near_misses(missing: list[str], names: list[str]) -> str:
    """`` (the file has ' bmi' for 'bmi')``: file columns that differ from a missing one only in
    case or surrounding spaces, else the closest spelling of the first missing one."""
    folded = {name.strip().lower(): name for name in names}
    near = [(folded[want.strip().lower()], want) for want in missing if want.strip().lower() in folded]
    if near:
        pairs = ", ".join(f"{have!r} for {want!r}" for have, want in near)
        return f" (the file has {pairs}: check case and spaces in its header)"
    close = difflib.get_close_matches(missing[0], names, n=1, cutoff=0.6)
    return f" (the file has {close[0]!r}: misspelt?)" if close else ""


def _other_delimiter(names: list[str]) -> str | None:
    """The delimiter a file read as one column seems to use instead of ',', if any."""
    if len(names) != 1:
        return None
    return next((sep for sep in _OTHER_DELIMITERS if sep in names[0]), None)


def validate_frame(
    frame: pd.DataFrame, schema: DataSchema, source: str, require_target: bool = True, missing_target_hint: str = ""
) -> pd.DataFrame:
    """Check ``frame`` against ``schema`` and return it typed, with only the schema's columns.

    ``require_target=False`` is for rows to score: the target column may then be absent (it is
    checked when present). ``missing_target_hint`` ends the message about missing target values.
    Raises :class:`DataError` naming ``source``, the column(s) and the problem(s).
    """
    if frame.shape[1] == 0:
        raise DataError(f"{source}: the file is empty (no header, no rows)")
    names = [str(c) for c in frame.columns]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataError(f"{source}: duplicate column name(s) {', '.join(map(repr, duplicated))}")
    columns = [c for c in schema.columns if require_target or c.name != schema.target or c.name in names]
    missing = [c.name for c in columns if c.name not in names]
    if missing:
        delimiter = _other_delimiter(names)
        if delimiter:
            header = f"its header reads as one column {names[0]!r}"
            raise DataError(f"{source}: the file looks delimited by {delimiter!r} instead of ',' ({header})")
        label = "target column" if missing == [schema.target] else "column(s)"
        raise DataError(f"{source}: missing {label} {', '.join(map(repr, missing))} required by the schema{_near_misses(missing, names)}")
    if len(frame) == 0:
        raise DataError(f"{source}: no data rows (only a header)")

    typed = {}
    problems = []
    for spec in columns:
        hint = missing_target_hint if spec.name == schema.target else ""
        typed[spec.name], column_problems = _column_problems(spec, frame[spec.name].reset_index(drop=True), hint)
        problems += [f"column {spec.name!r}: {p}" for p in column_problems]
    if problems:
        more = f" (and {len(problems) - _MAX_LISTED} more problem(s))" if len(problems) > _MAX_LISTED else ""
        raise DataError(f"{source}: " + "; ".join(problems[:_MAX_LISTED]) + more)
    # copy=False: columns that needed no conversion share memory with ``frame`` (no second copy
    # of a large dataset); pandas copies on write, so neither frame can change the other.
    return pd.DataFrame(typed, copy=False)
