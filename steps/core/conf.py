"""conf/pipeline.yaml: the one place every default lives, and how values are checked.

Every entry point reads its defaults from that file (a section each: ``data``, ``model``,
``evaluation``, ...); a value given on the command line (``mlflow run . -P alpha=0.3`` arrives
as ``--alpha 0.3``) replaces the file's value, typed like it. The sections are pydantic models
defined beside the code that uses them (``core/data.py``, ``core/model.py``, ``core/gate.py``
...); :func:`validate` turns pydantic's report into the one-line errors users see, naming the
key and where its value came from, e.g. ``-P alpha: model.params.alpha: must be >= 0, got -1.0``.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from steps.core.errors import ConfigError, first_line

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = "conf/pipeline.yaml"

Section = TypeVar("Section", bound=BaseModel)


def project_path(path: str | Path) -> Path:
    """Relative paths are taken relative to the project root, not the current directory."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def display_path(path: Path) -> str:
    """``path`` relative to the project when it lies inside it (shorter, clearer messages)."""
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file, turning I/O and syntax problems into one-line ConfigErrors."""
    return read_yaml_with_digest(path)[0]


def read_yaml_with_digest(path: str | Path) -> tuple[Any, str]:
    """:func:`read_yaml`, and the SHA-256 of the bytes parsed: the file is read once (it may be a
    pipe, or be rewritten meanwhile), so the digest describes exactly what was parsed."""
    path = project_path(path)
    name = display_path(path)
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{name}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}: cannot read the file ({exc})") from None
    try:
        return yaml.safe_load(text), hashlib.sha256(data).hexdigest()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise ConfigError(f"{name}: invalid YAML{where}: {problem}") from None


def pipeline_file(path: str | Path = DEFAULT_CONFIG) -> dict[str, Any]:
    """The sections of conf/pipeline.yaml (or ``path``), as written."""
    resolved = project_path(path)
    try:
        stat = resolved.stat()
    except OSError:
        stat = None
    raw = _read_sections(resolved, stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0)
    return {name: dict(values) if isinstance(values, dict) else values for name, values in raw.items()}


@functools.lru_cache(maxsize=8)
def _read_sections(path: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    del mtime_ns, size  # part of the cache key only: an edited file is read again
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{display_path(path)}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def defaults(section: str, path: str | Path = DEFAULT_CONFIG) -> dict[str, Any]:
    """One section of conf/pipeline.yaml: the defaults of the entry point that uses it."""
    values = pipeline_file(path).get(section)
    if not isinstance(values, dict):
        raise ConfigError(f"{display_path(project_path(path))}: section '{section}' is missing or not a mapping")
    return values


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
_BOOL_TEXT = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def from_text(text: str, like: Any, where: str, *, loose: bool = False) -> Any:
    """Command-line ``text`` typed like ``like``: a sample of the key's declared type.

    Lists (a sweep's grid) are comma-separated: ``0.1,0.3,1``. ``like=None`` (a key with no
    value to go by) reads ``text`` as a YAML value: ``0.3``, ``5``, ``true``, ``null``, ``[1, 2]``;
    anything else stays text. ``loose``: ``like`` is only the file's value of a key of no declared
    type (an estimator's argument), so an integer there also lets a number with a fraction in.
    """
    if isinstance(like, dict):
        value = _yaml_value(str(text).strip(), where, mapping=True)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping such as {{name: value}}, got {text!r}")
        return value
    if isinstance(like, list | tuple):
        item = like[0] if like else 0.0
        parts = [part for part in str(text).split(",") if part.strip()]
        return [from_text(part, item, f"{where}[{i}]") for i, part in enumerate(parts)]
    stripped = str(text).strip()
    if like is None:
        return _yaml_value(stripped, where)
    if isinstance(like, bool):
        if stripped.lower() in _BOOL_TEXT:
            return _BOOL_TEXT[stripped.lower()]
        raise ConfigError(f"{where}: expected {_TYPE_NAMES[bool]}, got {stripped!r}")
    if isinstance(like, int | float):
        try:
            value = _number(stripped, like, loose)
        except ValueError:
            raise ConfigError(f"{where}: expected {_TYPE_NAMES[type(like)]}, got {stripped!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {stripped!r}")
        return value
    return str(text)


def _number(text: str, like: int | float, loose: bool) -> int | float:
    if isinstance(like, float):
        return float(text)
    try:
        return int(text)
    except ValueError:
        if loose:
            return float(text)
        raise


def _yaml_value(text: str, where: str, mapping: bool = False) -> Any:
    try:
        value = yaml.safe_load(text) if text else ({} if mapping else "")
    except yaml.YAMLError:
        return text
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {text!r}")
    kinds = bool | int | float | list | type(None) | (dict if mapping else bool)
    return value if isinstance(value, kinds) else text


def as_text(value: Any) -> str:
    """``value`` as command-line text that :func:`from_text` reads back to it (YAML: ``null``, ``true``)."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool | list | dict):
        return json.dumps(value)
    return repr(value)


def sample(model: type[BaseModel], key: str) -> Any:
    """A value of ``key``'s declared type in ``model`` (what -P text is typed like); None if it has none."""
    field = next((f for name, f in model.model_fields.items() if key in (name, f.alias)), None)
    if field is None:
        return None
    annotation = field.annotation
    if getattr(annotation, "__origin__", None) is dict or annotation is dict:
        return {}
    return {bool: False, int: 0, float: 0.0, str: "", list[float]: [0.0]}.get(annotation, "")


# pydantic's error types, in the project's words: ``{input}`` is the value given.
_MESSAGES = {
    "float_type": "expected a number, got {input!r}",
    "float_parsing": "expected a number, got {input!r}",
    "finite_number": "expected a finite number, got {input!r}",
    "int_type": "expected an integer, got {input!r}",
    "int_parsing": "expected an integer, got {input!r}",
    "int_from_float": "expected an integer, got {input!r}",
    "bool_type": "expected true or false, got {input!r}",
    "bool_parsing": "expected true or false, got {input!r}",
    "string_type": "expected a string, got {input!r}",
    "list_type": "expected a list of numbers such as [0.1, 0.3], got {input!r}",
    "tuple_type": "expected a list of numbers such as [0.1, 0.3], got {input!r}",
}


def validate(model: type[Section], section: str, values: Mapping[str, Any], origin: Callable[[str], str] | None = None) -> Section:
    """``values`` as the pydantic ``model`` of ``section``; one ConfigError line if they do not fit.

    ``origin(dotted_key)`` says where a value came from (``-P alpha``, ``conf/pipeline.yaml``);
    the message starts with it, then the key and the problem.
    """
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        raise problem(exc, section, model, origin) from None


def problem(exc: ValidationError, section: str, model: type[BaseModel], origin: Callable[[str], str] | None = None) -> ConfigError:
    """The first of pydantic's errors as one line: ``<origin>: <section.key>: <problem>``."""
    # An unknown key first: a misspelt key also makes the right one missing.
    error = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")[0]
    field = ".".join(str(part) for part in error["loc"] if not isinstance(part, int))
    dotted = f"{section}.{field}" if field else section
    kind = error["type"]
    if kind == "extra_forbidden":
        text = f"unknown key '{dotted}'{did_you_mean(dotted, [f'{section}.{f.alias or name}' for name, f in model.model_fields.items()])}"
    elif kind == "missing":
        text = f"missing key '{dotted}'"
    elif kind in _MESSAGES:
        text = f"{dotted}: {_MESSAGES[kind].format(input=error.get('input'))}"
    else:
        # Our own validators raise ValueError("must be >= 0, got -1.0"): pydantic prefixes it.
        message = str(error["msg"]).removeprefix("Value error, ")
        named = message.startswith((f"{section}.", f"{section}:"))
        # A check of a whole section names its key itself (``model.params.alpha: ...``, ``sweep: ...``).
        dotted = message.split(":", 1)[0] if named else dotted
        text = message if named else f"{dotted}: {message}"
    where = origin(dotted) if origin else ""
    return ConfigError(f"{where}: {text}" if where else text)
