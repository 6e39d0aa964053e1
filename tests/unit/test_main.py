"""The driver: -P values (declared parameters and MLflow's extra `--key value`) and what its steps inherit."""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace

import pytest

import main
from steps import featurize, train
from steps.core.errors import ConfigError, InputError
from steps.mlflow_io.step_run import PARENT_RUN_ENV, report_error
from steps.orchestration import driver


def parse(*argv: str) -> dict[str, str]:
    args, extra = driver.build_parser(main.PIPELINE).parse_known_args(list(argv))
    return driver.overrides_from(args, extra, main.PIPELINE)


def test_declared_parameters_and_extra_dotted_keys_become_overrides():
    overrides = parse("--alpha", "0.3", "--data_uri", "d.csv", "--evaluation.baseline_margin", "0.4", "--model.params.tol", "0.01")
    assert overrides == {"alpha": "0.3", "data_uri": "d.csv", "evaluation.baseline_margin": "0.4", "model.params.tol": "0.01"}
    config = driver.resolve_config(overrides, main.PIPELINE)
    assert config.evaluation.baseline_margin == 0.4 and config.estimator.params["tol"] == 0.01


def test_a_stray_argument_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"unexpected argument 'oops': pass parameters as -P name=value"):
        parse("oops")
    with pytest.raises(ConfigError, match=r"unexpected argument '--dangling'"):
        parse("--dangling")


def test_abbreviations_are_unknown_parameters_not_silent_matches():
    with pytest.raises(ConfigError, match=r"-P alph: unknown parameter \(did you mean 'alpha'\?\)"):
        driver.resolve_config(parse("--alph", "0.1"), main.PIPELINE)


def test_a_dotted_key_with_its_own_parameter_must_use_the_parameter():
    with pytest.raises(ConfigError, match=r"-P model.params.alpha: set it with -P alpha=... instead"):
        parse("--model.params.alpha", "0.1")


def test_step_argument_errors_are_one_line_input_errors():
    with pytest.raises(InputError, match=r"unrecognized arguments: --bogus 1"):
        featurize.build_parser().parse_args(["--bogus", "1"])
    with pytest.raises(InputError, match=r"unrecognized arguments: --alpha abc"):
        train.build_parser().parse_args(["--alpha", "abc"])  # a step run alone takes -P params='{alpha: 0.1}'
    args = train.build_parser().parse_args(["--params", "{alpha: 0.1}", "--estimator", "sklearn.linear_model.ElasticNet"])
    assert (args.params, args.estimator) == ("{alpha: 0.1}", "sklearn.linear_model.ElasticNet")


def test_steps_inherit_the_parent_run_and_no_experiment_name(monkeypatch):
    # `mlflow run -e <step> --experiment-id <parent's>` refuses an experiment name set alongside.
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "nightly")
    # setenv first: delenv of an unset variable records nothing, and the value set below would
    # then outlive the test, making every later step in this worker log its errors quietly.
    monkeypatch.setenv(PARENT_RUN_ENV, "unset")
    monkeypatch.delenv(PARENT_RUN_ENV)
    parent = SimpleNamespace(info=SimpleNamespace(run_id="abc123"))
    driver.prepare_step_environment(parent)
    assert "MLFLOW_EXPERIMENT_NAME" not in os.environ
    assert os.environ[PARENT_RUN_ENV] == "abc123"


def test_a_step_under_the_driver_logs_its_error_and_leaves_the_error_line_to_the_driver(monkeypatch, capsys, caplog):
    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)
    report_error("ingest: d.csv: the file is empty")
    assert capsys.readouterr().err == "error: ingest: d.csv: the file is empty\n"
    monkeypatch.setenv(PARENT_RUN_ENV, "abc123")
    with caplog.at_level(logging.ERROR):
        report_error("ingest: d.csv: the file is empty")
    assert capsys.readouterr().err == ""
    assert [r.getMessage() for r in caplog.records] == ["ingest: d.csv: the file is empty"]


def test_a_driver_refuses_keys_it_does_not_use():
    from steps.sweep import SWEEP  # noqa: PLC0415 - the other driver

    with pytest.raises(ConfigError, match=r"-P sweep.grid.alpha: not used by main; only `mlflow run . -e sweep` uses it"):
        parse("--sweep.grid.alpha", "0.1,1")
    args, extra = driver.build_parser(SWEEP).parse_known_args(["--run.dry_run", "true"])
    with pytest.raises(ConfigError, match=r"-P run.dry_run: not used by sweep"):
        driver.overrides_from(args, extra, SWEEP)
