"""A first schema for a user's own data: each column's type inferred from its values, as YAML to review.

:func:`draft` looks at a frame (the target given, or guessed) and :func:`render` writes the result
in conf/schema.yaml's format, one line per column, with what was observed (ranges, missing
values, distinct values) as comments: bounds are left for the user to decide, since new data
slightly outside the observed range would otherwise be refused. The text always loads with
:func:`steps.core.schema.parse_schema`; keys and values are written by PyYAML, so column names
YAML would misread (``yes``, ``1``, ``a: b``) come out quoted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, field_validator

from steps.core.conf import did_you_mean
from steps.core.errors import ConfigError, DataError
from steps.core.tasks import AMBIGUOUS_MAX_VALUES

# Column names taken for the target when none is given (any case), in this order of preference;
# without any of them, the last column.
TARGET_NAMES = ("target", "label", "y", "class", "outcome", "diagnosis")
# Text a column holds to be drafted as bool (any case, around spaces).
BOOL_WORDS = {"true": True, "false": False}
TASKS = ("classification", "regression", "ambiguous")
# Characters PyYAML reads as line breaks, and those it refuses anywhere in a file: neither may
# appear in a comment or a plain scalar.
_LINE_BREAKS = "\r\n\x85\u2028\u2029"
_UNPRINTABLE = re.compile("[^\x09\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Wide enough that PyYAML never folds a long value over two lines.
_WIDTH = 1 << 30
# The longest key written on the line of its value (YAML allows 1024 characters).
_MAX_KEY = 1000
# Distinct values of a column named in a comment, at most.
_LISTED = 5


class DraftSettings(BaseModel):
    """The ``schema`` section: how ``mlflow run . -e schema`` drafts a schema."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    target: str
    output: str
    max_categories: int
    overwrite: bool

    @field_validator("max_categories")
    @classmethod
    def _categories(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be at least 1, got {value}")
        return value


@dataclass(frozen=True)
class ColumnDraft:
    """One column as drafted: its type, its allowed values, and what was observed in it."""

    name: str
    dtype: str
    allowed: tuple[Any, ...] | None = None
    nullable: bool = True
    missing: int = 0
    distinct: int = 0
    low: float | None = None
    high: float | None = None
    # bool columns: how many true and false values.
    trues: int = 0
    falses: int = 0
    # Numeric columns: infinite values (ingest refuses them); text columns: values that are numbers.
    infinite: int = 0
    numbers: int = 0
    # Text columns with an allowed list: each value and how many rows hold it.
    counts: tuple[tuple[str, int], ...] = ()

    def spec(self) -> dict[str, Any]:
        """The column's entry in the schema's ``columns`` mapping."""
        spec: dict[str, Any] = {"dtype": self.dtype}
        if self.allowed is not None:
            spec["allowed"] = list(self.allowed)
        if not self.nullable:
            spec["nullable"] = False
        return spec


@dataclass(frozen=True)
class SchemaDraft:
    """A drafted schema: the columns, the target and how it was chosen, and the task it suggests."""

    rows: int
    target: str
    target_guessed: str | None  # why it was guessed (None: it was given)
    task: str  # one of TASKS
    task_reason: str
    max_categories: int
    columns: tuple[ColumnDraft, ...] = field(default_factory=tuple)
    left_out: tuple[str, ...] = field(default_factory=tuple)  # columns with no value at all

    def to_dict(self) -> dict[str, Any]:
        """The schema's YAML form, without the comments."""
        return {"target": self.target, "columns": {c.name: c.spec() for c in self.columns}}

    @property
    def target_column(self) -> ColumnDraft:
        return next(c for c in self.columns if c.name == self.target)


def draft(frame: pd.DataFrame, target: str | None, max_categories: int, source: str = "the data") -> SchemaDraft:
    """A schema for ``frame`` (read from ``source``): ``target`` is its target column (None: guess it).

    Text columns with at most ``max_categories`` distinct values get them as their ``allowed``
    list. Columns with no value in any row are left out (no type can be inferred from them).
    Raises :class:`DataError` when no schema can be drafted (no rows, fewer than two usable
    columns, repeated names) and :class:`ConfigError` for a ``target`` that is not a usable column.
    """
    names = [str(c) for c in frame.columns]
    if not names:
        raise DataError(f"{source}: the file is empty (no header, no rows)")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataError(f"{source}: duplicate column name(s) {', '.join(map(repr, duplicated))}")
    if len(frame) == 0:
        raise DataError(f"{source}: no data rows (only a header)")
    empty = [name for name, column in zip(names, frame.columns, strict=True) if frame[column].isna().all()]
    usable = [name for name in names if name not in empty]
    chosen, guessed = _pick_target(names, usable, target, source)
    if len(usable) < 2:
        raise DataError(f"{source}: a schema needs a target and at least one feature column with values; {_usable_text(usable, empty)}")
    columns = []
    for name, column in zip(names, frame.columns, strict=True):
        if name not in empty:
            columns.append(_column(name, frame[column].reset_index(drop=True), max_categories, is_target=name == chosen))
    spec = next(c for c in columns if c.name == chosen)
    task, reason = _task(spec)
    return SchemaDraft(
        rows=len(frame),
        target=chosen,
        target_guessed=guessed,
        task=task,
        task_reason=reason,
        max_categories=max_categories,
        columns=tuple(columns),
        left_out=tuple(empty),
    )


def _usable_text(usable: list[str], empty: list[str]) -> str:
    have = f"only {usable[0]!r} has values" if usable else "no column has values"
    return have + (f" ({len(empty)} column(s) have none)" if empty else "")


def _pick_target(names: list[str], usable: list[str], target: str | None, source: str) -> tuple[str, str | None]:
    """The target column, and why it was guessed (None when it was given)."""
    if target:
        if target not in names:
            raise ConfigError(f"{source} has no column {target!r}{did_you_mean(target, names)}; pass one of its columns as -P target")
        if target not in usable:
            raise ConfigError(f"-P target: column {target!r} of {source} has no value in any row")
        return target, None
    lowered = {name.strip().lower(): name for name in reversed(usable)}  # the first of equal names wins
    named = next((lowered[word] for word in TARGET_NAMES if word in lowered), None)
    if named is not None:
        return named, f"named like a target ({', '.join(TARGET_NAMES)})"
    if not usable:
        raise DataError(f"{source}: no column has a value in any row")
    return usable[-1], "the last column (none is named like a target)"


def _column(name: str, values: pd.Series, max_categories: int, is_target: bool) -> ColumnDraft:
    present = values.dropna()
    common = {"name": name, "nullable": not is_target, "missing": int(len(values) - len(present))}
    kind = _kind(present)
    if kind == "bool":
        trues = sum(bool(_as_bool(v)) for v in present.tolist())
        falses = len(present) - trues
        return ColumnDraft(dtype="bool", distinct=int(trues > 0) + int(falses > 0), trues=trues, falses=falses, **common)
    if kind == "number":
        typed = pd.api.types.is_numeric_dtype(present.dtype)
        numbers = present.to_numpy(dtype="float64") if typed else np.array(present.tolist(), dtype="float64")
        finite = numbers[np.isfinite(numbers)]
        integral = len(finite) > 0 and bool(np.all(finite % 1 == 0))
        return ColumnDraft(
            dtype="int" if integral else "float",
            distinct=len(np.unique(finite)),
            low=float(finite.min()) if len(finite) else None,
            high=float(finite.max()) if len(finite) else None,
            infinite=len(numbers) - len(finite),
            **common,
        )
    text = present.astype(str)
    counts = text.value_counts()
    listed = len(counts) <= max_categories
    # Numbers among text: a mostly numeric column with a few bad values (a handful of labels that
    # happen to be digits are only worth a note when the column has more values than it lists).
    numeric = 0 if listed else int(pd.to_numeric(text, errors="coerce").notna().sum())
    return ColumnDraft(
        dtype="string",
        allowed=tuple(sorted(counts.index)) if listed else None,
        distinct=len(counts),
        numbers=numeric,
        counts=tuple(sorted((str(value), int(count)) for value, count in counts.items())) if listed else (),
        **common,
    )


def _kind(present: pd.Series) -> str:
    """``bool``, ``number`` or ``string``: what the present values of a column are."""
    if pd.api.types.is_bool_dtype(present.dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(present.dtype) and not pd.api.types.is_complex_dtype(present.dtype):
        return "number"
    if isinstance(present.dtype, pd.StringDtype):  # text as read from a file: no per-value loop
        return "bool" if present.str.strip().str.lower().isin(list(BOOL_WORDS)).all() else "string"
    values = present.tolist()
    if all(_as_bool(v) is not None for v in values):
        return "bool"
    if all(isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_) for v in values):
        return "number"
    return "string"


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    return BOOL_WORDS.get(value.strip().lower()) if isinstance(value, str) else None


def _task(target: ColumnDraft) -> tuple[str, str]:
    """The task the target suggests, and why: ingest's own rule (steps/core/tasks.py) for ``model.task: auto``."""
    if target.dtype in ("string", "bool"):
        return "classification", f"the target holds labels ({target.dtype}, {target.distinct} distinct)"
    if target.dtype == "int" and target.distinct <= AMBIGUOUS_MAX_VALUES:
        counted = f"an integer with {target.distinct} distinct value(s)"
        return "ambiguous", f"set model.task or categorical: true (the target is {counted}: classes, or a quantity?)"
    which = "a float" if target.dtype == "float" else f"an integer with {target.distinct} distinct values"
    return "regression", f"the target is a quantity ({which})"


# --- the YAML text ------------------------------------------------------------------------------


class _Flow(dict):
    """A mapping written on one line: ``{dtype: string, allowed: [a, b]}``."""


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, with text that holds line breaks double-quoted (escaped, on one line)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if any(ch in _LINE_BREAKS for ch in value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(_Flow, lambda dumper, value: dumper.represent_mapping("tag:yaml.org,2002:map", value, flow_style=True))


def _scalar(value: Any) -> str:
    """``value`` as YAML writes it (quoted where it must be; text with line breaks escaped), on one line."""
    text = yaml.dump(value, Dumper=_Dumper, sort_keys=False, width=_WIDTH, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...")


def _entry(name: str, spec: dict[str, Any]) -> list[str]:
    """The line(s) of one column in the ``columns`` block: ``name: {dtype: ...}``."""
    key, value = _scalar(name), _scalar(_Flow(spec))
    # A key on the line of its value may be at most 1024 characters long (PyYAML's limit too);
    # a longer one is written as an explicit key, ``? name``, with the value on the next line.
    return [f"{key}: {value}"] if len(key) <= _MAX_KEY else [f"? {key}", f": {value}"]


def _comment(text: str) -> str:
    """``text`` made safe to follow a ``#``: one line of printable characters."""
    text = "".join(" " if ch in _LINE_BREAKS else ch for ch in text)
    return _UNPRINTABLE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _observed(column: ColumnDraft, max_categories: int) -> str:
    """What the values of ``column`` were, for its comment."""
    notes = []
    if column.dtype == "bool":
        notes.append(f"observed {column.trues:,} true, {column.falses:,} false")
    elif column.dtype in ("int", "float") and column.low is not None and column.high is not None:
        notes.append(f"observed {_number(column.low)} .. {_number(column.high)}")
    elif column.counts and not column.nullable:
        notes.append(", ".join(f"{_scalar(value)} {count:,}" for value, count in column.counts))
    elif column.allowed is not None:
        notes.append(f"{column.distinct} distinct value(s)")
    else:
        notes.append(f"{column.distinct:,} distinct values, more than {max_categories} to list: an identifier or free text? then remove it")
    if column.missing:
        notes.append(f"{column.missing:,} missing" + ("; ingest refuses missing targets: drop those rows" if not column.nullable else ""))
    if column.infinite:
        notes.append(f"{column.infinite:,} infinite (ingest refuses them)")
    if column.numbers:
        notes.append(f"{column.numbers:,} of its values are numbers: a numeric column with bad values?")
    if column.distinct == 1:
        notes.append("the same value in every row: no information")
    elif column.dtype == "int" and column.distinct <= max_categories and column.nullable:
        notes.append(f"{column.distinct} distinct values: codes? then add categorical: true")
    return ", ".join(notes)


def render(result: SchemaDraft, source: str) -> str:
    """``result`` as the commented YAML text of a schema file, drafted from ``source``."""
    target = result.target_column
    chosen = f"guessed: {result.target_guessed}; -P target=<column> picks another" if result.target_guessed else "given"
    lines = [
        f"# Schema drafted from {_comment(source)} on {result.rows:,} rows by `mlflow run . -e schema`.",
        "# A DRAFT: review every line before ingest checks data against it. The types were inferred",
        "# from these rows only, and an `allowed` list holds only the values seen in them. Observed",
        "# ranges and missing values are comments, not bounds: add min/max where a value outside is",
        "# an error, not just new data. Every column but the target may have missing values",
        "# (nullable: false forbids them). conf/schema.yaml shows the format.",
        "",
        f"target: {_scalar(result.target)}  # {_comment(chosen)}",
        f"# task: {result.task}: {_comment(result.task_reason)}",
        "columns:",
    ]
    for column in result.columns:
        observed = _observed(column, result.max_categories)
        role = "the target" if column is target else ""
        note = "; ".join(part for part in (role, observed) if part)
        entry = "\n".join(f"  {line}" for line in _entry(column.name, column.spec()))
        lines.append(f"{entry}  # {_comment(note)}" if note else entry)
    for name in result.left_out:
        lines.append(f"  # left out, no value in any row: {_comment(_scalar(name))}")
    return "\n".join(lines) + "\n"
