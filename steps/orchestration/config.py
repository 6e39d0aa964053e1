"""Loading and validating the pipeline configuration (conf/pipeline.yaml plus overrides).

Every key is typed by the dataclasses below; unknown keys, missing keys, values of the wrong type
and values out of range raise :class:`ConfigError` with a message that names the key and where
its value came from (the YAML file or a ``-P`` parameter).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from steps.core.errors import ConfigError, first_line

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = "conf/pipeline.yaml"
MLPROJECT = "MLproject"

# Parameters of MLproject's `main` entry point and the configuration key each one sets.
MAIN_PARAMETERS: dict[str, str] = {
    "data_uri": "data.uri",
    "test_size": "data.test_size",
    "seed": "data.seed",
    "alpha": "model.alpha",
    "l1_ratio": "model.l1_ratio",
    "model_name": "registry.model_name",
    "use_cache": "run.use_cache",
    "steps": "run.steps",
    "dry_run": "run.dry_run",
    "fail_on_reject": "run.fail_on_reject",
}

# Parameters of MLproject's `sweep` entry point: main's, with grids instead of one alpha/l1_ratio.
SWEEP_PARAMETERS: dict[str, str] = {
    **{name: key for name, key in MAIN_PARAMETERS.items() if name not in ("alpha", "l1_ratio", "steps", "dry_run")},
    "alphas": "sweep.alphas",
    "l1_ratios": "sweep.l1_ratios",
}

STEPS = ("ingest", "featurize", "train", "evaluate", "register")
# A sweep trains and evaluates at most this many grid points.
MAX_TRIALS = 100


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


@dataclass(frozen=True)
class DataConfig:
    uri: str
    schema: str
    test_size: float
    seed: int

    def __post_init__(self) -> None:
        _require(bool(self.uri.strip()), "data.uri", "must not be empty")
        _require(bool(self.schema.strip()), "data.schema", "must not be empty")
        _require(0 < self.test_size < 1, "data.test_size", f"must be between 0 and 1 (exclusive), got {self.test_size}")
        _require(0 <= self.seed < 2**32, "data.seed", f"must be between 0 and 2**32 - 1, got {self.seed}")


@dataclass(frozen=True)
class ModelConfig:
    alpha: float
    l1_ratio: float
    max_iter: int

    def __post_init__(self) -> None:
        _require(self.alpha >= 0, "model.alpha", f"must be >= 0, got {self.alpha}")
        _require(0 <= self.l1_ratio <= 1, "model.l1_ratio", f"must be between 0 and 1, got {self.l1_ratio}")
        _require(self.max_iter >= 1, "model.max_iter", f"must be >= 1, got {self.max_iter}")


@dataclass(frozen=True)
class EvaluationConfig:
    min_r2: float
    max_rmse: float
    champion_tolerance: float

    def __post_init__(self) -> None:
        _require(self.min_r2 <= 1, "evaluation.min_r2", f"must be <= 1 (the best possible R²), got {self.min_r2}")
        _require(self.max_rmse > 0, "evaluation.max_rmse", f"must be > 0, got {self.max_rmse}")
        _require(
            0 <= self.champion_tolerance < 1,
            "evaluation.champion_tolerance",
            f"must be between 0 (inclusive) and 1 (exclusive), got {self.champion_tolerance}",
        )


@dataclass(frozen=True)
class RegistryConfig:
    model_name: str

    def __post_init__(self) -> None:
        name = self.model_name
        _require(
            bool(name.strip()) and name == name.strip(),
            "registry.model_name",
            f"must be a non-empty name without surrounding spaces, got {name!r}",
        )
        _require(not any(c in name for c in "/:%"), "registry.model_name", f"must not contain '/', ':' or '%', got {name!r}")


@dataclass(frozen=True)
class SweepConfig:
    alphas: tuple[float, ...]
    l1_ratios: tuple[float, ...]

    def __post_init__(self) -> None:
        for key, values in (("sweep.alphas", self.alphas), ("sweep.l1_ratios", self.l1_ratios)):
            _require(len(values) > 0, key, "name at least one value")
            repeated = sorted({v for v in values if values.count(v) > 1})
            _require(not repeated, key, f"values must differ, got {', '.join(map(str, repeated))} more than once")
        for alpha in self.alphas:
            _require(alpha >= 0, "sweep.alphas", f"every alpha must be >= 0, got {alpha}")
        for ratio in self.l1_ratios:
            _require(0 <= ratio <= 1, "sweep.l1_ratios", f"every l1_ratio must be between 0 and 1, got {ratio}")
        trials = len(self.alphas) * len(self.l1_ratios)
        grid = f"{len(self.alphas)} alphas x {len(self.l1_ratios)} l1_ratios = {trials} trials"
        _require(trials <= MAX_TRIALS, "sweep", f"{grid}; at most {MAX_TRIALS}")

    @property
    def grid(self) -> list[tuple[float, float]]:
        """Every (alpha, l1_ratio) pair, alpha varying slowest."""
        return [(alpha, ratio) for alpha in self.alphas for ratio in self.l1_ratios]


OVERLAP_POLICIES = ("wait", "fail")


@dataclass(frozen=True)
class RunConfig:
    use_cache: bool
    steps: str
    dry_run: bool
    fail_on_reject: bool
    overlap: str
    max_wait_seconds: float

    def __post_init__(self) -> None:
        _require(self.overlap in OVERLAP_POLICIES, "run.overlap", f"must be one of {', '.join(OVERLAP_POLICIES)}, got {self.overlap!r}")
        _require(self.max_wait_seconds > 0, "run.max_wait_seconds", f"must be > 0, got {self.max_wait_seconds}")
        for name in self.selected_steps or ():
            _require(
                name in STEPS, "run.steps", f"unknown step '{name}'{did_you_mean(name, STEPS)}; steps are {', '.join(STEPS)} (or 'all')"
            )
        _require(self.selected_steps != frozenset(), "run.steps", "name at least one step, or 'all'")

    @property
    def selected_steps(self) -> frozenset[str] | None:
        """The steps to run, or None for all of them (``steps: all``)."""
        if self.steps.strip().lower() == "all":
            return None
        return frozenset(part.strip() for part in self.steps.split(",") if part.strip())


@dataclass(frozen=True)
class PipelineConfig:
    data: DataConfig
    model: ModelConfig
    evaluation: EvaluationConfig
    registry: RegistryConfig
    run: RunConfig
    sweep: SweepConfig

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The YAML form: sections of keys (lists for grids)."""
        return {
            section: {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}
            for section, values in dataclasses.asdict(self).items()
        }

    def flat(self) -> dict[str, Any]:
        """``{"section.key": value}`` for every key, e.g. to log as MLflow params (grids as ``a,b,c``)."""
        return {
            f"{section}.{key}": ",".join(map(str, value)) if isinstance(value, list) else value
            for section, values in self.to_dict().items()
            for key, value in values.items()
        }

    def get(self, dotted_key: str) -> Any:
        section, key = dotted_key.split(".", 1)
        return getattr(getattr(self, section), key)


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(PipelineConfig)
    return {field.name: hints[field.name] for field in dataclasses.fields(PipelineConfig)}


def _field_types(section_cls: type) -> dict[str, type]:
    hints = typing.get_type_hints(section_cls)
    return {field.name: hints[field.name] for field in dataclasses.fields(section_cls)}


def config_keys() -> list[str]:
    """Every valid dotted key, e.g. ``model.alpha``."""
    return [f"{section}.{key}" for section, cls in _sections().items() for key in _field_types(cls)]


def did_you_mean(word: str, candidates: typing.Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def parameter_names(parameters: Mapping[str, str] = MAIN_PARAMETERS) -> list[str]:
    """What ``-P`` accepts: the entry point's parameters, then the keys that have no parameter of their own."""
    shadowed = set(parameters.values())
    return sorted(parameters) + [key for key in config_keys() if key not in shadowed]


def unknown_parameter(name: str, parameters: Mapping[str, str] = MAIN_PARAMETERS) -> ConfigError:
    """``-P name`` is not a parameter; a near miss of a key with its own parameter suggests the parameter."""
    spellings = {**{known: known for known in parameter_names(parameters)}, **{key: param for param, key in parameters.items()}}
    close = difflib.get_close_matches(name, list(spellings), n=1, cutoff=0.6)
    hint = f" (did you mean '{spellings[close[0]]}'?)" if close else ""
    return ConfigError(f"-P {name}: unknown parameter{hint}; valid: {', '.join(parameter_names(parameters))}")


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
_BOOL_TEXT = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _coerce(value: Any, expected: Any, where: str, from_text: bool) -> Any:
    """Check ``value`` against ``expected``; text from the command line is parsed first.

    ``tuple[float, ...]`` (a grid) is a YAML list, or comma-separated text: ``0.1,0.3,1``.
    """
    if typing.get_origin(expected) is tuple:
        (item_type, _) = typing.get_args(expected)
        if from_text:
            value = [part for part in str(value).split(",") if part.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list of numbers such as [0.1, 0.3], got {value!r}")
        return tuple(_coerce(item, item_type, f"{where}[{i}]", from_text) for i, item in enumerate(value))
    if expected is bool:
        if from_text and str(value).strip().lower() in _BOOL_TEXT:
            return _BOOL_TEXT[str(value).strip().lower()]
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected {_TYPE_NAMES[bool]}, got {value!r}")
    if from_text and expected is not str:
        text = str(value).strip()
        try:
            value = int(text) if expected is int else float(text)
        except ValueError:
            raise ConfigError(f"{where}: expected {_TYPE_NAMES[expected]}, got {text!r}") from None
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or isinstance(value, bool):
        raise ConfigError(f"{where}: expected {_TYPE_NAMES[expected]}, got {value!r} ({type(value).__name__})")
    if expected is float and not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    return value


def display_path(path: Path) -> str:
    """``path`` relative to the project when it lies inside it (shorter, clearer messages)."""
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def project_path(path: str | Path) -> Path:
    """Relative paths are taken relative to the project root, not the current directory."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file, turning I/O and syntax problems into one-line ConfigErrors."""
    path = project_path(path)
    name = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{name}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}: cannot read the file ({exc})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise ConfigError(f"{name}: invalid YAML{where}: {problem}") from None


def _section_values(raw: dict, section: str, cls: type, source: str) -> dict[str, Any]:
    """The raw values of one section, checked for unknown and missing keys."""
    section_raw = raw.get(section)
    if not isinstance(section_raw, dict):
        raise ConfigError(f"{source}: section '{section}' is missing or not a mapping")
    fields = _field_types(cls)
    for key in section_raw:
        if key not in fields:
            raise ConfigError(f"{source}: unknown key '{section}.{key}'{did_you_mean(f'{section}.{key}', config_keys())}")
    for key in fields:
        if key not in section_raw:
            raise ConfigError(f"{source}: missing key '{section}.{key}'")
    return dict(section_raw)


def parse_config(
    raw: Any, source: str, overrides: Mapping[str, str] | None = None, parameters: Mapping[str, str] = MAIN_PARAMETERS
) -> PipelineConfig:
    """Validate ``raw`` (parsed YAML from ``source``) with ``overrides`` applied on top.

    ``overrides`` maps a dotted key (``model.alpha``) or a parameter of the entry point
    (``parameters``, e.g. main's ``alpha``) to its value as text, as it arrives from ``mlflow run -P``.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections ({', '.join(_sections())}), got {type(raw).__name__}")
    sections = _sections()
    for name in raw:
        if name not in sections:
            raise ConfigError(f"{source}: unknown section '{name}'{did_you_mean(str(name), sections)}")

    values: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}
    for section, cls in sections.items():
        values[section] = _section_values(raw, section, cls, source)
        origin.update({f"{section}.{key}": source for key in values[section]})

    from_text: set[str] = set()
    for name, text in (overrides or {}).items():
        dotted = parameters.get(name, name)
        if dotted not in origin:
            raise unknown_parameter(name, parameters)
        section, key = dotted.split(".", 1)
        values[section][key] = text
        origin[dotted] = f"-P {name}"
        from_text.add(dotted)

    built = {}
    for section, cls in sections.items():
        kwargs = {}
        for key, expected in _field_types(cls).items():
            dotted = f"{section}.{key}"
            where = f"{origin[dotted]}: {dotted}" if origin[dotted] == source else origin[dotted]
            kwargs[key] = _coerce(values[section][key], expected, where, dotted in from_text)
        try:
            built[section] = cls(**kwargs)
        except ConfigError as exc:
            dotted = str(exc).split(":", 1)[0]
            # A check of a whole section (e.g. the size of the sweep's grid) names the -P values
            # that went into it, if any.
            overridden = sorted({where for key, where in origin.items() if key.startswith(f"{dotted}.") and where != source})
            raise ConfigError(f"{origin.get(dotted) or ', '.join(overridden) or source}: {exc}") from None
    return PipelineConfig(**built)


def load_config(
    path: str | Path = DEFAULT_CONFIG, overrides: Mapping[str, str] | None = None, parameters: Mapping[str, str] = MAIN_PARAMETERS
) -> PipelineConfig:
    """Load ``path`` (default conf/pipeline.yaml) and apply ``overrides``; see :func:`parse_config`."""
    return parse_config(read_yaml(path), display_path(project_path(path)), overrides, parameters)


def mlproject_parameters(entry_point: str, mlproject: str | Path = MLPROJECT) -> dict[str, dict[str, Any]]:
    """The parameters an MLproject entry point declares: ``{name: {"type": ..., "default": ...}}``."""
    spec = read_yaml(mlproject)
    try:
        params = spec["entry_points"][entry_point].get("parameters") or {}
    except (KeyError, TypeError, AttributeError):
        raise ConfigError(f"{MLPROJECT}: no entry point '{entry_point}'") from None
    return {name: (p if isinstance(p, dict) else {"type": p}) for name, p in params.items()}


def mirror_mismatches(
    config: PipelineConfig, mlproject: str | Path = MLPROJECT, entry_point: str = "main", parameters: Mapping[str, str] = MAIN_PARAMETERS
) -> list[str]:
    """Where the MLproject defaults of ``entry_point`` disagree with the configuration file."""
    declared = mlproject_parameters(entry_point, mlproject)
    problems = []
    for name, dotted in parameters.items():
        default = declared.get(name, {}).get("default")
        expected = config.get(dotted)
        section, key = dotted.split(".", 1)
        if default is None:
            problems.append(f"MLproject: entry point '{entry_point}' does not declare parameter '{name}' ({dotted})")
        elif _coerce(default, _field_types(_sections()[section])[key], name, from_text=True) != expected:
            problems.append(f"MLproject default {name}={default!r} differs from {DEFAULT_CONFIG} {dotted}={expected!r}")
    return problems
