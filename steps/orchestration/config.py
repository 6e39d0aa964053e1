"""The pipeline's configuration: conf/pipeline.yaml plus a driver's ``-P`` overrides, checked.

Each section is the pydantic model of the code that uses it: ``data`` (core/data.py), ``model``
(core/model.py), ``evaluation`` (core/gate.py), ``registry`` (mlflow_io/registry.py), and the
drivers' own ``run`` and ``sweep`` below. ``predict``, ``compare`` and ``schema`` belong to those
entry points, which check them when they run. A ``-P`` value is typed like the value it replaces;
every problem is one :class:`ConfigError` line naming the key and where its value came from (the
YAML file or a ``-P`` parameter), e.g. ``-P alpha: model.alpha: must be >= 0, got -1.0``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from steps.core.conf import DEFAULT_CONFIG, did_you_mean, display_path, from_text, project_path, read_yaml, sample, validate
from steps.core.data import DataSettings
from steps.core.errors import ConfigError
from steps.core.gate import GateSettings
from steps.core.model import ModelSettings
from steps.mlflow_io.registry import RegistrySettings

# The short names ``-P`` accepts for main (``-P alpha=0.3``) and the key each one sets.
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
# ... and for sweep: main's, with grids instead of one alpha and l1_ratio.
SWEEP_PARAMETERS: dict[str, str] = {
    **{name: key for name, key in MAIN_PARAMETERS.items() if name not in ("alpha", "l1_ratio", "steps", "dry_run")},
    "alphas": "sweep.alphas",
    "l1_ratios": "sweep.l1_ratios",
}

STEPS = ("ingest", "featurize", "train", "evaluate", "register")
# A sweep trains and evaluates at most this many grid points.
MAX_TRIALS = 100
OVERLAP_POLICIES = ("wait", "fail")


class RunSettings(BaseModel):
    """The ``run`` section: how a driver treats the cache, the steps and other runs."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    use_cache: bool
    steps: str
    dry_run: bool
    fail_on_reject: bool
    overlap: str
    max_wait_seconds: float

    @field_validator("overlap")
    @classmethod
    def _overlap(cls, value: str) -> str:
        if value not in OVERLAP_POLICIES:
            raise ValueError(f"must be one of {', '.join(OVERLAP_POLICIES)}, got {value!r}")
        return value

    @field_validator("max_wait_seconds")
    @classmethod
    def _wait(cls, value: float) -> float:
        if not value > 0:
            raise ValueError(f"must be > 0, got {value}")
        return value

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: str) -> str:
        names = _step_names(value)
        for name in names or ():
            if name not in STEPS:
                raise ValueError(f"unknown step '{name}'{did_you_mean(name, STEPS)}; steps are {', '.join(STEPS)} (or 'all')")
        if names == frozenset():
            raise ValueError("name at least one step, or 'all'")
        return value

    @property
    def selected_steps(self) -> frozenset[str] | None:
        """The steps to run, or None for all of them (``steps: all``)."""
        return _step_names(self.steps)


def _step_names(text: str) -> frozenset[str] | None:
    if text.strip().lower() == "all":
        return None
    return frozenset(part.strip() for part in text.split(",") if part.strip())


class SweepSettings(BaseModel):
    """The ``sweep`` section: the grid of ``-e sweep``, one trial per combination."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    alphas: list[float]
    l1_ratios: list[float]

    @field_validator("alphas", "l1_ratios")
    @classmethod
    def _values(cls, values: list[float], info: Any) -> list[float]:
        if not values:
            raise ValueError("name at least one value")
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"values must differ, got {', '.join(map(str, repeated))} more than once")
        for value in values:
            if info.field_name == "alphas" and value < 0:
                raise ValueError(f"every alpha must be >= 0, got {value}")
            if info.field_name == "l1_ratios" and not 0 <= value <= 1:
                raise ValueError(f"every l1_ratio must be between 0 and 1, got {value}")
        return values

    @model_validator(mode="after")
    def _size(self) -> SweepSettings:
        trials = len(self.alphas) * len(self.l1_ratios)
        if trials > MAX_TRIALS:
            raise ValueError(f"sweep: {len(self.alphas)} alphas x {len(self.l1_ratios)} l1_ratios = {trials} trials; at most {MAX_TRIALS}")
        return self

    @property
    def grid(self) -> list[dict[str, float]]:
        """Every combination as the model parameters it sets, alpha varying slowest."""
        from sklearn.model_selection import ParameterGrid  # noqa: PLC0415 - only a sweep needs it; ~0.5 s to import

        return list(ParameterGrid({"alpha": self.alphas, "l1_ratio": self.l1_ratios}))


# Each section of conf/pipeline.yaml the drivers use, and the model that checks it.
SECTIONS: dict[str, type[BaseModel]] = {
    "data": DataSettings,
    "model": ModelSettings,
    "evaluation": GateSettings,
    "registry": RegistrySettings,
    "run": RunSettings,
    "sweep": SweepSettings,
}
# Sections that other entry points read and check themselves (predict, compare, schema).
OTHER_SECTIONS = ("predict", "compare", "schema")


@dataclass(frozen=True)
class PipelineConfig:
    data: DataSettings
    model: ModelSettings
    evaluation: GateSettings
    registry: RegistrySettings
    run: RunSettings
    sweep: SweepSettings

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The YAML form: sections of keys, as in conf/pipeline.yaml."""
        return {name: getattr(self, name).model_dump(by_alias=True) for name in SECTIONS}

    def flat(self) -> dict[str, Any]:
        """``{"section.key": value}`` for every key, e.g. to log as MLflow params (grids as ``a,b,c``)."""
        return {
            f"{section}.{key}": ",".join(map(str, value)) if isinstance(value, list) else value
            for section, values in self.to_dict().items()
            for key, value in values.items()
        }

    def get(self, dotted_key: str) -> Any:
        section, key = dotted_key.split(".", 1)
        return self.to_dict()[section][key]


def _keys(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Every ``section.key`` a -P value may set, with a sample of its type (None: read as YAML)."""
    keys = {}
    for section, model in SECTIONS.items():
        values = raw.get(section) if isinstance(raw.get(section), dict) else {}
        keys.update({f"{section}.{field.alias or name}": sample(model, name) for name, field in model.model_fields.items()})
        if model.model_config.get("extra") == "allow":
            keys.update({f"{section}.{key}": Loose(value) for key, value in values.items() if f"{section}.{key}" not in keys})
    return keys


@dataclass(frozen=True)
class Loose:
    """The file's value of a key with no declared type (an estimator's argument): -P text is read like it, loosely."""

    value: Any


def config_keys(raw: Mapping[str, Any] | None = None) -> list[str]:
    """Every valid dotted key, e.g. ``model.alpha``."""
    return list(_keys(raw if raw is not None else read_yaml(DEFAULT_CONFIG)))


def parameter_names(parameters: Mapping[str, str] = MAIN_PARAMETERS, raw: Mapping[str, Any] | None = None) -> list[str]:
    """What ``-P`` accepts: the entry point's parameters, then the keys that have no parameter of their own."""
    shadowed = set(parameters.values())
    return sorted(parameters) + [key for key in config_keys(raw) if key not in shadowed]


def unknown_parameter(name: str, parameters: Mapping[str, str] = MAIN_PARAMETERS, raw: Mapping[str, Any] | None = None) -> ConfigError:
    """``-P name`` is not a parameter; a near miss of a key with its own parameter suggests the parameter."""
    names = parameter_names(parameters, raw)
    spellings = {**{known: known for known in names}, **{key: param for param, key in parameters.items()}}
    close = difflib.get_close_matches(name, list(spellings), n=1, cutoff=0.6)
    hint = f" (did you mean '{spellings[close[0]]}'?)" if close else ""
    return ConfigError(f"-P {name}: unknown parameter{hint}; valid: {', '.join(names)}")


def parse_config(
    raw: Any, source: str, overrides: Mapping[str, str] | None = None, parameters: Mapping[str, str] = MAIN_PARAMETERS
) -> PipelineConfig:
    """Validate ``raw`` (parsed YAML from ``source``) with ``overrides`` applied on top.

    ``overrides`` maps a dotted key (``model.alpha``) or a parameter of the entry point
    (``parameters``, e.g. main's ``alpha``) to its value as text, as it arrives from ``mlflow run -P``.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections ({', '.join(SECTIONS)}), got {type(raw).__name__}")
    known = (*SECTIONS, *OTHER_SECTIONS)
    for name in raw:
        if name not in known:
            raise ConfigError(f"{source}: unknown section '{name}'{did_you_mean(str(name), known)}")
    for name in SECTIONS:
        if not isinstance(raw.get(name), dict):
            raise ConfigError(f"{source}: section '{name}' is missing or not a mapping")

    values = {section: dict(raw[section]) for section in SECTIONS}
    keys = _keys(raw)
    given: dict[str, str] = {}  # dotted key -> the -P name that set it
    for name, text in (overrides or {}).items():
        dotted = parameters.get(name, name)
        if dotted not in keys:
            raise unknown_parameter(name, parameters, raw)
        section, key = dotted.split(".", 1)
        like = keys[dotted]
        loose = isinstance(like, Loose)
        values[section][key] = from_text(text, like.value if loose else like, f"-P {name}", loose=loose)
        given[dotted] = f"-P {name}"

    def origin(dotted: str) -> str:
        if dotted in given:
            return given[dotted]
        # A check of a whole section (e.g. the size of the sweep's grid) names the -P values in it.
        inside = sorted(where for key, where in given.items() if key.startswith(f"{dotted}."))
        return ", ".join(inside) or source

    built = {section: validate(model, section, values[section], origin) for section, model in SECTIONS.items()}
    return PipelineConfig(**built)


def load_config(
    path: str | Path = DEFAULT_CONFIG, overrides: Mapping[str, str] | None = None, parameters: Mapping[str, str] = MAIN_PARAMETERS
) -> PipelineConfig:
    """Load ``path`` (default conf/pipeline.yaml) and apply ``overrides``; see :func:`parse_config`."""
    return parse_config(read_yaml(path), display_path(project_path(path)), overrides, parameters)
