"""The two tasks: which one a target means, which targets are refused, and the baseline's scores (no MLflow)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from steps import ingest
from steps.core import tasks
from steps.core.errors import ConfigError, DataError
from steps.core.schema import DataSchema, parse_schema
from steps.core.tasks import ACCURACY, CLASSIFICATION, F1, LOG_LOSS, MAE, R2, REGRESSION, RMSE, ROC_AUC
from tests.conftest import data_settings


def target_schema(dtype: str, **options: object) -> DataSchema:
    """A schema with one float feature ``x`` and a target ``y`` of ``dtype``."""
    return parse_schema({"target": "y", "columns": {"x": {}, "y": {"dtype": dtype, **options}}}, source="s.yaml")


def frame(target: list[object]) -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(len(target), dtype="float64"), "y": target})


# -- which task a target means -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "options", "task"),
    [
        ("string", {}, CLASSIFICATION),
        ("bool", {}, CLASSIFICATION),
        ("float", {"categorical": True}, CLASSIFICATION),
        ("int", {"categorical": True}, CLASSIFICATION),
        ("float", {}, REGRESSION),
        ("int", {}, REGRESSION),  # a quantity unless the data says otherwise (check_target)
    ],
)
def test_auto_reads_the_task_from_the_schemas_target(dtype, options, task):
    assert tasks.resolve_task("auto", target_schema(dtype, **options)) is task
    assert tasks.resolve_task(" Auto ", target_schema(dtype, **options)) is task


def test_an_explicit_task_is_taken_as_given_when_the_target_allows_it():
    assert tasks.resolve_task("classification", target_schema("float")) is CLASSIFICATION
    assert tasks.resolve_task("regression", target_schema("int")) is REGRESSION
    assert tasks.resolve_task("regression", target_schema("float", categorical=True)) is REGRESSION


@pytest.mark.parametrize("dtype", ["string", "bool"])
def test_regression_on_a_target_that_names_classes_is_refused_naming_model_task(dtype):
    message = rf"^model.task: regression needs a numeric target; column 'y' is {dtype} \(its values name classes\)$"
    with pytest.raises(ConfigError, match=message):
        tasks.resolve_task("regression", target_schema(dtype))


def test_an_unknown_task_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"^model.task: expected one of auto, regression, classification, got 'clasification' \(did you"):
        tasks.resolve_task("clasification", target_schema("float"))


def test_an_int_target_with_few_values_is_refused_under_auto_naming_model_task_and_categorical():
    schema = target_schema("int")
    with pytest.raises(DataError) as info:
        ingest.run(frame([0, 1, 2] * 10), schema, data_settings(), "auto", "f.csv")
    message = str(info.value)
    assert message.startswith("f.csv: column 'y' (int) has 3 distinct values (0, 1, 2): classes or a quantity?")
    assert "-P model.task=classification" in message and "-P model.task=regression" in message
    assert "`categorical: true`" in message and "\n" not in message
    # Saying which one it is settles it: either task, or the schema.
    assert ingest.run(frame([0, 1, 2] * 10), schema, data_settings(), "classification", "f.csv").task is CLASSIFICATION
    assert ingest.run(frame([0, 1, 2] * 10), schema, data_settings(), "regression", "f.csv").task is REGRESSION
    categorical = target_schema("int", categorical=True)
    assert ingest.run(frame([0, 1, 2] * 10), categorical, data_settings(), "auto", "f.csv").task is CLASSIFICATION


def test_the_ambiguity_limit_is_on_distinct_values_and_lists_at_most_five():
    many = list(range(tasks.AMBIGUOUS_MAX_VALUES + 1)) * 2
    assert ingest.run(frame(many), target_schema("int"), data_settings(), "auto", "f.csv").task is REGRESSION
    few = list(range(tasks.AMBIGUOUS_MAX_VALUES)) * 2
    with pytest.raises(DataError, match=rf"column 'y' \(int\) has {tasks.AMBIGUOUS_MAX_VALUES} distinct values \(0, 1, 2, 3, 4, \.\.\.\)"):
        ingest.run(frame(few), target_schema("int"), data_settings(), "auto", "f.csv")


def test_a_float_target_with_few_values_is_a_quantity_under_auto():
    assert ingest.run(frame([0.0, 1.0] * 10), target_schema("float"), data_settings(), "auto", "f.csv").task is REGRESSION


@pytest.mark.parametrize(
    ("dtype", "values", "shown"),
    [("float", [2.5] * 10, "2.5"), ("int", [3] * 10, "3.0"), ("string", ["a"] * 10, "'a'"), ("bool", ["yes"] * 10, "True")],
)
@pytest.mark.parametrize("setting", ["auto", "classification"])
def test_a_constant_target_is_refused_whatever_the_task(dtype, values, shown, setting):
    message = rf"^f.csv: column 'y': every row has the same target value \({shown}\); a model cannot learn from it$"
    with pytest.raises(DataError, match=message):
        ingest.run(frame(values), target_schema(dtype), data_settings(), setting, "f.csv")


# -- labels, classes and the train split's summary -----------------------------------------------


def test_labels_keep_the_targets_kind():
    assert tasks.labels(np.array([1.0, 0.0, 2.0])).dtype == np.int64  # an int column is read as floats
    assert tasks.labels(np.array([0.5, 1.0])).dtype == np.float64  # not whole numbers: as they are
    assert tasks.labels(np.array([True, False], dtype=object)).dtype == np.bool_
    assert tasks.labels(np.array(["b", "a"], dtype=object)).tolist() == ["b", "a"]


def test_classes_are_sorted_plain_python_values():
    for target, expected in [
        (np.array([3.0, 1.0, 3.0]), [1, 3]),
        (np.array(["b", "a", "b"], dtype=object), ["a", "b"]),
        (np.array([True, False, True], dtype=object), [False, True]),
    ]:
        found = tasks.classes(target)
        assert found == expected and [type(v) for v in found] == [type(v) for v in expected]


def test_the_summary_holds_the_mean_or_the_class_counts():
    assert tasks.summarize(REGRESSION, pd.Series([1.0, 2.0, 6.0])).mean == pytest.approx(3.0)
    summary = tasks.summarize(CLASSIFICATION, pd.Series(["b", "a", "b", "b"], dtype=object))
    assert (summary.classes, summary.counts) == (("a", "b"), (1, 3))
    np.testing.assert_allclose(summary.prior, [0.25, 0.75])
    ints = tasks.summarize(CLASSIFICATION, pd.Series([2.0, 1.0, 2.0]))
    assert ints.classes == (1, 2) and all(type(c) is int for c in ints.classes)


# -- the baseline --------------------------------------------------------------------------------


def test_the_regression_baseline_predicts_the_train_mean():
    summary = tasks.summarize(REGRESSION, [1.0, 2.0, 3.0, 6.0])  # mean 3
    test = np.array([1.0, 5.0, 6.0, 0.0])
    scores = tasks.baseline_metrics(REGRESSION, summary, test)
    assert set(scores) == {m.name for m in REGRESSION.metrics}
    assert scores[RMSE.name] == pytest.approx(math.sqrt((4 + 4 + 9 + 9) / 4))
    assert scores[MAE.name] == pytest.approx((2 + 2 + 3 + 3) / 4)
    # R² against the test split's own mean (3): the train mean is as good as it, so 0.
    assert scores[R2.name] == pytest.approx(0.0)
    shifted = tasks.baseline_metrics(REGRESSION, tasks.summarize(REGRESSION, [10.0]), test)
    assert shifted[R2.name] < 0  # a worse constant than the test mean


def test_the_regression_baselines_r2_is_nan_on_a_constant_test_split():
    scores = tasks.baseline_metrics(REGRESSION, tasks.summarize(REGRESSION, [1.0, 3.0]), [4.0, 4.0])
    assert scores[RMSE.name] == pytest.approx(2.0) and math.isnan(scores[R2.name])


def test_the_classification_baseline_predicts_the_class_prior():
    summary = tasks.summarize(CLASSIFICATION, np.array(["a", "b", "b", "b"], dtype=object))
    test = np.array(["a", "b", "b", "a"], dtype=object)
    scores = tasks.baseline_metrics(CLASSIFICATION, summary, test)
    assert set(scores) == {m.name for m in CLASSIFICATION.metrics}
    # The prior (0.25, 0.75) for every row: log loss of the prior's probability of each true class.
    assert scores[LOG_LOSS.name] == pytest.approx(-(2 * math.log(0.25) + 2 * math.log(0.75)) / 4)
    assert scores[ROC_AUC.name] == 0.5  # constant scores rank no row above another
    assert scores[ACCURACY.name] == pytest.approx(0.5)  # always "b", the most frequent class
    # Binary F1 of the positive class (the last sorted label, "b"): precision 2/4, recall 2/2.
    assert scores[F1.name] == pytest.approx(2 * 0.5 * 1.0 / 1.5)


def test_the_multiclass_baseline_scores_the_majority_class_and_the_prior():
    summary = tasks.summarize(CLASSIFICATION, np.array([1.0, 2.0, 2.0, 3.0, 3.0, 3.0]))
    test = np.array([1.0, 2.0, 3.0, 3.0])
    scores = tasks.baseline_metrics(CLASSIFICATION, summary, test)
    prior = {1: 1 / 6, 2: 2 / 6, 3: 3 / 6}
    assert scores[LOG_LOSS.name] == pytest.approx(-sum(math.log(prior[int(v)]) for v in test) / len(test))
    assert scores[ROC_AUC.name] == 0.5
    assert scores[ACCURACY.name] == pytest.approx(0.5)  # class 3 on every row
    # Weighted F1: only class 3 is ever predicted (F1 2/3, half of the rows).
    assert scores[F1.name] == pytest.approx(0.5 * (2 * 0.5 * 1.0 / 1.5))


def test_the_baseline_scores_bool_labels_and_a_class_seen_only_in_the_test_split():
    summary = tasks.summarize(CLASSIFICATION, np.array([True, False, True], dtype=object))
    scores = tasks.baseline_metrics(CLASSIFICATION, summary, np.array([True, False], dtype=object))
    assert scores[ACCURACY.name] == pytest.approx(0.5)
    assert scores[LOG_LOSS.name] == pytest.approx(-(math.log(2 / 3) + math.log(1 / 3)) / 2)
    unseen = tasks.baseline_metrics(CLASSIFICATION, tasks.summarize(CLASSIFICATION, np.array(["a", "a", "b"], dtype=object)), ["a", "c"])
    assert unseen[ACCURACY.name] == pytest.approx(0.5) and math.isfinite(unseen[LOG_LOSS.name])
    assert unseen[LOG_LOSS.name] > scores[LOG_LOSS.name]  # "c" had probability 0: a very large loss


# -- metrics by name -----------------------------------------------------------------------------


def test_each_task_names_its_metrics_and_refuses_the_others():
    assert [m.short for m in CLASSIFICATION.metrics] == ["log_loss", "roc_auc", "f1", "accuracy"]
    assert CLASSIFICATION.default_metric is LOG_LOSS and CLASSIFICATION.fallback_metric is ACCURACY
    assert REGRESSION.default_metric is REGRESSION.fallback_metric is RMSE
    assert CLASSIFICATION.metric("ROC_AUC") is ROC_AUC and CLASSIFICATION.metric("accuracy_score") is ACCURACY
    assert LOG_LOSS.needs_proba and ROC_AUC.needs_proba and not F1.needs_proba and not ACCURACY.needs_proba
    with pytest.raises(ConfigError, match=r"^evaluation.metric: 'rmse' is not a classification metric; choose one of log_loss, roc_auc"):
        CLASSIFICATION.metric("rmse")
    with pytest.raises(
        ConfigError, match=r"^s.yaml: thresholds.roc_aoc: 'roc_aoc' is not a classification metric \(did you mean 'roc_auc'\?\)"
    ):
        CLASSIFICATION.metric("roc_aoc", where="s.yaml: thresholds.roc_aoc")


def test_a_stratified_split_that_leaves_a_class_out_of_a_split_is_refused_by_name():
    import pandas as pd  # noqa: PLC0415

    from steps.core.data import split  # noqa: PLC0415
    from steps.core.errors import DataError  # noqa: PLC0415

    frame = pd.DataFrame({"y": ["a"] * 100 + ["b"] * 2 + ["c"] * 2, "x": range(104)})
    with pytest.raises(DataError, match=r"^f.csv: column 'y': class 'b' \(2 rows\) has no row in the test split \(test_size=0.03\)"):
        split(frame, 0.03, 0, "f.csv", stratify="y")
    train, test = split(frame, 0.5, 0, "f.csv", stratify="y")
    assert set(test["y"]) == set(train["y"]) == {"a", "b", "c"}
