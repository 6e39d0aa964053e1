"""End to end: the real `mlflow run` CLI on the project, inspected with MlflowClient."""

from __future__ import annotations

import json
import re

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import PROJECT_ROOT, check_card
from tests.integration.conftest import STEPS, explain, mlflow_cli, run_pipeline

pytestmark = pytest.mark.e2e

# The parameters through which each step receives upstream outputs, and who produced them.
UPSTREAM_INPUTS = {
    "featurize": {"train_uri": "ingest", "manifest_uri": "ingest"},
    "train": {"train_uri": "ingest", "transformer_uri": "featurize", "manifest_uri": "ingest"},
    "evaluate": {"model_uri": "train", "test_uri": "ingest", "manifest_uri": "ingest"},
    "register": {"model_uri": "train", "evaluation_uri": "evaluate", "manifest_uri": "ingest"},
}


def test_default_store_is_mlflow_db_in_the_working_directory(default_store_run):
    assert (default_store_run.workdir / "mlflow.db").is_file()
    for run in default_store_run.runs():
        assert str(default_store_run.workdir / "mlruns") in run.info.artifact_uri, run.info.artifact_uri


def test_one_parent_and_five_finished_children(default_store_run):
    parent = default_store_run.parent()
    children = default_store_run.children()
    assert parent.info.status == "FINISHED"
    assert parent.data.params["alpha"] == "0.3"
    assert set(children) == set(STEPS)
    for step, child in children.items():
        assert child.info.status == "FINISHED", step
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["mlflow.project.entryPoint"] == step
        assert child.info.experiment_id == parent.info.experiment_id
        assert parent.data.tags[f"pipeline.{step}.run_id"] == child.info.run_id
    assert children["train"].data.params["params.alpha"] == "0.3"  # every argument, one param each
    assert children["train"].data.params["estimator"] == "sklearn.linear_model.ElasticNet"
    assert {child.data.tags["pipeline.task"] for child in children.values()} == {"regression"}


def test_every_downstream_input_is_an_artifact_uri_of_its_upstream_run(default_store_run):
    children = default_store_run.children()
    client = default_store_run.client
    for step, inputs in UPSTREAM_INPUTS.items():
        for param, upstream in inputs.items():
            value = children[step].data.params[param]
            upstream_id = children[upstream].info.run_id
            if value.startswith("models:/"):
                assert client.get_logged_model(value.removeprefix("models:/")).source_run_id == upstream_id, (step, param)
            else:
                assert value.startswith(f"runs:/{upstream_id}/"), (step, param, value)
            # ...and the artifact really is there, readable through MLflow.
            with mlflow.utils.file_utils.TempDir() as tmp:
                mlflow.set_tracking_uri(default_store_run.tracking_uri)
                assert mlflow.artifacts.download_artifacts(value, dst_path=tmp.path()), value


def test_champion_is_registered_and_predicts_from_raw_rows(default_store_run):
    client = default_store_run.client
    versions = default_store_run.registered_versions()
    assert [v.name for v in versions] == ["diabetes-elasticnet"]
    champion = client.get_model_version_by_alias("diabetes-elasticnet", "champion")
    assert str(champion.version) == "1"
    parent = default_store_run.parent()
    assert champion.tags["pipeline.run_id"] == parent.info.run_id
    assert champion.tags["evaluation.passed"] == "true"
    assert re.fullmatch(r"[0-9a-f]{40}", champion.tags["git.commit"]), champion.tags["git.commit"]
    assert champion.tags["data.digest"] == default_store_run.children()["ingest"].data.tags["pipeline.data_digest"]

    mlflow.set_tracking_uri(default_store_run.tracking_uri)
    model = mlflow.pyfunc.load_model("models:/diabetes-elasticnet@champion")
    raw = pd.read_csv(PROJECT_ROOT / "data/example_data.csv").drop(columns=["target"]).head(20)
    predictions = np.asarray(model.predict(raw))
    assert predictions.shape == (20,)
    assert np.isfinite(predictions).all()
    assert model.metadata.get_input_schema().input_names() == list(raw.columns)


def test_steps_log_what_they_promise(default_store_run):
    children = default_store_run.children()
    client = default_store_run.client
    ingest = children["ingest"]
    assert ingest.data.metrics["rows"] == 442
    assert ingest.data.metrics["train_rows"] + ingest.data.metrics["test_rows"] == 442
    assert {d.dataset.name: d.tags[0].value for d in ingest.inputs.dataset_inputs} == {
        "source": "source",
        "train": "training",
        "test": "testing",
    }
    assert all(d.dataset.digest for d in ingest.inputs.dataset_inputs)
    assert {a.path for a in client.list_artifacts(ingest.info.run_id, "data")} == {
        "data/train.parquet",
        "data/test.parquet",
        "data/manifest.json",
    }

    featurize_files = {a.path for a in client.list_artifacts(children["featurize"].info.run_id, "transformer")}
    assert "transformer/preprocessor.skops" in featurize_files

    model_uri = children["train"].data.tags["pipeline.output.model_uri"]
    mlflow.set_tracking_uri(default_store_run.tracking_uri)
    info = mlflow.models.get_model_info(model_uri)
    assert info.flavors["sklearn"]["serialization_format"] == "skops"
    assert info.signature is not None
    assert info.saved_input_example_info is not None

    evaluate = children["evaluate"]
    for metric in ("root_mean_squared_error", "mean_absolute_error", "r2_score"):
        assert metric in evaluate.data.metrics
    plots = {a.path for a in client.list_artifacts(evaluate.info.run_id, "plots")}
    assert plots == {"plots/predicted_vs_actual.png", "plots/residuals.png"}
    result = json.loads(mlflow.artifacts.load_text(f"runs:/{evaluate.info.run_id}/evaluation/result.json"))
    assert result["passed"] is True
    assert result["gate"] == {"metric": "rmse", "baseline_margin": 0.05, "champion_tolerance": 0.0}
    assert (result["task"], result["metric"]) == ("regression", "root_mean_squared_error")
    assert result["baseline"]["root_mean_squared_error"] > result["metrics"]["root_mean_squared_error"]
    assert [c["name"] for c in result["checks"]] == ["baseline", "min r2", "max rmse"]  # conf/schema.yaml's thresholds
    assert result["champion"] is None  # the first model: no champion to beat
    report = mlflow.artifacts.load_text(f"runs:/{evaluate.info.run_id}/evaluation/report.md")
    assert report.startswith("# Evaluation: **passed**")


# Plots each run's card embeds, at least.
CARD_IMAGES = {"main": 1, "ingest": 1, "featurize": 0, "train": 1, "evaluate": 2, "register": 0}


def test_every_run_has_a_card_that_renders(default_store_run):
    parent = default_store_run.parent()
    runs = {"main": parent, **default_store_run.children()}
    texts = {}
    for name, run in runs.items():
        document = default_store_run.artifact_text(run.info.run_id, "card.html")
        texts[name], _ = check_card(document, min_images=CARD_IMAGES[name])
    assert texts["ingest"].startswith("ingest: data profile") and "rows 442" in texts["ingest"]
    assert "bmi" in texts["featurize"] and "one-hot" in texts["featurize"]
    assert "alpha 0.3" in texts["train"] and "Coefficients" in texts["train"]
    assert texts["evaluate"].startswith("evaluate: passed") and "RMSE" in texts["evaluate"]
    assert texts["register"].startswith("register: promoted") and "champion after version 1" in texts["register"]
    # The pipeline's card links every step's run and card, and repeats the outcome.
    main = default_store_run.artifact_text(parent.info.run_id, "card.html")
    for name in STEPS:
        run_id = runs[name].info.run_id
        assert f'/#/experiments/{parent.info.experiment_id}/runs/{run_id}?workflowType=machine_learning"' in main, name
        assert f"/runs/{run_id}/artifacts/card.html?workflowType=machine_learning" in main, name
    assert "Decision: promoted to champion" in texts["main"]
    # ... and carries evaluate's metrics, for the runs table and `compare`.
    evaluated = runs["evaluate"].data.metrics
    for metric in ("root_mean_squared_error", "mean_absolute_error", "r2_score"):
        assert parent.data.metrics[metric] == pytest.approx(evaluated[metric])
    assert parent.data.tags["pipeline.kind"] == "pipeline"


def test_parent_logs_resolved_config_and_prints_a_summary(default_store_run):
    parent = default_store_run.parent()
    assert parent.data.params["model.params.alpha"] == "0.3"
    assert (parent.data.params["model.task"], parent.data.params["model.estimator"]) == ("regression", "sklearn.linear_model.ElasticNet")
    assert parent.data.params["evaluation.metric"] == "rmse"
    mlflow.set_tracking_uri(default_store_run.tracking_uri)
    resolved = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/conf/resolved.yaml"))
    assert resolved["model"]["params"] == {"alpha": 0.3}
    out = default_store_run.process.stdout
    for step, child in default_store_run.children().items():
        assert re.search(rf"{step}\s+{child.info.run_id}\s+FINISHED\s+[\d.]+s", out), out
    assert re.search(r"Evaluation \(test split\): RMSE [\d.]+, MAE [\d.]+, R² [\d.]+\n", out), out
    assert "Model: regression, sklearn.linear_model.ElasticNet (alpha=0.3, l1_ratio=0.5, max_iter=5000)" in out, out
    assert re.search(
        r"Verdict: passed: RMSE [\d.]+ reaches [\d.]+, 5% of the way from [\d.]+ \(the baseline: the train split's mean\) to 0", out
    )
    assert re.search(
        r"R² [\d.]+ >= min 0.3 \(the schema's threshold\); RMSE [\d.]+ <= max 65 \(the schema's threshold\); no champion yet", out
    )
    assert "Registered: diabetes-elasticnet version 1, alias challenger\nDecision: promoted to champion\n" in out
    assert "Champion: diabetes-elasticnet version 1 (this run's model)" in out
    assert 'mlflow models serve -m "models:/diabetes-elasticnet@champion"' in out
    assert mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/summary.txt").startswith(f"Pipeline run {parent.info.run_id} FINISHED")


def test_a_step_runs_alone_from_upstream_uris(default_store_run):
    children = default_store_run.children()
    outputs = {
        k.removeprefix("pipeline.output."): v for c in children.values() for k, v in c.data.tags.items() if k.startswith("pipeline.output.")
    }
    process = mlflow_cli(
        "run", str(PROJECT_ROOT), "-e", "train", "--env-manager", "local",
        "-P", f"train_uri={outputs['train_uri']}",
        "-P", f"transformer_uri={outputs['transformer_uri']}",
        "-P", f"manifest_uri={outputs['manifest_uri']}",
        "-P", "params.alpha=0.05",
        workdir=default_store_run.workdir,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-3000:]
    standalone = [r for r in default_store_run.runs() if r.data.params.get("params.alpha") == "0.05"]
    assert len(standalone) == 1
    assert standalone[0].info.status == "FINISHED"
    assert standalone[0].data.tags["pipeline.output.model_uri"].startswith("models:/")
    assert "mlflow.parentRunId" not in standalone[0].data.tags


def test_a_step_alone_without_its_inputs_says_what_it_needs(tmp_path):
    process = mlflow_cli("run", str(PROJECT_ROOT), "-e", "featurize", "--env-manager", "local", workdir=tmp_path)
    assert process.returncode != 0
    assert "error: featurize: missing input train_uri: pass the train split logged by ingest" in process.stderr


def test_schema_violation_fails_in_ingest_and_registers_nothing(tmp_path):
    data = pd.read_csv(PROJECT_ROOT / "data/example_data.csv")
    data.loc[10, "bmi"] = 400.0  # outside the schema's [10, 80]
    bad = tmp_path / "bad.csv"
    data.to_csv(bad, index=False)
    run = run_pipeline(tmp_path / "store", f"data_uri={bad}")
    assert run.process.returncode != 0, explain(run)
    assert (
        f"error: step ingest failed: ingest: {bad}: column 'bmi': 1 value(s) outside [10, 80], first 400.0 at row 11" in run.process.stderr
    )
    parent, children = run.parent(), run.children()
    assert parent.info.status == "FAILED"
    assert list(children) == ["ingest"]
    assert children["ingest"].info.status == "FAILED"
    assert "column 'bmi'" in children["ingest"].data.tags["pipeline.error"]
    assert run.registered_versions() == []
    assert "Pipeline run" in run.process.stdout and "ingest" in run.process.stdout


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("alpha=abc", "error: main: -P alpha: expected a number, got 'abc'"),
        ("alhpa=0.3", "error: main: -P alhpa: unknown parameter (did you mean 'alpha'?)"),
        ("evaluation.baseline_margin=2", "error: main: -P evaluation.baseline_margin: evaluation.baseline_margin: must be between 0"),
    ],
)
def test_bad_parameters_fail_before_any_step_runs(tmp_path, param, message):
    run = run_pipeline(tmp_path, param)
    assert run.process.returncode != 0
    assert message in run.process.stderr, explain(run)
    assert run.parent().info.status == "FAILED"
    assert run.children() == {}


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("test_size=abc", "error: ingest: argument --test_size: invalid float value: 'abc'"),
        ("seed=-1", "error: ingest: data.seed: must be between 0 and 2**32 - 1, got -1"),
    ],
)
def test_a_step_alone_checks_its_parameters_and_records_the_error(tmp_path, param, message):
    process = mlflow_cli("run", str(PROJECT_ROOT), "-e", "ingest", "--env-manager", "local", "-P", param, workdir=tmp_path)
    assert process.returncode != 0
    assert message in process.stderr
    assert "Traceback" not in process.stderr
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs(["0"])
    assert run.info.status == "FAILED"
    assert run.data.tags["pipeline.error"] == message.removeprefix("error: ")


def test_own_parquet_data_with_its_own_schema_and_a_text_column(tmp_path):
    """The README's "your own data" path: another dataset, schema and model name, Parquet input."""
    rng = np.random.default_rng(7)
    rows = 300
    houses = pd.DataFrame({"rooms": rng.integers(1, 8, rows).astype(float), "area": rng.uniform(30, 200, rows)})
    houses["district"] = rng.choice(["north", "south", "east"], rows)
    houses["price"] = 20 * houses["area"] + 5 * houses["rooms"] + houses["district"].map({"north": 300.0, "south": 0.0, "east": 100.0})
    houses.loc[3, "area"] = np.nan
    houses.to_parquet(tmp_path / "houses.parquet", index=False)
    schema = {
        "target": "price",
        "columns": {
            "rooms": {"dtype": "int", "min": 1, "max": 50},
            "area": {"dtype": "float", "min": 1},
            "district": {"dtype": "string", "allowed": ["north", "south", "east"]},
            "price": {"dtype": "float", "min": 0},
        },
    }
    (tmp_path / "houses.yaml").write_text(yaml.safe_dump(schema))
    run = run_pipeline(
        tmp_path / "store",
        f"data_uri={tmp_path / 'houses.parquet'}",
        f"schema={tmp_path / 'houses.yaml'}",
        "model_name=houses",
        "alpha=0.01",
    )
    assert run.process.returncode == 0, explain(run)
    mlflow.set_tracking_uri(run.tracking_uri)
    model = mlflow.pyfunc.load_model("models:/houses@champion")
    new = pd.DataFrame({"rooms": [3.0, 2.0], "area": [100.0, np.nan], "district": ["north", "west"]})
    predictions = np.asarray(model.predict(new))
    assert np.isfinite(predictions).all()
    assert predictions[0] == pytest.approx(20 * 100 + 5 * 3 + 300, rel=0.05)


def test_a_missing_data_file_fails_in_ingest(tmp_path):
    run = run_pipeline(tmp_path, f"data_uri={tmp_path / 'nope.csv'}")
    assert run.process.returncode != 0
    assert f"error: step ingest failed: ingest: dataset {tmp_path / 'nope.csv'}: file not found" in run.process.stderr
    assert run.parent().info.status == "FAILED"
    assert {step: r.info.status for step, r in run.children().items()} == {"ingest": "FAILED"}
    assert run.registered_versions() == []
