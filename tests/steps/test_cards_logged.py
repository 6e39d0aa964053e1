"""Cards built from real MLflow evaluations, and logged on runs of a real (temporary) store."""

from __future__ import annotations

import mlflow
import numpy as np

from steps import evaluate
from steps.core.gate import GateSettings
from steps.mlflow_io import cards
from steps.mlflow_io.cards import Card
from steps.mlflow_io.registry import RegisteredModel
from tests.conftest import check_card, make_frame

LENIENT = GateSettings(min_r2=0.5, max_rmse=100.0, champion_tolerance=0.01)


def test_the_evaluate_card_compares_with_the_champion_and_embeds_the_plots(tracking_uri, small_schema):
    test = make_frame(rows=40, missing=False)
    signs = np.where(np.arange(len(test)) % 2 == 0, 1.0, -1.0)
    champion = evaluate.Champion(RegisteredModel("m", "3"), test["y"].to_numpy() + 2 * signs)
    with mlflow.start_run():
        out = evaluate.run(test, test["y"].to_numpy() + signs, small_schema, LENIENT, champion=champion)
    text, _ = check_card(evaluate.card(out, champion, len(test), "models:/m-9").render(), min_images=2)
    assert text.startswith("evaluate: passed")
    assert "metric candidate champion (version 3) RMSE 1 2" in text
    assert "check result detail min_r2 passed" in text


def test_the_evaluate_card_says_why_there_is_no_comparison(tracking_uri, small_schema):
    test = make_frame(rows=30, missing=False)
    with mlflow.start_run():
        out = evaluate.run(test, test["y"].to_numpy() + 80.0, small_schema, LENIENT)
    text, _ = check_card(evaluate.card(out, None, len(test), "models:/m-9").render(), min_images=2)
    assert text.startswith("evaluate: rejected") and evaluate.NO_CHAMPION in text and "failed" in text


def test_a_card_that_cannot_be_built_leaves_a_warning_not_a_failed_run(tracking_uri, caplog):
    def broken() -> Card:
        raise ValueError("Too many bins for data range")

    with mlflow.start_run() as run, caplog.at_level("WARNING"):
        cards.log_card(broken)
        cards.log_card(lambda: Card("fine"), "other.html")
    assert "no card.html for this run: ValueError: Too many bins for data range" in caplog.text
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)] == ["other.html"]
