"""Configuration loading, overrides and the files that must agree with conf/pipeline.yaml."""

from __future__ import annotations

import argparse
import importlib
import re

import pytest
import yaml

from steps.core.errors import ConfigError, InputError
from steps.mlflow_io.step_run import require_inputs
from steps.orchestration.config import (
    MAIN_PARAMETERS,
    PROJECT_ROOT,
    SWEEP_PARAMETERS,
    load_config,
    mirror_mismatches,
    mlproject_parameters,
    parse_config,
    read_yaml,
)

# Parameters of the step entry points whose defaults mirror conf/pipeline.yaml.
STEP_PARAMETERS = {
    ("ingest", "data_uri"): "data.uri",
    ("ingest", "schema"): "data.schema",
    ("ingest", "test_size"): "data.test_size",
    ("ingest", "seed"): "data.seed",
    ("train", "alpha"): "model.alpha",
    ("train", "l1_ratio"): "model.l1_ratio",
    ("train", "max_iter"): "model.max_iter",
    ("evaluate", "min_r2"): "evaluation.min_r2",
    ("evaluate", "max_rmse"): "evaluation.max_rmse",
    ("evaluate", "champion_tolerance"): "evaluation.champion_tolerance",
    ("register", "model_name"): "registry.model_name",
    ("rollback", "model_name"): "registry.model_name",
    ("predict", "model_name"): "registry.model_name",
    ("predict", "schema"): "data.schema",
}
# The entry points besides main, each a module of steps/ with a build_parser().
ENTRY_POINT_MODULES = ("ingest", "featurize", "train", "evaluate", "register", "rollback", "predict", "compare")


def raw_config() -> dict:
    return read_yaml("conf/pipeline.yaml")


def test_default_config_loads_with_documented_values():
    config = load_config()
    assert config.data.uri == "data/example_data.csv"
    assert config.model.alpha == 0.5
    assert isinstance(config.data.seed, int)
    assert set(config.flat()) == {
        "data.uri", "data.schema", "data.test_size", "data.seed", "model.alpha", "model.l1_ratio", "model.max_iter",
        "evaluation.min_r2", "evaluation.max_rmse", "evaluation.champion_tolerance", "registry.model_name", "run.use_cache", "run.steps",
        "run.dry_run", "run.fail_on_reject", "run.overlap", "run.max_wait_seconds", "sweep.alphas", "sweep.l1_ratios",
    }  # fmt: skip


def test_sweep_grids_are_lists_in_yaml_and_comma_separated_as_parameters():
    config = load_config()
    assert config.sweep.alphas == (0.01, 0.1, 0.3, 1.0) and config.sweep.l1_ratios == (0.2, 0.5, 0.8)
    assert config.flat()["sweep.alphas"] == "0.01,0.1,0.3,1.0"
    assert config.to_dict()["sweep"]["l1_ratios"] == [0.2, 0.5, 0.8]  # YAML-safe
    swept = load_config(overrides={"alphas": " 0.1, 1 ", "l1_ratios": "0.5"}, parameters=SWEEP_PARAMETERS)
    assert swept.sweep.grid == [(0.1, 0.5), (1.0, 0.5)]
    assert mirror_mismatches(config, entry_point="sweep", parameters=SWEEP_PARAMETERS) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"alphas": "0.1,abc"}, r"-P alphas\[1\]: expected a number, got 'abc'"),
        ({"alphas": ""}, r"-P alphas: sweep.alphas: name at least one value"),
        ({"alphas": "-0.1"}, r"-P alphas: sweep.alphas: every alpha must be >= 0, got -0.1"),
        ({"l1_ratios": "0.5,1.5"}, r"-P l1_ratios: sweep.l1_ratios: every l1_ratio must be between 0 and 1, got 1.5"),
        ({"l1_ratios": "0.5,0.5"}, r"sweep.l1_ratios: values must differ, got 0.5 more than once"),
        ({"alphas": ",".join(str(i) for i in range(40))}, r"^-P alphas: sweep: 40 alphas x 3 l1_ratios = 120 trials; at most 100$"),
        ({"alpha": "0.3"}, r"-P alpha: unknown parameter \(did you mean 'alphas'\?\)"),
    ],
)
def test_bad_sweep_grids_name_the_parameter(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides, parameters=SWEEP_PARAMETERS)


def test_a_grid_in_the_yaml_must_be_a_list_of_numbers():
    raw = raw_config()
    raw["sweep"]["alphas"] = 0.5
    with pytest.raises(ConfigError, match=r"conf/pipeline.yaml: sweep.alphas: expected a list of numbers such as \[0.1, 0.3\], got 0.5"):
        parse_config(raw, "conf/pipeline.yaml")


def test_every_key_in_the_config_file_has_a_comment():
    lines = (PROJECT_ROOT / "conf/pipeline.yaml").read_text().splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"^\s+(\w+):\s*\S", line)
        if match:
            previous = lines[number - 1].strip()
            assert previous.startswith("#"), f"conf/pipeline.yaml line {number + 1}: key '{match.group(1)}' has no comment above it"


def test_overrides_by_parameter_name_and_dotted_key_are_typed():
    config = load_config(overrides={"alpha": "0.3", "seed": "7", "evaluation.min_r2": "0.25", "model_name": "m"})
    assert config.model.alpha == 0.3
    assert config.data.seed == 7
    assert config.evaluation.min_r2 == 0.25
    assert config.registry.model_name == "m"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"alhpa": "0.3"}, r"-P alhpa: unknown parameter \(did you mean 'alpha'\?\)"),
        # model.alpha has its own parameter (-P model.alpha is refused): suggest the parameter.
        ({"model.alfa": "0.3"}, r"-P model.alfa: unknown parameter \(did you mean 'alpha'\?\)"),
        ({"model.max_itr": "9"}, r"-P model.max_itr: unknown parameter \(did you mean 'model.max_iter'\?\)"),
        ({"alpha": "abc"}, r"-P alpha: expected a number, got 'abc'"),
        ({"seed": "1.5"}, r"-P seed: expected an integer, got '1.5'"),
        ({"alpha": "-1"}, r"-P alpha: model.alpha: must be >= 0, got -1.0"),
        ({"alpha": "nan"}, r"-P alpha: expected a finite number"),
        ({"l1_ratio": "2"}, r"model.l1_ratio: must be between 0 and 1"),
        ({"test_size": "1"}, r"data.test_size: must be between 0 and 1"),
        ({"model_name": "a/b"}, r"registry.model_name: must not contain"),
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
    assert "model.max_iter" in valid and "evaluation.min_r2" in valid
    assert "model.alpha" not in valid and "data.uri" not in valid  # set through -P alpha, -P data_uri


def test_unknown_and_missing_keys_in_the_file_are_named():
    raw = raw_config()
    raw["model"]["alpah"] = 0.1
    with pytest.raises(ConfigError, match=r"conf.yaml: unknown key 'model.alpah' \(did you mean 'model.alpha'\?\)"):
        parse_config(raw, "conf.yaml")
    raw = raw_config()
    del raw["evaluation"]["max_rmse"]
    with pytest.raises(ConfigError, match=r"conf.yaml: missing key 'evaluation.max_rmse'"):
        parse_config(raw, "conf.yaml")
    raw = raw_config()
    raw["modle"] = {}
    with pytest.raises(ConfigError, match=r"unknown section 'modle' \(did you mean 'model'\?\)"):
        parse_config(raw, "conf.yaml")


def test_wrong_type_in_the_file_is_named():
    raw = raw_config()
    raw["model"]["alpha"] = "high"
    with pytest.raises(ConfigError, match=r"conf.yaml: model.alpha: expected a number, got 'high'"):
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


def test_mlproject_main_defaults_mirror_the_config():
    assert mirror_mismatches(load_config()) == []
    assert set(mlproject_parameters("main")) == set(MAIN_PARAMETERS)
    assert mirror_mismatches(load_config(), entry_point="sweep", parameters=SWEEP_PARAMETERS) == []
    assert set(mlproject_parameters("sweep")) == set(SWEEP_PARAMETERS)


def test_mirror_check_reports_a_drifted_default():
    config = load_config(overrides={"alpha": "0.9"})
    assert mirror_mismatches(config) == ["MLproject default alpha=0.5 differs from conf/pipeline.yaml model.alpha=0.9"]


@pytest.mark.parametrize(("step_and_name", "key"), STEP_PARAMETERS.items(), ids=str)
def test_step_entry_point_defaults_mirror_the_config(step_and_name, key):
    step, name = step_and_name
    default = mlproject_parameters(step)[name]["default"]
    assert type(load_config().get(key))(default) == load_config().get(key)


def test_every_entry_point_parameter_is_typed_and_used_by_its_command():
    spec = read_yaml("MLproject")
    assert set(spec["entry_points"]) == {"main", "sweep", *ENTRY_POINT_MODULES}
    for name, entry_point in spec["entry_points"].items():
        for param, declared in entry_point["parameters"].items():
            assert declared["type"] in ("string", "float", "int", "bool"), f"{name}.{param}"
            assert f"--{param}={{{param}}}" in entry_point["command"], f"{name}.{param} is not passed to its command"


@pytest.mark.parametrize("entry_point", ENTRY_POINT_MODULES)
def test_cli_types_match_the_mlproject_parameter_types(entry_point):
    python_type = {"string": str, "float": float, "int": int}
    actions = {a.dest: a for a in importlib.import_module(f"steps.{entry_point}").build_parser()._actions if a.dest != "help"}
    declared = mlproject_parameters(entry_point)
    assert set(actions) == set(declared), entry_point
    for name, spec in declared.items():
        assert (actions[name].type or str) is python_type[spec["type"]], f"{entry_point}.{name}"


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


@pytest.mark.parametrize("step", ["featurize", "train", "evaluate", "register"])
def test_step_inputs_are_declared_in_mlproject_with_an_empty_default(step):
    module = importlib.import_module(f"steps.{step}")
    declared = mlproject_parameters(step)
    for name in module.INPUTS:
        assert declared[name] == {"type": "string", "default": ""}, (step, name)


def test_missing_inputs_are_all_named_with_where_they_come_from():
    args = argparse.Namespace(train_uri=" ", manifest_uri="", model_uri="models:/m-1")
    with pytest.raises(InputError) as info:
        require_inputs(args, ("model_uri", "train_uri", "manifest_uri"))
    assert str(info.value) == (
        "missing input train_uri: pass the train split logged by ingest, e.g. -P train_uri=runs:/<ingest run id>/data/train.parquet; "
        "missing input manifest_uri: pass the manifest logged by ingest, e.g. -P manifest_uri=runs:/<ingest run id>/data/manifest.json"
    )
    assert require_inputs(args, ("model_uri",)) == {"model_uri": "models:/m-1"}
