"""Cards built from real MLflow evaluations, and logged on runs of a real (temporary) store."""

from __future__ import annotations

import mlflow
import numpy as np

from steps import evaluate
from steps.core import tasks
from steps.core.gate import GateSettings
from steps.mlflow_io import cards
from steps.mlflow_io.cards import Card
from steps.mlflow_io.registry import RegisteredModel
from tests.conftest import check_card, make_frame

LENIENT = GateSettings(metric="auto", baseline_margin=0.05, champion_tolerance=0.01)


def _judge(test, predictions, schema, champion=None) -> evaluate.EvaluateOutputs:
    summary = tasks.summarize(tasks.REGRESSION, test["y"])
    return evaluate.run(test, schema, LENIENT, summary, evaluate.Candidate(np.asarray(predictions)), champion=champion)


def test_the_evaluate_card_compares_with_the_champion_and_embeds_the_plots(tracking_uri, small_schema):
    test = make_frame(rows=40, missing=False)
    signs = np.where(np.arange(len(test)) % 2 == 0, 1.0, -1.0)
    champion = evaluate.Champion(RegisteredModel("m", "3"), test["y"].to_numpy() + 2 * signs)
    with mlflow.start_run():
        out = _judge(test, test["y"].to_numpy() + signs, small_schema, champion=champion)
    text, _ = check_card(evaluate.card(out, champion, tasks.REGRESSION, len(test), model_uri="models:/m-9").render(), min_images=2)
    assert text.startswith("evaluate: passed")
    baseline = f"{out.baseline['root_mean_squared_error']:.4g}"
    assert f"metric candidate baseline champion (version 3) RMSE (gate) 1 {baseline} 2" in text
    assert "check result detail baseline passed" in text and "champion passed" in text


def test_the_evaluate_card_says_why_there_is_no_comparison(tracking_uri, small_schema):
    test = make_frame(rows=30, missing=False)
    with mlflow.start_run():
        out = _judge(test, test["y"].to_numpy() + 150.0, small_schema)  # worse than predicting the mean
    text, _ = check_card(evaluate.card(out, None, tasks.REGRESSION, len(test), model_uri="models:/m-9").render(), min_images=2)
    assert text.startswith("evaluate: rejected") and evaluate.NO_CHAMPION in text and "failed" in text


def test_a_card_that_cannot_be_built_leaves_a_warning_not_a_failed_run(tracking_uri, caplog):
    def broken() -> Card:
        raise ValueError("Too many bins for data range")

    with mlflow.start_run() as run, caplog.at_level("WARNING"):
        cards.log_card(broken)
        cards.log_card(lambda: Card("fine"), "other.html")
    assert "no card.html for this run: ValueError: Too many bins for data range" in caplog.text
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)] == ["other.html"]
