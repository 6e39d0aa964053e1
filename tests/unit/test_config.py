"""Configuration loading, overrides and the files that must agree with conf/pipeline.yaml."""

from __future__ import annotations

import argparse
import importlib
import re

import pytest
import yaml

from steps.core.conf import PROJECT_ROOT, read_yaml
from steps.core.errors import ConfigError, InputError
from steps.mlflow_io.step_run import require_inputs
from steps.orchestration.config import SWEEP_PARAMETERS, load_config, parse_config

# The entry points besides main, each a module of steps/ with a build_parser().
ENTRY_POINT_MODULES = ("ingest", "featurize", "train", "evaluate", "register", "rollback", "predict", "compare", "schema")


def raw_config() -> dict:
    return read_yaml("conf/pipeline.yaml")


def test_default_config_loads_with_documented_values():
    config = load_config()
    assert config.data.uri == "data/example_data.csv"
    assert (config.model.task, config.model.estimator, config.model.params) == ("auto", "auto", {})
    # Resolved for the example's schema (a float target): the regression default, ElasticNet.
    assert config.task.name == "regression" and config.metric.short == "rmse"
    assert (config.estimator.path, config.estimator.params) == (
        "sklearn.linear_model.ElasticNet",
        {"alpha": 0.5, "l1_ratio": 0.5, "max_iter": 5000},
    )
    assert isinstance(config.data.seed, int)
    assert set(config.flat()) == {
        "data.uri", "data.schema", "data.test_size", "data.seed", "data.drop_missing_target", "data.download_timeout", "model.task",
        "model.estimator", "model.params.alpha", "model.params.l1_ratio", "model.params.max_iter", "evaluation.metric",
        "evaluation.baseline_margin", "evaluation.champion_tolerance", "registry.model_name", "run.use_cache", "run.steps", "run.dry_run",
        "run.fail_on_reject", "run.overlap", "run.max_wait_seconds", "run.verbose", "sweep.grid.alpha", "sweep.grid.l1_ratio",
    }  # fmt: skip
    assert config.flat()["model.estimator"] == "sklearn.linear_model.ElasticNet"  # as resolved, not "auto"


def test_another_estimator_takes_only_its_own_arguments_and_a_classifier_needs_a_classification_task():
    config = load_config(overrides={"model.estimator": "sklearn.ensemble.RandomForestRegressor", "model.params.n_estimators": "20"})
    assert (config.estimator.name, config.estimator.params) == ("RandomForestRegressor", {"n_estimators": 20})
    with pytest.raises(ConfigError, match=r"^-P model.estimator: model.estimator: sklearn.ensemble.RandomForestClassifier is a classifier"):
        load_config(overrides={"model.estimator": "sklearn.ensemble.RandomForestClassifier"})
    with pytest.raises(
        ConfigError,
        match=r"^-P alpha: model.params.alpha: not a parameter of RandomForestRegressor .*as -P model.params.<name>=...\); its parameters",
    ):
        load_config(overrides={"model.estimator": "sklearn.ensemble.RandomForestRegressor", "alpha": "0.3"})
    with pytest.raises(
        ConfigError, match=r"^-P model.task: regression needs a numeric target|thresholds.r2: 'r2' is not a classification metric"
    ):
        load_config(overrides={"model.task": "classification"})


def test_sweep_grids_are_lists_in_yaml_and_comma_separated_as_parameters():
    config = load_config()
    assert config.sweep.grid == {"alpha": [0.01, 0.1, 0.3, 1.0], "l1_ratio": [0.2, 0.5, 0.8]}
    assert config.flat()["sweep.grid.alpha"] == "0.01,0.1,0.3,1.0"
    assert config.to_dict()["sweep"]["grid"]["l1_ratio"] == [0.2, 0.5, 0.8]  # YAML-safe
    swept = load_config(overrides={"alphas": " 0.1, 1 ", "l1_ratios": "0.5"}, parameters=SWEEP_PARAMETERS)
    assert swept.sweep.grid_points == [{"alpha": 0.1, "l1_ratio": 0.5}, {"alpha": 1.0, "l1_ratio": 0.5}]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"alphas": "0.1,abc"}, r"-P alphas\[1\]: expected a number, got 'abc'"),
        ({"alphas": ""}, r"-P alphas: sweep.grid.alpha: name at least one value"),
        ({"l1_ratios": "0.5,0.5"}, r"sweep.grid.l1_ratio: values must differ, got 0.5 more than once"),
        ({"alphas": ",".join(str(i) for i in range(40))}, r"^-P alphas: sweep: 40 alpha x 3 l1_ratio = 120 trials; at most 100$"),
        ({"alpha": "0.3"}, r"-P alpha: unknown parameter \(did you mean 'alphas'\?\)"),
    ],
)
def test_bad_sweep_grids_name_the_parameter(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides, parameters=SWEEP_PARAMETERS)


def test_a_grid_in_the_yaml_must_be_a_list_of_values():
    raw = raw_config()
    raw["sweep"]["grid"]["alpha"] = 0.5
    with pytest.raises(
        ConfigError, match=r"conf/pipeline.yaml: sweep.grid.alpha: expected a list of numbers such as \[0.1, 0.3\], got 0.5"
    ):
        parse_config(raw, "conf/pipeline.yaml")


def test_every_key_in_the_config_file_has_a_comment():
    lines = (PROJECT_ROOT / "conf/pipeline.yaml").read_text().splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"^\s+(\w+):\s*\S", line)
        if match:
            previous = lines[number - 1].strip()
            assert previous.startswith("#"), f"conf/pipeline.yaml line {number + 1}: key '{match.group(1)}' has no comment above it"


def test_overrides_by_parameter_name_and_dotted_key_are_typed():
    config = load_config(overrides={"alpha": "0.3", "seed": "7", "evaluation.baseline_margin": "0.25", "model_name": "m"})
    assert config.model.params["alpha"] == 0.3 and config.estimator.params["alpha"] == 0.3
    assert config.data.seed == 7
    assert config.evaluation.baseline_margin == 0.25
    assert config.registry.model_name == "m"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"alhpa": "0.3"}, r"-P alhpa: unknown parameter \(did you mean 'alpha'\?\)"),
        # model.params.alpha has its own parameter (-P model.params.alpha is refused): suggest the parameter.
        (
            {"model.params.alfa": "0.3"},
            r"-P model.params.alfa: model.params.alfa: not a parameter of ElasticNet \(did you mean 'alpha'\?\)",
        ),
        ({"model.max_itr": "9"}, r"-P model.max_itr: unknown parameter \(did you mean 'model.params.max_iter'\?\)"),
        ({"alpha": "abc"}, r"-P alpha: expected a number, got 'abc'"),
        ({"seed": "1.5"}, r"-P seed: expected an integer, got '1.5'"),
        ({"alpha": "-1"}, r"-P alpha: model.params.alpha: must be >= 0, got -1.0"),
        ({"alpha": "nan"}, r"-P alpha: expected a finite number"),
        ({"l1_ratio": "2"}, r"model.params.l1_ratio: must be between 0 and 1"),
        ({"test_size": "1"}, r"data.test_size: must be between 0 and 1"),
        ({"model_name": "a/b"}, r"registry.model_name: must not contain"),
        ({"model_name": "o'brien"}, r"-P model_name: registry.model_name: must not contain quotes or backslashes, got \"o'brien\""),
    ],
)
def test_bad_overrides_name_the_parameter_and_the_problem(overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(overrides=overrides)


def test_an_unknown_parameter_lists_only_what_minus_p_accepts():
    with pytest.raises(ConfigError) as info:
        load_config(overrides={"model.alpah": "0.3"})
    valid = str(info.value).split("; valid: ", 1)[1].split(", ")
    assert valid[:2] == ["alpha", "data_uri"]
    assert "evaluation.baseline_margin" in valid and "model.params.<name>" in valid and "sweep.grid.<name>" in valid
    assert "model.params.alpha" not in valid and "data.uri" not in valid  # set through -P alpha, -P data_uri
    assert "model.defaults" not in valid  # set in the file only


def test_unknown_and_missing_keys_in_the_file_are_named():
    raw = raw_config()
    raw["model"]["params"] = {"alpah": 0.1}
    with pytest.raises(
        ConfigError, match=r"^model.params.alpah: not a parameter of ElasticNet \(did you mean 'alpha'\?\); its parameters: alpha, "
    ):
        parse_config(raw, "conf.yaml")
    raw = raw_config()
    raw["model"]["alpha"] = 0.1
    with pytest.raises(ConfigError, match=r"conf.yaml: unknown key 'model.alpha'"):
        parse_config(raw, "conf.yaml")
    raw = raw_config()
    del raw["evaluation"]["baseline_margin"]
    with pytest.raises(ConfigError, match=r"conf.yaml: missing key 'evaluation.baseline_margin'"):
        parse_config(raw, "conf.yaml")
    raw = raw_config()
    raw["modle"] = {}
    with pytest.raises(ConfigError, match=r"unknown section 'modle' \(did you mean 'model'\?\)"):
        parse_config(raw, "conf.yaml")


def test_wrong_type_in_the_file_is_named():
    raw = raw_config()
    raw["model"]["params"] = {"alpha": "high"}
    with pytest.raises(ConfigError, match=r"model.params.alpha: expected a number, got 'high'"):
        parse_config(raw, "conf.yaml")
    raw = raw_config()
    raw["data"]["seed"] = True
    with pytest.raises(ConfigError, match=r"data.seed: expected an integer"):
        parse_config(raw, "conf.yaml")


def test_invalid_yaml_and_missing_file_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  uri: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: invalid YAML at line \d+") as info:
        load_config(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"nope.yaml: file not found"):
        load_config(tmp_path / "nope.yaml")


def test_mlproject_declares_no_defaults_and_each_command_names_its_module():
    """conf/pipeline.yaml is the one source of defaults: MLproject passes -P values on as they are."""
    spec = read_yaml("MLproject")
    assert set(spec["entry_points"]) == {"main", "sweep", *ENTRY_POINT_MODULES}
    for name, entry_point in spec["entry_points"].items():
        assert "parameters" not in entry_point, f"{name} declares parameters: their defaults belong in conf/pipeline.yaml"
        assert entry_point["command"] == f"python -m steps {name}"
        module = PROJECT_ROOT / ("main.py" if name == "main" else f"steps/{name}.py")
        assert module.is_file(), f"{name}: no {module.relative_to(PROJECT_ROOT)}"


@pytest.mark.parametrize("entry_point", ENTRY_POINT_MODULES)
def test_step_options_default_to_nothing_so_the_config_file_decides(entry_point):
    """An option a step's user does not give takes its value from conf/pipeline.yaml, not from the parser."""
    actions = [a for a in importlib.import_module(f"steps.{entry_point}").build_parser()._actions if a.dest != "help"]
    assert actions, entry_point
    for action in actions:
        assert action.default in (None, ""), f"{entry_point} --{action.dest} has its own default {action.default!r}"


def test_a_step_alone_takes_its_defaults_from_the_config_file_and_types_options_like_them():
    parser = importlib.import_module("steps.ingest").build_parser()
    args = parser.parse_args(["--seed", "7"])
    from steps.core.data import DataSettings  # noqa: PLC0415
    from steps.mlflow_io.step_run import settings  # noqa: PLC0415

    resolved = settings(args, DataSettings, "data", {"data_uri": "uri"})
    assert (resolved.uri, resolved.schema_file, resolved.test_size, resolved.seed) == ("data/example_data.csv", "conf/schema.yaml", 0.2, 7)
    with pytest.raises(InputError, match=r"argument --test_size: invalid float value: 'abc'"):
        parser.parse_args(["--test_size", "abc"])


def test_environment_files_pin_the_same_requirements():
    """requirements.txt is the one source of truth; python_env.yaml and conda.yaml install it."""
    python_env = yaml.safe_load((PROJECT_ROOT / "python_env.yaml").read_text())
    conda = yaml.safe_load((PROJECT_ROOT / "conda.yaml").read_text())
    conda_pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert python_env["dependencies"] == ["-r requirements.txt"]
    assert conda_pip == ["-r requirements.txt"]
    assert f"python={python_env['python']}" in conda["dependencies"]
    assert read_yaml("MLproject")["python_env"] == "python_env.yaml"
    pins = [line for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][^ ]*", pin) for pin in pins), pins
    assert "mlflow==3.17.2" in pins


def test_missing_inputs_are_all_named_with_where_they_come_from():
    args = argparse.Namespace(train_uri=" ", manifest_uri="", model_uri="models:/m-1")
    with pytest.raises(InputError) as info:
        require_inputs(args, ("model_uri", "train_uri", "manifest_uri"))
    assert str(info.value) == (
        "missing input train_uri: pass the train split logged by ingest, e.g. -P train_uri=runs:/<ingest run id>/data/train.parquet; "
        "missing input manifest_uri: pass the manifest logged by ingest, e.g. -P manifest_uri=runs:/<ingest run id>/data/manifest.json"
    )
    assert require_inputs(args, ("model_uri",)) == {"model_uri": "models:/m-1"}


def test_an_estimators_arguments_are_typed_by_their_value_in_the_file_or_read_as_yaml():
    raw = raw_config()
    raw["model"] |= {"estimator": "sklearn.ensemble.RandomForestRegressor", "params": {"n_estimators": 10, "max_depth": None}}
    assert parse_config(raw, "c.yaml").model.params == {"n_estimators": 10, "max_depth": None}
    assert parse_config(raw, "c.yaml", {"model.params.max_depth": "5"}).model.params["max_depth"] == 5
    assert parse_config(raw, "c.yaml", {"model.params.max_depth": "null"}).model.params["max_depth"] is None
    assert parse_config(raw, "c.yaml", {"model.params.min_samples_leaf": "3"}).estimator.params["min_samples_leaf"] == 3  # not in the file
    with pytest.raises(ConfigError, match=r"^-P model.params.n_estimators: model.params.n_estimators: expected an integer, got 2.5$"):
        parse_config(raw, "c.yaml", {"model.params.n_estimators": "2.5"})
    raw = raw_config()
    raw["model"]["defaults"]["regression"]["params"]["alpha"] = 1  # an integer in the file...
    assert parse_config(raw, "c.yaml", {"alpha": "0.3"}).estimator.params["alpha"] == 0.3  # ...still takes any number


def test_a_minus_p_value_is_typed_by_the_keys_declared_type_not_by_the_files_value():
    assert load_config(overrides={"run.max_wait_seconds": "0.5"}).run.max_wait_seconds == 0.5  # the file says 3600


@pytest.mark.parametrize("value", [None, True, False, 0.3, 5, [1, 2], "cyclic"])
def test_values_passed_to_a_step_read_back_as_they_were(value):
    from steps.core.conf import as_text, from_text  # noqa: PLC0415

    assert from_text(as_text(value), None, "x") == value
