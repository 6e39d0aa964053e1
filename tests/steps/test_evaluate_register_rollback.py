"""The evaluate, register and rollback steps against a real (temporary) MLflow tracking store, in this process."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from steps import evaluate, register, rollback
from steps.core import tasks
from steps.core.errors import InputError
from steps.core.gate import GateSettings
from steps.core.tasks import TargetSummary
from steps.mlflow_io.champions import champion_to_compare
from steps.mlflow_io.contracts import ChampionRecord, CheckRecord, EvaluationResult, Manifest
from steps.mlflow_io.registry import RegisteredModel, RegistryBusyError, alias_version, registry_lease, resolve
from tests.conftest import fit_model, log_model, make_frame

LENIENT = GateSettings(metric="auto", baseline_margin=0.05, champion_tolerance=0.01)
STRICT = GateSettings(metric="auto", baseline_margin=0.05, champion_tolerance=0.0)
BY = {"user": "tester", "run_id": "run123"}


def _summary(test) -> TargetSummary:
    """A baseline fitted on the test split itself: its mean."""
    return tasks.summarize(tasks.REGRESSION, test["y"])


def _judge(test, predictions, schema, settings=LENIENT, champion=None) -> evaluate.EvaluateOutputs:
    candidate = evaluate.Candidate(np.asarray(predictions))
    return evaluate.run(test, schema, settings, _summary(test), candidate, champion=champion)


def test_good_predictions_pass_and_metrics_come_from_mlflow_evaluate(tracking_uri, small_schema):
    test = make_frame(rows=30, missing=False)
    with mlflow.start_run() as run:
        out = _judge(test, test["y"].to_numpy() + 1.0, small_schema)
    assert out.passed, out.reason
    assert out.metrics["root_mean_squared_error"] == pytest.approx(1.0)
    assert out.metrics["mean_absolute_error"] == pytest.approx(1.0)
    assert out.metrics["r2_score"] > 0.99
    assert out.champion_metrics is None
    assert out.reason.endswith("no champion yet")
    assert [c.name for c in out.checks] == ["baseline"]  # the small schema declares no thresholds
    assert out.baseline["root_mean_squared_error"] == pytest.approx(test["y"].std(ddof=0))
    assert set(out.figures) == {"plots/predicted_vs_actual.png", "plots/residuals.png"}
    logged = MlflowClient().get_run(run.info.run_id).data.metrics
    assert logged["root_mean_squared_error"] == pytest.approx(1.0)


def test_the_schemas_thresholds_apply_to_its_data(tracking_uri, small_schema):
    test = make_frame(rows=30, missing=False)
    schema = dataclasses.replace(small_schema, thresholds={"r2": {"min": 0.3}, "rmse": {"max": 0.5}})
    with mlflow.start_run():
        out = _judge(test, test["y"].to_numpy() + 1.0, schema)
    assert not out.passed
    assert out.reason == "RMSE 1 > max 0.5 (the schema's threshold); no champion yet"


def test_a_constant_prediction_is_refused_and_says_why(tracking_uri, small_schema):
    test = make_frame(rows=30, missing=False)
    constant = np.full(len(test), test["y"].mean())
    with mlflow.start_run():
        out = _judge(test, constant, small_schema)
    assert not out.passed
    assert out.reason.startswith(f"the candidate predicts {float(test['y'].mean())!r} for every test row; RMSE ")
    assert "misses" in out.reason and "(the baseline: the train split's mean)" in out.reason
    assert "\n" not in out.reason


def test_unusable_predictions_are_errors(tracking_uri, small_schema):
    test = make_frame(rows=10, missing=False)
    with pytest.raises(InputError, match=r"returned 9 predictions for 10 test rows"):
        _judge(test, np.zeros(9), small_schema)
    with pytest.raises(InputError, match=r"1 non-finite prediction"):
        _judge(test, np.r_[np.zeros(9), np.nan], small_schema)


@pytest.mark.parametrize(
    ("candidate_error", "champion_error", "passed"),
    [
        (2.0, 1.0, False),  # twice the champion's RMSE: far beyond the 1% tolerance
        (1.005, 1.0, True),  # 0.5% worse: within the tolerance
        (1.0, 2.0, True),  # better than the champion
    ],
)
def test_candidate_is_judged_against_the_champion_on_the_same_split(tracking_uri, small_schema, candidate_error, champion_error, passed):
    test = make_frame(rows=40, missing=False)
    signs = np.where(np.arange(len(test)) % 2 == 0, 1.0, -1.0)  # RMSE == the offset exactly
    champion = evaluate.Champion(RegisteredModel("m", "3"), test["y"].to_numpy() + champion_error * signs)
    with mlflow.start_run() as run:
        out = _judge(test, test["y"].to_numpy() + candidate_error * signs, small_schema, champion=champion)
    assert out.passed is passed, out.reason
    assert out.champion_metrics["root_mean_squared_error"] == pytest.approx(champion_error)
    check = out.checks[-1]
    assert check.name == "champion" and check.passed is passed
    assert f"champion version 3's {champion_error:.4g} on the same test split" in check.detail
    if not passed:
        assert out.reason == check.detail  # only the failed check explains a rejection

    # The champion's evaluation is a nested run of the evaluate run, named after the version.
    (nested,) = MlflowClient().search_runs([run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert nested.data.tags["mlflow.runName"] == "m version 3 (champion, same test split)"
    assert nested.data.metrics["root_mean_squared_error"] == pytest.approx(champion_error)


def test_with_no_tolerance_an_equal_candidate_leaves_the_champion_in_place(tracking_uri, small_schema):
    test = make_frame(rows=40, missing=False)
    signs = np.where(np.arange(len(test)) % 2 == 0, 1.0, -1.0)
    champion = evaluate.Champion(RegisteredModel("m", "2"), test["y"].to_numpy() + signs)
    with mlflow.start_run():
        same = _judge(test, test["y"].to_numpy() + signs, small_schema, STRICT, champion=champion)
        better = _judge(test, test["y"].to_numpy() + 0.999 * signs, small_schema, STRICT, champion=champion)
    assert not same.passed
    assert same.reason == "RMSE 1 equals champion version 2's 1 on the same test split: an equal model does not replace the champion"
    assert better.passed, better.reason
    assert better.checks[-1].detail == "RMSE 0.999 better than champion version 2's 1 on the same test split"


def test_a_champion_that_cannot_score_the_split_leaves_the_other_checks(tracking_uri, small_schema):
    test = make_frame(rows=30, missing=False)
    champion = evaluate.Champion(RegisteredModel("m", "4"), None, "cannot score this test split (KeyError: 'x3')")
    with mlflow.start_run():
        out = _judge(test, test["y"].to_numpy() + 1.0, small_schema, champion=champion)
    assert out.passed
    assert [c.name for c in out.checks] == ["baseline"]
    assert out.champion_metrics is None
    assert out.reason.endswith("; champion version 4 cannot score this test split (KeyError: 'x3')")


def evaluation_result(**changes: object) -> EvaluationResult:
    values = {
        "passed": False,
        "reason": "RMSE 2 > 1.01",
        "metrics": {"root_mean_squared_error": 2.0, "mean_absolute_error": 1.5, "r2_score": 0.5},
        "champion": ChampionRecord(
            model_name="m", version="3", metrics={"root_mean_squared_error": 1.0, "mean_absolute_error": 0.8, "r2_score": 0.9}
        ),
        "checks": [CheckRecord(name="champion", passed=False, detail="RMSE 2 > 1.01")],
        "task": "regression",
        "metric": "root_mean_squared_error",
        "baseline": {"root_mean_squared_error": 3.0, "mean_absolute_error": 2.5, "r2_score": -0.01},
        "gate": {"metric": "auto", "baseline_margin": 0.05, "champion_tolerance": 0.01},
        "test_rows": 40,
        "test_uri": "runs:/x/data/test.parquet",
        "model_uri": "models:/m-1",
        "test_digest": "split-1",
    }
    return EvaluationResult(**(values | changes))


def test_report_shows_both_metric_sets_and_every_check():
    report = evaluate.report_markdown(evaluation_result())
    assert report.startswith("# Evaluation: **rejected**")
    assert "| metric | candidate | baseline | champion (version 3) |" in report
    assert "| RMSE (gate) | 2 | 3 | 1 |" in report
    assert "| champion | no | RMSE 2 > 1.01 |" in report


def test_the_evaluation_result_is_read_back_as_written_and_a_foreign_file_is_refused():
    written = evaluation_result()
    assert EvaluationResult.from_json(__import__("json").loads(written.to_json()), "uri", "evaluation result") == written
    with pytest.raises(InputError, match=r"^evaluation result runs:/e/x.json: not written by this pipeline's steps \(passed: "):
        EvaluationResult.from_json({"model_uri": "models:/m-1"}, "runs:/e/x.json", "evaluation result")


@pytest.fixture
def new_model(tracking_uri, small_schema) -> Callable[[], str]:
    """Log a new model (a distinct logged model id each call) and return its URI."""
    fitted = fit_model(make_frame(rows=60), small_schema, alpha=0.1, l1_ratio=0.5)

    def log() -> str:
        with mlflow.start_run():
            return log_model(fitted).model_uri

    return log


def _register(model_uri: str, passed: bool, compared_with: str | None, name: str = "unit-model") -> register.RegisterOutputs:
    verdict = register.Verdict(passed=passed, reason="because", compared_with=compared_with)
    tags = {"data.digest": "abc", "evaluation.passed": str(passed).lower()}
    return register.run(MlflowClient(), model_uri, name, verdict, tags=tags, by=BY)


def test_register_promotes_passed_candidates_and_keeps_rejected_ones_as_challenger(new_model, small_schema):
    client = MlflowClient()
    first = _register(new_model(), passed=True, compared_with=None)
    assert (first.model.version, first.decision, first.champion) == ("1", "promoted", "1")
    assert client.get_model_version("unit-model", "1").tags["champion.previous"] == "none"

    rejected = _register(new_model(), passed=False, compared_with="1")
    assert (rejected.model.version, rejected.decision, rejected.champion) == ("2", "rejected", "1")
    assert alias_version(client, "unit-model", "challenger") == "2"
    assert alias_version(client, "unit-model", "champion") == "1"
    tags = client.get_model_version("unit-model", "2").tags
    assert (tags["decision"], tags["decision.reason"], tags["data.digest"]) == ("rejected", "because", "abc")

    better = _register(new_model(), passed=True, compared_with="1")
    assert (better.model.version, better.decision, better.champion) == ("3", "promoted", "3")
    tags = client.get_model_version("unit-model", "3").tags
    assert tags["champion.previous"] == "1"
    assert tags["champion.promoted_by.user"] == "tester"
    assert "version 3 promoted (replacing 1)" in client.get_registered_model("unit-model").tags["champion.last_change"]
    assert champion_to_compare(client, "unit-model", new_model()).uri == "models:/unit-model/3"
    predictions = mlflow.pyfunc.load_model("models:/unit-model@champion").predict(make_frame(rows=5)[small_schema.features])
    assert np.isfinite(predictions).all()


def test_register_does_not_promote_when_the_champion_changed_since_evaluation(new_model):
    _register(new_model(), passed=True, compared_with=None)  # version 1, champion
    _register(new_model(), passed=True, compared_with="1")  # version 2: another pipeline promoted it meanwhile
    late = _register(new_model(), passed=True, compared_with="1")  # version 3 was compared with version 1
    assert (late.decision, late.champion) == ("not promoted", "2")
    assert "compared with version 1, but champion is now version 2" in late.reason
    assert alias_version(MlflowClient(), "unit-model", "challenger") == "3"


def test_first_candidate_is_not_promoted_if_a_champion_appeared_meanwhile(new_model):
    _register(new_model(), passed=True, compared_with=None)
    late = _register(new_model(), passed=True, compared_with=None)
    assert late.decision == "not promoted"
    assert "compared with no champion, but champion is now version 1" in late.reason


def _register_measured(model_uri: str, rmse: float, compared_with: str | None, test_digest: str = "split-1") -> register.RegisterOutputs:
    """Register a passed candidate whose verdict carries its metrics on test split ``test_digest``."""
    evaluation = evaluation_result(
        passed=True, reason="ok", metrics={"root_mean_squared_error": rmse, "r2_score": 0.9}, test_digest=test_digest, champion=None
    )
    verdict = register.Verdict(
        passed=True,
        reason="ok",
        compared_with=compared_with,
        metrics=evaluation.metrics,
        test_digest=test_digest,
        params=STRICT,
        metric="root_mean_squared_error",
    )
    tags = register.lineage_tags({}, MANIFEST, evaluation, "sklearn.linear_model.ElasticNet")
    return register.run(MlflowClient(), model_uri, "unit-model", verdict, tags=tags, by=BY)


def test_a_candidate_overtaken_meanwhile_is_compared_with_the_new_champions_recorded_metrics(new_model):
    # Three pipelines evaluated against no champion; they register in this order.
    first = _register_measured(new_model(), rmse=50.0, compared_with=None)
    assert (first.decision, first.champion) == ("promoted", "1")
    better = _register_measured(new_model(), rmse=45.0, compared_with=None)
    assert (better.decision, better.champion) == ("promoted", "2")
    recheck = "champion is now version 1, and by its recorded evaluation: RMSE 45 better than version 1's 50 on the same test split"
    assert recheck in better.reason
    worse = _register_measured(new_model(), rmse=47.5, compared_with=None)
    assert (worse.decision, worse.champion) == ("not promoted", "2")
    assert worse.reason.endswith("which is better by its recorded evaluation: RMSE 47.5 worse than version 2's 45 on the same test split")
    # Recorded on another split: not comparable, so not promoted.
    other_split = _register_measured(new_model(), rmse=1.0, compared_with="1", test_digest="split-2")
    assert (other_split.decision, other_split.champion) == ("not promoted", "2")
    assert other_split.reason.endswith("run the pipeline again to compare with it")
    client = MlflowClient()
    assert alias_version(client, "unit-model", "champion") == "2"
    assert alias_version(client, "unit-model", "challenger") == "4"
    assert client.get_model_version("unit-model", "1").tags["evaluation.test_digest"] == "split-1"


def test_challenger_stays_on_the_newest_version_whoever_registers_last(new_model):
    client = MlflowClient()
    _register(new_model(), passed=True, compared_with=None)
    _register(new_model(), passed=False, compared_with="1")
    register.point_challenger(client, RegisteredModel("unit-model", "1"))  # a slower pipeline's late call
    assert alias_version(client, "unit-model", "challenger") == "2"


def test_the_alias_lease_excludes_others_breaks_stale_leases_and_is_released(tracking_uri):
    client = MlflowClient()
    with registry_lease(client, "unit-model", "first holder"):
        lease = client.get_registered_model("unit-model.alias-lock")
        assert lease.tags["pipeline.lease.holder"] == "first holder"
        busy = pytest.raises(RegistryBusyError, match=r"'unit-model.alias-lock' \(first holder\) has held the aliases of 'unit-model'")
        with busy, registry_lease(client, "unit-model", "second holder", wait_seconds=0.5, stale_seconds=10):
            pass
    assert not client.search_registered_models("name = 'unit-model.alias-lock'")
    # A lease whose process died mid-change is broken once seen unchanged for stale_seconds.
    client.create_registered_model("unit-model.alias-lock", tags={"pipeline.lease.holder": "a dead process"})
    with registry_lease(client, "unit-model", "next holder", wait_seconds=5, stale_seconds=0.3) as lease:
        assert client.get_registered_model("unit-model.alias-lock").tags["pipeline.lease.holder"] == "next holder"
        lease.confirm()
    assert not client.search_registered_models("name = 'unit-model.alias-lock'")


def test_a_holder_whose_lease_was_broken_changes_nothing_and_leaves_the_next_lease_alone(tracking_uri):
    client = MlflowClient()
    with registry_lease(client, "unit-model", "slow holder") as slow:
        # The slow holder's lease is broken as stale, and another process takes a new one.
        client.delete_registered_model("unit-model.alias-lock")
        with registry_lease(client, "unit-model", "next holder") as following:
            with pytest.raises(RegistryBusyError, match=r"lost the lease 'unit-model\.alias-lock'"):
                slow.confirm()
            following.confirm()
        client.create_registered_model("unit-model.alias-lock", tags={"pipeline.lease.token": "someone else's"})
    # Releasing the slow holder's lease left the other one in place.
    assert client.get_registered_model("unit-model.alias-lock").tags["pipeline.lease.token"] == "someone else's"


def test_the_same_model_again_is_not_compared_with_itself_nor_promoted_twice(new_model):
    client = MlflowClient()
    model_uri = new_model()
    _register(model_uri, passed=True, compared_with=None)
    # An identical re-run compares with what the champion was compared with (here: nothing), so
    # its evaluation stays a cache hit...
    assert champion_to_compare(client, "unit-model", model_uri).uri == ""
    other = new_model()
    assert champion_to_compare(client, "unit-model", other).uri == "models:/unit-model/1"
    # ...and registering the same model again (e.g. forced with -P steps) changes no champion.
    again = _register(model_uri, passed=True, compared_with=None)
    assert (again.model.version, again.decision, again.champion) == ("2", "already champion", "1")
    assert again.reason == "the champion, version 1, is this same model"
    # A champion that replaced version 1 is compared with version 1 again when re-run.
    tags = {"evaluation.passed": "true", "evaluation.champion_version": "1"}
    promoted = register.run(client, other, "unit-model", register.Verdict(True, "ok", "1"), tags=tags, by=BY)
    assert (promoted.model.version, promoted.decision) == ("3", "promoted")
    assert champion_to_compare(client, "unit-model", other).uri == "models:/unit-model/1"
    assert champion_to_compare(client, "unit-model", model_uri).uri == "models:/unit-model/3"


def test_a_rolled_back_model_is_not_promoted_again_automatically(new_model):
    client = MlflowClient()
    first, second = new_model(), new_model()
    _register(first, passed=True, compared_with=None)  # 1
    _register(second, passed=True, compared_with="1")  # 2, previous 1
    rollback.run(client, "unit-model", None, "complaints", by=BY)  # champion back to 1
    again = _register(second, passed=True, compared_with="1")  # 3: the same model as 2, evaluated anew
    assert (again.decision, again.champion) == ("not promoted", "1")
    assert "version 2 holds this same model and was rolled back (complaints)" in again.reason
    assert "-e rollback -P version=2" in again.reason


MANIFEST = Manifest(
    source="data/example_data.csv",
    resolved_source="/abs/data/example_data.csv",
    digest="d1g3st",
    rows=10,
    missing_values=0,
    splits={"train": {"rows": 8, "digest": "a"}, "test": {"rows": 2, "digest": "b"}},
    split={"test_size": 0.2, "seed": 42},
    target={"task": "regression", "mean": 1.0},
    schema={"target": "y", "columns": {"x": {"dtype": "float"}, "y": {"dtype": "float"}}},
)


def test_verdict_must_be_about_this_model_and_registry_name():
    evaluation = evaluation_result(passed=True, champion=ChampionRecord(model_name="other", version="2"))
    with pytest.raises(InputError, match="compared with the champion of 'other', not of 'unit-model'"):
        register.verdict_of(evaluation, "runs:/e/evaluation/result.json", "models:/m-1", "unit-model")
    with pytest.raises(InputError, match="is for models:/m-1, not for models:/m-2"):
        register.verdict_of(evaluation, "runs:/e/evaluation/result.json", "models:/m-2", "other")
    verdict = register.verdict_of(evaluation, "uri", "models:/m-1", "other")
    assert (verdict.passed, verdict.compared_with) == (True, "2")
    assert verdict.params == GateSettings(metric="auto", baseline_margin=0.05, champion_tolerance=0.01)  # for the re-check
    assert (verdict.task, verdict.metric) == ("regression", "root_mean_squared_error")


def test_lineage_tags_link_run_data_code_and_verdict():
    evaluation = evaluation_result(passed=True, reason="ok", metrics={"r2_score": 0.5, "root_mean_squared_error": 50.0, "max_error": 1.0})
    run_tags = {"mlflow.parentRunId": "parent123", "mlflow.source.git.commit": "deadbeef"}
    tags = register.lineage_tags(run_tags, MANIFEST, evaluation, "sklearn.linear_model.ElasticNet")
    assert tags["pipeline.run_id"] == "parent123"
    assert tags["git.commit"] == "deadbeef"
    assert tags["data.digest"] == "d1g3st"
    assert tags["evaluation.passed"] == "true"
    assert tags["evaluation.r2_score"] == "0.5"
    assert "evaluation.max_error" not in tags
    assert (tags["model.task"], tags["model.estimator"], tags["data.target"]) == ("regression", "sklearn.linear_model.ElasticNet", "y")
    assert tags["evaluation.primary_metric"] == "root_mean_squared_error"
    standalone = register.lineage_tags({}, MANIFEST, evaluation_result(), "unknown")
    assert standalone["pipeline.run_id"].startswith("none")
    assert standalone["git.commit"].startswith("unknown")


def test_rollback_walks_back_one_promotion_at_a_time(new_model):
    client = MlflowClient()
    _register(new_model(), passed=True, compared_with=None)  # 1: champion
    _register(new_model(), passed=False, compared_with="1")  # 2: rejected
    _register(new_model(), passed=True, compared_with="1")  # 3: champion, previous 1

    out = rollback.run(client, "unit-model", None, "bad predictions in production", by=BY)
    assert (out.demoted.version, out.champion.version) == ("3", "1")
    assert alias_version(client, "unit-model", "champion") == "1"
    tags = client.get_model_version("unit-model", "3").tags
    assert tags["champion.rolled_back.reason"] == "bad predictions in production"
    assert tags["champion.rolled_back.by.user"] == "tester"
    assert "rolled back from version 3 to 1" in client.get_registered_model("unit-model").tags["champion.last_change"]

    with pytest.raises(InputError, match="unit-model version 1 is the first champion: there is no earlier one"):
        rollback.run(client, "unit-model", None, "again", by=BY)
    with pytest.raises(InputError, match="unit-model version 2 did not pass evaluation"):
        rollback.run(client, "unit-model", "2", "try the rejected one", by=BY)
    with pytest.raises(InputError, match="unit-model version 1 is already the champion"):
        rollback.run(client, "unit-model", "1", "noop", by=BY)
    with pytest.raises(InputError, match="unit-model version 9: not found in the model registry"):
        rollback.run(client, "unit-model", "9", "missing", by=BY)
    assert rollback.run(client, "unit-model", "3", "fixed after all", by=BY).champion.version == "3"


def test_rollback_needs_a_champion(tracking_uri):
    with pytest.raises(InputError, match="registered model 'nobody' has no champion: nothing to roll back"):
        rollback.run(MlflowClient(), "nobody", None, "why", by=BY)


@pytest.mark.parametrize(("text", "expected"), [("", None), (" 3 ", "3"), ("007", "7")])
def test_rollback_version_parameter(text, expected):
    assert rollback.parse_version(text) == expected


@pytest.mark.parametrize("text", ["0", "-1", "v2", "1.5"])
def test_rollback_rejects_a_version_that_is_not_a_number(text):
    with pytest.raises(InputError, match=r"-P version: expected a model version number"):
        rollback.parse_version(text)


def test_model_uris_resolve_to_registered_versions(new_model):
    client = MlflowClient()
    _register(new_model(), passed=True, compared_with=None)
    assert resolve(client, "models:/unit-model@champion", "x") == RegisteredModel("unit-model", "1")
    assert resolve(client, "models:/unit-model@challenger", "x") == RegisteredModel("unit-model", "1")
    assert resolve(client, "models:/unit-model@nobody", "x") is None
    assert resolve(client, "models:/unit-model/1", "x").uri == "models:/unit-model/1"
    assert resolve(client, "models:/unit-model/01", "x").version == "1"
    with pytest.raises(InputError, match="unit-model version 5: not found"):
        resolve(client, "models:/unit-model/5", "x")
    with pytest.raises(InputError, match="champion_uri 'runs:/abc/model': expected models:/<name>/<version>"):
        resolve(client, "runs:/abc/model", "champion_uri")
    assert champion_to_compare(client, "no-such-model", "models:/m-1").uri == ""


def test_a_champion_without_the_gates_metric_is_not_compared_and_does_not_block_the_gate(tracking_uri):
    # The champion, a RidgeClassifier, has no predict_proba, so no log loss: the candidate cannot
    # be better than a NaN, and must not be refused for it.
    from steps.core.model import skops_types  # noqa: PLC0415
    from steps.core.schema import parse_schema  # noqa: PLC0415

    schema = parse_schema({"target": "y", "columns": {"x1": {}, "x2": {}, "y": {"dtype": "string"}}}, "s.yaml")
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x1": rng.normal(size=120), "x2": rng.normal(size=120)})
    frame["y"] = np.where(frame["x1"] + 0.3 * rng.normal(size=120) > 0, "yes", "no")
    train, test = frame.iloc[:80], frame.iloc[80:].reset_index(drop=True)

    def logged(estimator: str | None) -> mlflow.pyfunc.PyFuncModel:
        fitted = fit_model(train, schema, estimator=estimator)
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(fitted, name="model", serialization_format="skops", skops_trusted_types=skops_types(fitted))
        return mlflow.pyfunc.load_model(info.model_uri)

    champion_model, candidate_model = logged("sklearn.linear_model.RidgeClassifier"), logged(None)
    features = test[schema.features]
    champion = evaluate.Champion(RegisteredModel("m", "1"), np.asarray(champion_model.predict(features)), loaded=champion_model)
    raw = candidate_model.get_raw_model()
    candidate = evaluate.Candidate(
        np.asarray(candidate_model.predict(features)), candidate_model, None, True, "LogisticRegression", raw.predict_proba(features)
    )
    with mlflow.start_run():
        out = evaluate.run(test, schema, STRICT, tasks.summarize(tasks.CLASSIFICATION, train["y"]), candidate, champion=champion)
    assert out.metric.short == "log_loss"
    assert out.passed, out.reason
    assert out.champion_metrics is None
    assert out.reason.endswith("champion version 1 has no log loss on this test split, so it cannot be compared by evaluation.metric")
