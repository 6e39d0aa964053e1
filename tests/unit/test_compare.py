"""compare: the metric, ranking, the printed table, plots and card from small synthetic tables (with a store: tests/steps/)."""

from __future__ import annotations

import io
import math
import re

import pandas as pd
import pytest

from steps import compare
from steps.compare import Scope, choose_metric, resolve_metric
from steps.core import ranking
from steps.core.errors import InputError
from steps.core.tasks import ACCURACY, LOG_LOSS, MAE, R2, REGRESSION, RMSE
from steps.mlflow_io.cards import figure_png, run_url

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ELASTICNET = "sklearn.linear_model.ElasticNet"
SCOPE = Scope("Default", "0", "diabetes-elasticnet")


def runs_frame(*rows: dict) -> pd.DataFrame:
    """A table like collect's: one row per mapping, unspecified cells filled in."""
    full = []
    for i, row in enumerate(rows):
        defaults = {
            "run_id": f"{i:032x}",
            "run_name": f"run-{i}",
            "kind": "pipeline",
            "start_time": pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(minutes=i),
            "model_name": "diabetes-elasticnet",
            "task": "regression",
            "estimator": ELASTICNET,
            "primary_metric": "rmse",
            "alpha": 0.5,
            "l1_ratio": 0.5,
            RMSE.name: 50.0 + i,
            MAE.name: 40.0 + i,
            R2.name: 0.5 - i / 100,
            "evaluation": "passed",
            "model_version": str(i + 1),
            "evaluate_run_id": f"e{i:031x}",
        }
        full.append(defaults | row)
    return pd.DataFrame(full)


def run_ids(frame: pd.DataFrame) -> list[str]:
    return list(frame["run_id"])


def table(frame: pd.DataFrame, metric=RMSE, scope: Scope = SCOPE, **kwargs) -> list[str]:
    return compare.text_table(ranking.rank(frame, metric), metric, scope, **kwargs).splitlines()


# --- metric names ---


@pytest.mark.parametrize(
    ("text", "metric"),
    [("rmse", RMSE), ("RMSE", RMSE), (" mae ", MAE), ("r2", R2), (RMSE.name, RMSE), ("Mean_Absolute_Error", MAE), ("log_loss", LOG_LOSS)],
)
def test_metric_names_accept_the_short_aliases_and_mlflows_names_of_every_task(text, metric):
    assert resolve_metric(text) is metric


def test_an_unknown_metric_is_one_line_naming_the_parameter_and_each_tasks_choices():
    with pytest.raises(InputError) as caught:
        resolve_metric("precision")
    assert str(caught.value) == (
        "-P metric: unknown metric 'precision'; valid: rmse, mae, r2 (regression); log_loss, roc_auc, f1, accuracy (classification) "
        "(or MLflow's names, e.g. root_mean_squared_error)"
    )


def test_max_runs_must_be_at_least_one():
    assert compare.check_max_runs(1) == 1
    with pytest.raises(InputError, match=r"^-P max_runs: expected at least 1, got 0$"):
        compare.check_max_runs(0)


def test_the_parser_takes_the_experiment_metric_max_runs_and_model_name():
    args = compare.build_parser().parse_args(["--experiment=", "--metric=r2", "--max_runs=5", "--model_name=m"])
    assert (args.experiment, args.metric, args.max_runs, args.model_name) == ("", "r2", 5, "m")
    with pytest.raises(InputError, match=r"argument --max_runs: invalid int value: 'many'"):
        compare.build_parser().parse_args(["--max_runs=many"])


# --- which metric ranks the runs ---


def test_by_default_the_runs_are_ranked_by_the_metric_their_gate_used():
    assert choose_metric(runs_frame({}, {}), None, "m") is RMSE
    assert choose_metric(runs_frame({"primary_metric": "r2"}), None, "m") is R2
    assert choose_metric(runs_frame({"primary_metric": "r2"}, {"primary_metric": "mae"}), MAE, "m") is MAE
    classifier = {"task": "classification", "primary_metric": "accuracy"}
    assert choose_metric(runs_frame(classifier, classifier), None, "m") is ACCURACY


def test_runs_of_different_tasks_are_refused_naming_them():
    frame = runs_frame({}, {"task": "classification", "primary_metric": "log_loss"}, {"task": "classification"})
    with pytest.raises(InputError) as caught:
        choose_metric(frame, RMSE, "m")
    assert str(caught.value) == (
        "the runs of model 'm' mix tasks: classification (2 runs), regression (1 run); their metrics cannot be compared"
    )


def test_runs_judged_by_different_metrics_need_one_given():
    frame = runs_frame({}, {"primary_metric": "mae"}, {})
    with pytest.raises(InputError) as caught:
        choose_metric(frame, None, "m")
    assert str(caught.value) == (
        "the runs of model 'm' were judged by different metrics: rmse (2 runs), mae (1 run); "
        "rank them by one with -P metric (rmse, mae, r2)"
    )
    assert choose_metric(frame, R2, "m") is R2


def test_a_metric_of_another_task_is_refused_naming_the_runs_task():
    with pytest.raises(InputError, match=r"^-P metric: accuracy is a classification metric; the runs of model 'm' are regression: "):
        choose_metric(runs_frame({}), ACCURACY, "m")


# --- ranking and the printed table ---


def test_runs_are_ranked_best_first_lower_or_higher_is_better_by_metric():
    frame = runs_frame({RMSE.name: 60.0, R2.name: 0.2}, {RMSE.name: 40.0, R2.name: 0.7}, {RMSE.name: 50.0, R2.name: 0.9})
    ids = run_ids(frame)
    assert run_ids(ranking.rank(frame, RMSE)) == [ids[1], ids[2], ids[0]]
    assert run_ids(ranking.rank(frame, R2)) == [ids[2], ids[1], ids[0]]
    assert run_ids(ranking.rank(frame, MAE)) == ids  # 40, 41, 42


def test_runs_without_the_metric_come_last_and_ties_put_the_newest_first():
    frame = runs_frame({RMSE.name: math.nan}, {RMSE.name: 50.0}, {RMSE.name: 50.0}, {RMSE.name: None})
    ids = run_ids(frame)
    ranked = ranking.rank(frame, RMSE)
    assert run_ids(ranked) == [ids[2], ids[1], ids[3], ids[0]]
    assert ranking.best_run(ranked, RMSE)["run_id"] == ids[2]


def test_a_table_has_its_tasks_metric_columns_only():
    frame = runs_frame({}).assign(**{LOG_LOSS.name: 0.3})
    assert list(ranking.rank(frame, RMSE).columns) == [
        *ranking.RUN_COLUMNS,
        "alpha",
        "l1_ratio",
        RMSE.name,
        MAE.name,
        R2.name,
        *ranking.RESULT_COLUMNS,
    ]
    classified = ranking.rank(frame.assign(task="classification"), LOG_LOSS)
    assert [c for c in classified.columns if c in ranking.ALL_METRICS] == ["log_loss", "roc_auc", "f1_score", "accuracy_score"]


def test_missing_columns_and_unparsable_metrics_become_empty_cells():
    frame = runs_frame({"alpha": "abc", MAE.name: "n/a"}).drop(columns=["l1_ratio", R2.name, "model_version", "estimator"])
    ranked = ranking.rank(frame, RMSE)
    assert list(ranked.columns) == ranking.columns(frame, RMSE)
    assert math.isnan(ranked.loc[0, MAE.name]) and math.isnan(ranked.loc[0, R2.name]) and pd.isna(ranked.loc[0, "estimator"])
    assert ranked.loc[0, "alpha"] == "abc"  # a parameter that is not a number is text
    row = table(frame)[2].split()
    assert row[:5] == ["1", ranked.loc[0, "run_id"], "run-0", "pipeline", "-"]  # no estimator
    assert row[5:8] == ["50", "-", "-"]  # RMSE 50; MAE, R² unknown


def test_the_table_is_fixed_width_best_first_with_the_varying_parameters_and_names_the_best_run():
    frame = runs_frame(
        {
            RMSE.name: 53.85,
            "alpha": 1.0,
            "evaluation": "rejected",
            "model_version": None,
            "run_name": "a-very-long-run-name-that-goes-on-and-on",
        },
        {RMSE.name: 53.41, "alpha": 0.1, "max_iter": 100},
    )
    lines = table(frame)
    assert lines[0] == (
        "2 pipeline runs of model 'diabetes-elasticnet' (regression) in experiment Default (id 0), best first by RMSE (lower is better)"
    )
    header = lines[1]
    # l1_ratio is the same in both runs: not a column (it is in the CSV).
    assert re.match(
        r"#\s+run id\s+run name\s+kind\s+estimator\s+alpha\s+max_iter\s+RMSE\s+MAE\s+R²\s+evaluation\s+version\s+started \(UTC\)$", header
    )
    first, second = lines[2], lines[3]
    assert first.split()[1] == frame.loc[1, "run_id"] and second.split()[1] == frame.loc[0, "run_id"]
    assert first.split()[4] == "ElasticNet"
    # Columns line up: each number ends where its header ends.
    rmse_end = header.index("RMSE") + len("RMSE")
    assert first[rmse_end - len("53.41") : rmse_end] == "53.41" and second[rmse_end - len("53.85") : rmse_end] == "53.85"
    long_name = "a-very-long-run-name-that-goes-on-and-on"
    assert f" {long_name[: ranking.NAME_WIDTH]} " in second and long_name not in second
    assert " rejected " in second and " - " in second  # no version, no max_iter
    assert (
        lines[-1]
        == f"Best by RMSE: run {frame.loc[1, 'run_id']} (run-1), RMSE 53.41: ElasticNet with alpha=0.1, l1_ratio=0.5, max_iter=100"
    )


def test_a_long_table_prints_the_best_rows_and_says_how_many_more_are_in_the_csv():
    frame = runs_frame(*({RMSE.name: 100.0 - i} for i in range(35)))
    lines = table(frame, max_rows=30)
    assert len(lines) == 2 + 30 + 2
    assert lines[2].split()[1] == frame.loc[34, "run_id"]
    assert lines[-2] == "... 5 more runs not shown (all 35 are in compare/runs.csv)"


def test_the_runs_of_other_models_left_out_are_counted_by_name():
    scope = Scope("Default", "0", "diabetes-elasticnet", {"diabetes-tree": 1, "no model name": 3, "a": 1})
    assert scope.left_out_runs == 5
    lines = table(runs_frame({}), scope=scope)
    assert lines[-2] == (
        "Left out: 5 runs of other models: no model name (3 runs), a (1 run), diabetes-tree (1 run); compare them with -P model_name=<name>"
    )
    assert SCOPE.left_out_text() is None


def test_one_run_only_and_no_run_with_the_metric():
    assert table(runs_frame({}), R2)[0].startswith("1 pipeline run of model 'diabetes-elasticnet' (regression) in experiment")
    none = ranking.rank(runs_frame({R2.name: None}, {R2.name: math.nan}), R2)
    assert ranking.best_run(none, R2) is None
    assert compare.text_table(none, R2, SCOPE).splitlines()[-1] == "No run has R² (r2_score): no best run."


def test_the_csv_keeps_every_column_and_iso_start_times():
    ranked = ranking.rank(runs_frame({"model_version": None}, {"l1_ratio": 0.2}), RMSE)
    text = compare.to_csv(ranked)
    assert text.splitlines()[0] == ",".join(ranking.columns(ranked, RMSE))
    back = pd.read_csv(io.StringIO(text), dtype=str)
    assert list(back["run_id"]) == list(ranked["run_id"])
    assert back.loc[0, "start_time"] == "2025-01-01T00:00:00+00:00"
    assert list(back["alpha"]) == ["0.5", "0.5"]  # every parameter, also one that does not vary


def test_a_frame_with_only_some_columns_ranks_prints_and_plots():
    # As the sweep driver builds for its card: no start time, kind, verdict or version; a run without a name.
    frame = pd.DataFrame({"run_id": ["a" * 32, "b" * 32], "run_name": ["first", None], "alpha": [0.1, 1.0], RMSE.name: [55.0, 52.0]})
    ranked = ranking.rank(frame, RMSE)
    assert run_ids(ranked) == ["b" * 32, "a" * 32]
    assert compare.describe_best(ranked, RMSE) == f"Best by RMSE: run {'b' * 32} (bbbbbbbb), RMSE 52: alpha=1"
    figures = ranking.plots(ranked, RMSE)
    assert list(figures) == ["plots/rmse_vs_alpha.png"]
    assert legend_labels(figures["plots/rmse_vs_alpha.png"]) == ["runs", "best: bbbbbbbb"]


# --- plots ---


def legend_labels(fig) -> list[str]:
    return [text.get_text() for text in fig.axes[0].get_legend().get_texts()]


def test_plots_are_named_by_metric_with_the_metric_against_each_varying_parameter():
    frame = runs_frame({"alpha": 0.1, "l1_ratio": 0.2}, {"alpha": 1.0, "l1_ratio": 0.8})
    for metric, short in ((RMSE, "rmse"), (R2, "r2")):
        figures = ranking.plots(ranking.rank(frame, metric), metric)
        assert list(figures) == [f"plots/{short}_vs_alpha.png", f"plots/{short}_vs_l1_ratio.png"]
        alpha_ax, l1_ax = (fig.axes[0] for fig in figures.values())
        assert alpha_ax.get_xlabel() == "alpha" and l1_ax.get_xlabel() == "l1_ratio"
        assert alpha_ax.get_ylabel() == f"{metric.label} ({metric.direction})"
        for fig in figures.values():
            assert figure_png(fig).startswith(PNG_MAGIC)
    # A parameter every run has the same value of is not plotted.
    assert list(ranking.plots(ranking.rank(runs_frame({"alpha": 0.1}, {"alpha": 1.0}), RMSE), RMSE)) == ["plots/rmse_vs_alpha.png"]


def test_one_series_per_value_of_the_other_parameter_and_the_best_run_starred():
    frame = runs_frame(
        {"alpha": 0.1, "l1_ratio": 0.2, RMSE.name: 55.0},
        {"alpha": 1.0, "l1_ratio": 0.2, RMSE.name: 54.0},
        {"alpha": 0.1, "l1_ratio": 0.8, RMSE.name: 53.0, "run_name": "winner"},
        {"alpha": 1.0, "l1_ratio": math.nan, RMSE.name: 56.0},
    )
    fig = ranking.metric_plot(ranking.rank(frame, RMSE), RMSE, "alpha", "l1_ratio")
    assert legend_labels(fig) == ["l1_ratio = 0.2", "l1_ratio = 0.8", "l1_ratio unknown", "best: winner"]
    best = fig.axes[0].collections[-1].get_offsets()
    assert best.tolist() == [[0.1, 53.0]]


def test_a_parameter_is_on_a_log_scale_only_when_it_spans_more_than_a_factor_of_ten_above_zero():
    def scale(values, x="alpha"):
        frame = runs_frame(*({"alpha": v, "l1_ratio": 0.5, "max_iter": v} for v in values))
        return ranking.metric_plot(ranking.rank(frame, RMSE), RMSE, x, "l1_ratio").axes[0].get_xscale()

    assert scale([0.01, 0.1, 1.0]) == "log"
    assert scale([0.1, 1.0]) == "linear"  # a factor of 10 exactly
    assert scale([0.0, 0.1, 10.0]) == "linear"  # 0 has no logarithm
    assert scale([100, 1000, 10000], x="max_iter") == "log"  # any parameter, not only alpha
    assert scale([100, 500, 1000], x="max_iter") == "linear"


def test_runs_missing_the_metric_or_parameter_are_left_out_of_the_plot():
    frame = runs_frame({RMSE.name: math.nan}, {"alpha": math.nan, RMSE.name: 51.0}, {RMSE.name: 52.0, "alpha": 0.3})
    fig = ranking.metric_plot(ranking.rank(frame, RMSE), RMSE, "alpha", "l1_ratio")
    points = [p for c in fig.axes[0].collections for p in c.get_offsets().tolist()]
    assert points == [[0.3, 52.0]]
    assert legend_labels(fig) == ["l1_ratio = 0.5"]  # the best run has no alpha: no star

    empty = ranking.metric_plot(ranking.rank(runs_frame({RMSE.name: math.nan}), RMSE), RMSE, "alpha", "l1_ratio")
    assert [t.get_text() for t in empty.axes[0].texts] == ["no run has both alpha and RMSE"]
    assert figure_png(empty).startswith(PNG_MAGIC)


def test_many_series_get_distinct_colors_and_the_legend_beside_the_plot():
    frame = runs_frame(*({"alpha": 0.1 * (i % 3 + 1), "l1_ratio": i / 20} for i in range(12)))
    fig = ranking.metric_plot(ranking.rank(frame, RMSE), RMSE, "alpha", "l1_ratio")
    series = [c for c in fig.axes[0].collections if c.get_label().startswith("l1_ratio")]
    assert len(series) == 12
    assert len({tuple(c.get_facecolor()[0]) for c in series}) == 12
    assert figure_png(fig).startswith(PNG_MAGIC)


def test_other_parameters_are_columns_and_each_varying_number_one_gets_a_plot():
    frame = runs_frame(
        {"alpha": 0.1, "max_iter": 100, "selection": "cyclic", "tol": 1e-4},
        {"alpha": 0.1, "max_iter": 1000, "selection": "random", "tol": 1e-4},
        {"alpha": 1.0, "max_iter": 1000, "selection": "random", "tol": 1e-4, RMSE.name: 10.0},
    )
    ranked = ranking.rank(frame, RMSE)
    assert ranking.parameters(ranked) == ["alpha", "l1_ratio", "max_iter", "selection", "tol"]
    assert ranking.varying(ranked) == ["alpha", "max_iter", "selection"]
    assert ranked["max_iter"].dtype == "float64" and ranked["selection"].tolist() == ["random", "cyclic", "random"]
    # Series: the first other parameter that varies. compare plots the number ones; text ones are categories.
    assert ranking.plot_axes(ranked, numbers_only=True) == [("alpha", "max_iter"), ("max_iter", "alpha")]
    assert ranking.plot_axes(ranked) == [("alpha", "max_iter"), ("max_iter", "alpha"), ("selection", "alpha")]
    figures = ranking.plots(ranked, RMSE)
    text_ax = figures["plots/rmse_vs_selection.png"].axes[0]
    assert [t.get_text() for t in text_ax.get_xticklabels()] == ["cyclic", "random"]  # text values as categories
    assert text_ax.get_xscale() == "linear"
    lines = table(frame)
    assert lines[1].split()[7:10] == ["alpha", "max_iter", "selection"]
    best = f"Best by RMSE: run {frame.loc[2, 'run_id']} (run-2), RMSE 10: ElasticNet"
    assert lines[-1] == f"{best} with alpha=1, l1_ratio=0.5, max_iter=1000, selection=random, tol=0.0001"


def test_a_parameter_that_is_not_always_a_number_stays_text():
    ranked = ranking.rank(runs_frame({"max_depth": "None"}, {"max_depth": "3"}, {"max_depth": True}, {}), RMSE)
    assert ranked["max_depth"].tolist()[:3] == ["None", "3", "True"] and pd.isna(ranked["max_depth"].iloc[3])


def test_the_caller_says_which_parameters_are_always_plotted():
    # As a sweep over one parameter: its plot even when the grid has one value.
    frame = pd.DataFrame({"run_id": ["a" * 32], "run_name": ["trial 1"], "max_iter": [100.0], RMSE.name: [50.0]})
    ranked = ranking.rank(frame, RMSE)
    assert list(ranking.plots(ranked, RMSE)) == []
    assert list(ranking.plots(ranked, RMSE, always=["max_iter"])) == ["plots/rmse_vs_max_iter.png"]


def test_plot_files_are_safe_names():
    assert ranking.plot_file(RMSE, "alpha") == "plots/rmse_vs_alpha.png"
    assert ranking.plot_file(R2, "a b/c") == "plots/r2_vs_a_b_c.png"


def test_each_metric_knows_its_task():
    assert ranking.task_of(RMSE) is REGRESSION and ranking.task_of(ACCURACY).name == "classification"


# --- the table from MLflow's tables ---


def mlflow_table(*rows: dict) -> pd.DataFrame:
    """A table like mlflow.search_runs returns: run_id, start_time, metrics.*, params.*, tags.*."""
    return pd.DataFrame([{"start_time": pd.Timestamp(1000 * i, unit="ms", tz="UTC")} | row for i, row in enumerate(rows)])


def test_the_table_takes_the_model_its_params_metrics_verdicts_and_versions_from_mlflows_tables():
    evaluate, register = "tags.pipeline.evaluate.run_id", "tags.pipeline.register.run_id"
    runs = mlflow_table(
        {
            "run_id": "r1",
            "tags.mlflow.runName": "own metrics",
            evaluate: "e1",
            register: "g1",
            f"metrics.{RMSE.name}": 45.0,
            "params.registry.model_name": "m",
            "params.model.task": "regression",
            "params.model.estimator": ELASTICNET,
            "params.evaluation.metric": "mae",
            "params.model.params.alpha": "0.1",
            "params.model.params.max_iter": "5000",
            "params.alpha": "99",
            "params.trial": "1",
            "tags.pipeline.kind": "trial",
        },
        {"run_id": "r2", evaluate: "e2", "params.model.params.alpha": "1.0", "tags.pipeline.evaluation.passed": "false"},
        {"run_id": "r3", evaluate: "gone", "params.model.params.estimator": "x"},
    )
    linked = mlflow_table(
        {"run_id": "e1", f"metrics.{RMSE.name}": 50.0, f"metrics.{MAE.name}": 40.0, "tags.pipeline.evaluation.passed": "true"},
        {"run_id": "e2", f"metrics.{RMSE.name}": 60.0},
        {"run_id": "g1", "tags.pipeline.output.model_version": "3"},
    ).set_index("run_id")
    frame = ranking.rank(compare.build_frame(runs, linked), RMSE)
    assert list(frame.columns) == [*ranking.RUN_COLUMNS, "alpha", "max_iter", RMSE.name, MAE.name, R2.name, *ranking.RESULT_COLUMNS]
    r1, r2, r3 = (row for _, row in frame.iterrows())
    assert (r1["run_name"], r1["kind"], r1["alpha"], r1["max_iter"], r1[RMSE.name], r1[MAE.name]) == (
        "own metrics",
        "trial",
        0.1,
        5000.0,
        45.0,
        40.0,
    )
    assert (r1["model_name"], r1["task"], r1["estimator"], r1["primary_metric"]) == ("m", "regression", ELASTICNET, "mae")
    assert (r1["evaluation"], r1["model_version"], r1["evaluate_run_id"]) == ("passed", "3", "e1")
    # No verdict on the evaluate run: the run's own. No task: from before tasks, a regressor judged by RMSE.
    assert (r2["kind"], r2["alpha"], r2[RMSE.name], r2["evaluation"], r2["task"], r2["primary_metric"]) == (
        "pipeline", 1.0, 60.0, "rejected", "regression", "rmse",
    )  # fmt: skip
    assert pd.isna(r2["model_version"]) and math.isnan(r2["max_iter"]) and pd.isna(r2["model_name"])
    assert math.isnan(r3[RMSE.name]) and pd.isna(r3["evaluation"]) and pd.isna(r3["run_name"])


def test_no_runs_make_an_empty_table_with_every_column():
    frame = compare.build_frame(pd.DataFrame(columns=["run_id"]), pd.DataFrame(columns=["run_id"]).set_index("run_id"))
    assert frame.empty and list(ranking.rank(frame, RMSE).columns) == ranking.columns(frame, RMSE)


# --- the card ---


def test_the_card_shows_the_model_the_best_run_the_plots_and_links_every_run_without_credentials():
    frame = runs_frame({"alpha": 0.1, RMSE.name: 53.0, "run_name": "<b>bold</b>"}, {"alpha": 1.0, RMSE.name: 60.0, "evaluation": None})
    uri = "https://alice:secret@mlflow.example.com/base"
    scope = Scope("Default", "7", "diabetes-elasticnet", {"diabetes-tree": 2})
    out = compare.run(frame, RMSE, scope, tracking_uri=uri)
    html = out.card.render()
    assert "secret" not in html
    assert html.count('<img src="data:image/png;base64,') == 1  # alpha varies, l1_ratio does not
    for run_id in frame["run_id"]:
        assert f'<a href="{run_url(uri, "7", run_id)}">' in html
    assert run_url(uri, "7", frame.loc[0, "run_id"]).startswith("https://mlflow.example.com/base/#/experiments/7/runs/")
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold" not in html
    assert "Compare: diabetes-elasticnet" in html and "best first by RMSE (lower is better)" in html
    for fact in ("registered model", "task", "regression", ELASTICNET, "runs of other models left out", "diabetes-tree (2 runs)"):
        assert f">{fact}<" in html, fact
    assert '<td class="good">passed</td>' in html
    assert "NaN" not in html  # missing values are empty cells
    assert out.best["run_id"] == frame.loc[0, "run_id"]
    assert out.table.splitlines()[-1].startswith(f"Best by RMSE: run {frame.loc[0, 'run_id']}")


def test_the_card_counts_the_runs_of_each_estimator_and_says_when_nothing_varies():
    frame = runs_frame({}, {"estimator": "sklearn.tree.DecisionTreeRegressor", "alpha": None, "l1_ratio": None, "max_depth": 3}, {})
    html = compare.run(frame, RMSE, SCOPE, tracking_uri="sqlite:///x").card.render()
    assert f">{ELASTICNET} (2 runs), sklearn.tree.DecisionTreeRegressor (1 run)<" in html
    same = compare.run(runs_frame({}, {}), RMSE, SCOPE, tracking_uri="sqlite:///x")
    assert same.images == {} and "No number parameter varies across these runs: nothing to plot." in same.card.render()


def test_a_card_of_many_runs_shows_the_first_and_points_to_the_csv():
    frame = runs_frame(*({} for _ in range(5)))
    card = compare.build_card(ranking.rank(frame, RMSE), RMSE, {}, SCOPE, tracking_uri="sqlite:///x", max_rows=3)
    html = card.render()
    assert html.count("/#/experiments/0/runs/") == 3 + 1  # three rows and the best run
    assert "The first 3 of 5 runs; all are in compare/runs.csv." in html


def test_nothing_to_compare_says_which_models_the_experiment_has():
    assert (
        str(compare.no_runs(SCOPE))
        == "no finished pipeline runs with an evaluation in experiment 'Default' (id 0) (run `mlflow run .` first)"
    )
    other = Scope("Default", "0", "nope", {"diabetes-elasticnet": 4})
    assert str(compare.no_runs(other)) == (
        "no finished pipeline runs of model 'nope' with an evaluation in experiment 'Default' (id 0); "
        "it has runs of diabetes-elasticnet (4 runs): choose one with -P model_name=<name>"
    )
