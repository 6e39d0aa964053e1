"""The pipeline's configuration: conf/pipeline.yaml plus a driver's ``-P`` overrides, checked.

Each section is the pydantic model of the code that uses it: ``data`` (core/data.py), ``model``
(core/model.py), ``evaluation`` (core/gate.py), ``registry`` (mlflow_io/registry.py), and the
drivers' own ``run`` and ``sweep`` below. ``predict``, ``compare`` and ``schema`` belong to those
entry points, which check them when they run. A ``-P`` value is typed like the value it replaces;
every problem is one :class:`ConfigError` line naming the key and where its value came from (the
YAML file or a ``-P`` parameter), e.g. ``-P alpha: model.params.alpha: must be >= 0, got -1.0``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from steps.core.conf import DEFAULT_CONFIG, did_you_mean, display_path, from_text, project_path, read_yaml, sample, validate
from steps.core.data import DataSettings
from steps.core.errors import ConfigError
from steps.core.gate import GateSettings, threshold_problems
from steps.core.model import EstimatorSpec, ModelSettings, parameter_problems
from steps.core.schema import DataSchema, load_schema
from steps.core.tasks import Metric, Task, resolve_task
from steps.mlflow_io.registry import RegistrySettings

# The short names ``-P`` accepts for main (``-P alpha=0.3``) and the key each one sets.
MAIN_PARAMETERS: dict[str, str] = {
    "data_uri": "data.uri",
    "schema": "data.schema",
    "test_size": "data.test_size",
    "seed": "data.seed",
    "alpha": "model.params.alpha",
    "l1_ratio": "model.params.l1_ratio",
    "model_name": "registry.model_name",
    "use_cache": "run.use_cache",
    "steps": "run.steps",
    "dry_run": "run.dry_run",
    "fail_on_reject": "run.fail_on_reject",
    "verbose": "run.verbose",
}
# ... and for sweep: main's, with grids instead of one alpha and l1_ratio.
SWEEP_PARAMETERS: dict[str, str] = {
    **{name: key for name, key in MAIN_PARAMETERS.items() if name not in ("alpha", "l1_ratio", "steps", "dry_run")},
    "alphas": "sweep.grid.alpha",
    "l1_ratios": "sweep.grid.l1_ratio",
}
# The short names that set an argument of ElasticNet, the default regression estimator.
ELASTICNET_PARAMETERS = ("alpha", "l1_ratio", "alphas", "l1_ratios")
# Fields whose value is a mapping: ``-P`` sets one entry at a time (``model.params.n_estimators``).
MAPPING_FIELDS = ("model.params", "sweep.grid")

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
    verbose: bool

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
    """The ``sweep`` section: the grid of ``-e sweep``, one trial per combination of its values."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    grid: dict[str, list[Any]]

    @field_validator("grid")
    @classmethod
    def _values(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if not grid:
            raise ValueError("name at least one parameter to sweep, e.g. -P sweep.grid.alpha=0.1,1")
        for name, values in grid.items():
            if not values:
                raise ValueError(f"sweep.grid.{name}: name at least one value")
            repeated = sorted({str(v) for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"sweep.grid.{name}: values must differ, got {', '.join(repeated)} more than once")
        trials = math.prod(len(values) for values in grid.values())
        if trials > MAX_TRIALS:
            sizes = " x ".join(f"{len(values)} {name}" for name, values in grid.items())
            raise ValueError(f"sweep: {sizes} = {trials} trials; at most {MAX_TRIALS}")
        return grid

    @property
    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination as the model parameters it sets (scikit-learn's ParameterGrid order)."""
        from sklearn.model_selection import ParameterGrid  # noqa: PLC0415 - only a sweep needs it; ~0.5 s to import

        return list(ParameterGrid(self.grid))

    def problems(self, estimator: EstimatorSpec) -> list[str]:
        """What the estimator refuses in the grid: unknown parameters, values out of range."""
        from steps.core.model import estimator_class  # noqa: PLC0415 - the model module imports scikit-learn lazily

        cls = estimator_class(estimator.path)
        found = []
        for name, values in self.grid.items():
            for value in values:
                found += [p.replace("model.params.", "sweep.grid.", 1) for p in parameter_problems(cls, {name: value})]
        return found


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
    # Resolved for the data's schema: the task, the estimator it trains, the gate's primary metric.
    task: Task
    estimator: EstimatorSpec
    metric: Metric
    # Where the -P values went: dotted key -> the parameter that set it (``model.params.alpha`` -> ``-P alpha``).
    given: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The YAML form: sections of keys, as in conf/pipeline.yaml."""
        return {name: getattr(self, name).model_dump(by_alias=True) for name in SECTIONS}

    def flat(self) -> dict[str, Any]:
        """``{"section.key": value}`` for every key this run uses, e.g. to log as MLflow params.

        The model as resolved: its task, the estimator and every argument it is built with (the
        task defaults' entries are not logged: ``model.estimator`` says which one was used).
        """
        values = _flatten(self.to_dict())
        resolved = {"model.task": self.task.name, "model.estimator": self.estimator.path}
        resolved |= {f"model.params.{name}": value for name, value in self.estimator.params.items()}
        kept = {key: value for key, value in values.items() if not key.startswith(("model.defaults.", "model.params."))}
        return kept | resolved | {"evaluation.metric": self.metric.short}

    def get(self, dotted_key: str) -> Any:
        return self.flat()[dotted_key]


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys; lists (a sweep's values) as ``a,b,c``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = ",".join(map(str, value)) if isinstance(value, list) else value
    return flat


def _keys(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Every ``section.key`` a -P value may set, with a sample of its type (None: read as YAML).

    A mapping (an estimator's ``model.params``, the sweep's ``grid``) is set one entry at a time;
    its entries in the file (and, for ``model.params``, the task defaults' arguments) give the
    entries' types. Other mappings (``model.defaults``) are set in the file only.
    """
    keys = {}
    for section, model in SECTIONS.items():
        for name, declared in model.model_fields.items():
            like = sample(model, name)
            if not isinstance(like, dict):
                keys[f"{section}.{declared.alias or name}"] = like
    for dotted in MAPPING_FIELDS:
        keys.update({f"{dotted}.{name}": Loose(value) for name, value in _mapping_values(raw, dotted).items()})
    return keys


def _mapping_values(raw: Mapping[str, Any], dotted: str) -> dict[str, Any]:
    section, key = dotted.split(".")
    values = raw.get(section) if isinstance(raw.get(section), dict) else {}
    found = dict(values.get(key) or {}) if isinstance(values.get(key) or {}, dict) else {}
    if dotted == "model.params":
        for default in (values.get("defaults") or {}).values():
            params = default.get("params") if isinstance(default, dict) else None
            found = (params if isinstance(params, dict) else {}) | found
    return found


def _mapping_entry(dotted: str) -> str | None:
    """The mapping field ``dotted`` sets an entry of (``model.params.n_estimators`` -> ``model.params``), if any."""
    return next((field for field in MAPPING_FIELDS if dotted.startswith(f"{field}.") and len(dotted) > len(field) + 1), None)


@dataclass(frozen=True)
class Loose:
    """The file's value of a key with no declared type (an estimator's argument): -P text is read like it, loosely."""

    value: Any


def config_keys(raw: Mapping[str, Any] | None = None) -> list[str]:
    """Every valid dotted key, e.g. ``model.params.alpha``."""
    return list(_keys(raw if raw is not None else read_yaml(DEFAULT_CONFIG)))


def parameter_names(parameters: Mapping[str, str] = MAIN_PARAMETERS, raw: Mapping[str, Any] | None = None) -> list[str]:
    """What ``-P`` accepts: the entry point's parameters, then the keys that have no parameter of their own."""
    shadowed = set(parameters.values())
    keys = [key for key in config_keys(raw) if key not in shadowed and not _mapping_entry(key)]
    return sorted(parameters) + keys + [f"{field}.<name>" for field in MAPPING_FIELDS]


def unknown_parameter(name: str, parameters: Mapping[str, str] = MAIN_PARAMETERS, raw: Mapping[str, Any] | None = None) -> ConfigError:
    """``-P name`` is not a parameter; a near miss of a key with its own parameter suggests the parameter."""
    names = parameter_names(parameters, raw)
    every = [*names, *config_keys(raw)]
    spellings = {**{known: known for known in every if "<" not in known}, **{key: param for param, key in parameters.items()}}
    close = difflib.get_close_matches(name, list(spellings), n=1, cutoff=0.6)
    hint = f" (did you mean '{spellings[close[0]]}'?)" if close else ""
    return ConfigError(f"-P {name}: unknown parameter{hint}; valid: {', '.join(names)}")


def parse_config(
    raw: Any, source: str, overrides: Mapping[str, str] | None = None, parameters: Mapping[str, str] = MAIN_PARAMETERS
) -> PipelineConfig:
    """Validate ``raw`` (parsed YAML from ``source``) with ``overrides`` applied on top.

    ``overrides`` maps a dotted key (``model.params.alpha``) or a parameter of the entry point
    (``parameters``, e.g. main's ``alpha``) to its value as text, as it arrives from ``mlflow run -P``.
    A ``model.params.<name>`` value is added to the file's arguments. ``sweep.grid.<name>`` values
    (or ``alphas``, ``l1_ratios``) replace those entries of the file's grid; when one names a
    parameter the file's grid does not have (another estimator's), the -P values make up the grid
    on their own.
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
    swept = [parameters.get(name, name) for name in overrides or {} if _mapping_entry(parameters.get(name, name)) == "sweep.grid"]
    if any(key.removeprefix("sweep.grid.") not in (values["sweep"].get("grid") or {}) for key in swept):
        # Another estimator's grid: it never sweeps the file's (ElasticNet's) entries too.
        values["sweep"]["grid"] = {}
    for name, text in (overrides or {}).items():
        dotted = parameters.get(name, name)
        mapping = _mapping_entry(dotted)
        if dotted not in keys and mapping is None:
            raise unknown_parameter(name, parameters, raw)
        like = keys.get(dotted, Loose([None] if mapping == "sweep.grid" else None))
        loose = isinstance(like, Loose)
        value = from_text(text, like.value if loose else like, f"-P {name}", loose=loose)
        if mapping is not None:
            section, field = mapping.split(".")
            values[section][field] = {**(values[section].get(field) or {}), dotted[len(mapping) + 1 :]: value}
        else:
            section, key = dotted.split(".", 1)
            values[section][key] = value
        given[dotted] = f"-P {name}"

    def origin(dotted: str) -> str:
        if dotted in given:
            return given[dotted]
        # A check of a whole section (e.g. the size of the sweep's grid) names the -P values in it.
        inside = sorted(where for key, where in given.items() if key.startswith(f"{dotted}."))
        return ", ".join(inside) or source

    built = {section: validate(model, section, values[section], origin) for section, model in SECTIONS.items()}
    try:
        schema = load_schema(built["data"].schema_file)
        return PipelineConfig(**built, **_resolve(built, schema), given=given)
    except ConfigError as exc:
        dotted = str(exc).split(":", 1)[0]
        if dotted not in given:
            raise
        text = str(exc).replace("; its parameters", _elasticnet_hint(given[dotted], str(exc)) + "; its parameters", 1)
        raise ConfigError(f"{given[dotted]}: {text}") from None


def _resolve(built: Mapping[str, BaseModel], schema: DataSchema) -> dict[str, Any]:
    """The task for the data's schema, the estimator for the task, and the gate's primary metric: checked together."""
    model, gate = built["model"], built["evaluation"]
    task = resolve_task(model.task, schema)
    estimator = model.resolve(task)
    metric = gate.primary(task, estimator.has_proba, estimator.name)
    threshold_problems(schema.thresholds, task, built["data"].schema_file)
    return {"task": task, "estimator": estimator, "metric": metric}


def _elasticnet_hint(given: str, problem: str) -> str:
    """A shortcut for ElasticNet's arguments given to another estimator: say what to use instead."""
    name = given.removeprefix("-P ")
    if name not in ELASTICNET_PARAMETERS or "not a parameter of" not in problem:
        return ""
    return (
        f" (-P {name} is for ElasticNet, the default regression estimator; give other estimators' arguments as -P model.params.<name>=...)"
    )


def load_config(
    path: str | Path = DEFAULT_CONFIG, overrides: Mapping[str, str] | None = None, parameters: Mapping[str, str] = MAIN_PARAMETERS
) -> PipelineConfig:
    """Load ``path`` (default conf/pipeline.yaml) and apply ``overrides``; see :func:`parse_config`."""
    return parse_config(read_yaml(path), display_path(project_path(path)), overrides, parameters)
