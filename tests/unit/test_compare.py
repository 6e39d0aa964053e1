"""compare: ranking, the printed table, plots and card from small synthetic tables (with a store: tests/steps/)."""

from __future__ import annotations

import io
import math
import re

import pandas as pd
import pytest

from steps import compare
from steps.compare import resolve_metric
from steps.core import model, ranking
from steps.core.errors import InputError
from steps.core.ranking import COLUMNS
from steps.mlflow_io.cards import figure_png, run_url

RMSE, MAE, R2 = (m.name for m in model.METRICS)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RMSE_METRIC, R2_METRIC = resolve_metric("rmse"), resolve_metric("r2")


def runs_frame(*rows: dict) -> pd.DataFrame:
    """A table like collect's: one row per mapping, unspecified cells filled in."""
    full = []
    for i, row in enumerate(rows):
        defaults = {
            "run_id": f"{i:032x}",
            "run_name": f"run-{i}",
            "kind": "pipeline",
            "start_time": pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(minutes=i),
            "alpha": 0.5,
            "l1_ratio": 0.5,
            RMSE: 50.0 + i,
            MAE: 40.0 + i,
            R2: 0.5 - i / 100,
            "evaluation": "passed",
            "model_version": str(i + 1),
            "evaluate_run_id": f"e{i:031x}",
        }
        full.append(defaults | row)
    return pd.DataFrame(full)


def run_ids(frame: pd.DataFrame) -> list[str]:
    return list(frame["run_id"])


# --- metric names, parameters ---


@pytest.mark.parametrize(
    ("text", "name"),
    [("rmse", RMSE), ("RMSE", RMSE), (" mae ", MAE), ("r2", R2), (RMSE, RMSE), ("Mean_Absolute_Error", MAE), (R2, R2)],
)
def test_metric_names_accept_the_short_aliases_and_mlflows_names(text, name):
    assert resolve_metric(text).name == name


def test_an_unknown_metric_is_one_line_naming_the_parameter_and_the_choices():
    with pytest.raises(InputError, match=r"^-P metric: unknown metric 'accuracy'; valid: rmse, mae, r2 \(or MLflow's names .*r2_score\)$"):
        resolve_metric("accuracy")


def test_max_runs_must_be_at_least_one():
    assert compare.check_max_runs(1) == 1
    with pytest.raises(InputError, match=r"^-P max_runs: expected at least 1, got 0$"):
        compare.check_max_runs(0)


def test_the_parser_types_match_the_mlproject_parameters():
    args = compare.build_parser().parse_args(["--experiment=", "--metric=r2", "--max_runs=5"])
    assert (args.experiment, args.metric, args.max_runs) == ("", "r2", 5)
    with pytest.raises(InputError, match=r"argument --max_runs: invalid int value: 'many'"):
        compare.build_parser().parse_args(["--max_runs=many"])


# --- ranking and the printed table ---


def test_runs_are_ranked_best_first_lower_or_higher_is_better_by_metric():
    frame = runs_frame({RMSE: 60.0, R2: 0.2}, {RMSE: 40.0, R2: 0.7}, {RMSE: 50.0, R2: 0.9})
    ids = run_ids(frame)
    assert run_ids(ranking.rank(frame, RMSE_METRIC)) == [ids[1], ids[2], ids[0]]
    assert run_ids(ranking.rank(frame, R2_METRIC)) == [ids[2], ids[1], ids[0]]
    assert run_ids(ranking.rank(frame, resolve_metric("mae"))) == ids  # 40, 41, 42


def test_runs_without_the_metric_come_last_and_ties_put_the_newest_first():
    frame = runs_frame({RMSE: math.nan}, {RMSE: 50.0}, {RMSE: 50.0}, {RMSE: None})
    ids = run_ids(frame)
    ranked = ranking.rank(frame, RMSE_METRIC)
    assert run_ids(ranked) == [ids[2], ids[1], ids[3], ids[0]]
    assert ranking.best_run(ranked, RMSE_METRIC)["run_id"] == ids[2]


def test_missing_columns_and_unparsable_values_become_empty_cells():
    frame = runs_frame({"alpha": "abc"}).drop(columns=["l1_ratio", MAE, "model_version"])
    ranked = ranking.rank(frame, RMSE_METRIC)
    assert list(ranked.columns) == list(COLUMNS)
    assert math.isnan(ranked.loc[0, "alpha"]) and math.isnan(ranked.loc[0, "l1_ratio"]) and math.isnan(ranked.loc[0, MAE])
    table = compare.text_table(ranked, RMSE_METRIC, "Default (id 0)")
    row = table.splitlines()[2].split()
    assert row[:4] == ["1", ranked.loc[0, "run_id"], "run-0", "pipeline"]
    assert row[4:7] == ["-", "-", "50"]  # alpha, l1_ratio unknown; RMSE 50


def test_the_table_is_fixed_width_best_first_and_names_the_best_run():
    frame = runs_frame(
        {
            RMSE: 53.85,
            "alpha": 1.0,
            "evaluation": "rejected",
            "model_version": None,
            "run_name": "a-very-long-run-name-that-goes-on-and-on",
        },
        {RMSE: 53.41, "alpha": 0.1, "l1_ratio": 0.9},
    )
    ranked = ranking.rank(frame, RMSE_METRIC)
    lines = compare.text_table(ranked, RMSE_METRIC, "Default (id 0)").splitlines()
    assert lines[0] == "2 pipeline runs of experiment Default (id 0), best first by RMSE (lower is better)"
    header = lines[1]
    assert re.match(r"#\s+run id\s+run name\s+kind\s+alpha\s+l1_ratio\s+RMSE\s+MAE\s+R²\s+evaluation\s+version\s+started \(UTC\)$", header)
    first, second = lines[2], lines[3]
    assert first.split()[1] == frame.loc[1, "run_id"] and second.split()[1] == frame.loc[0, "run_id"]
    # Columns line up: each value ends (numbers) where its header ends.
    rmse_end = header.index("RMSE") + len("RMSE")
    assert first[rmse_end - len("53.41") : rmse_end] == "53.41" and second[rmse_end - len("53.85") : rmse_end] == "53.85"
    long_name = "a-very-long-run-name-that-goes-on-and-on"
    assert f" {long_name[: ranking.NAME_WIDTH]} " in second and long_name not in second
    assert " rejected " in second and " - " in second  # no version
    assert lines[-1] == f"Best by RMSE: run {frame.loc[1, 'run_id']} (run-1), RMSE 53.41 at alpha=0.1, l1_ratio=0.9"


def test_a_long_table_prints_the_best_rows_and_says_how_many_more_are_in_the_csv():
    frame = runs_frame(*({RMSE: 100.0 - i} for i in range(35)))
    lines = compare.text_table(ranking.rank(frame, RMSE_METRIC), RMSE_METRIC, "e", max_rows=30).splitlines()
    assert len(lines) == 2 + 30 + 2
    assert lines[2].split()[1] == frame.loc[34, "run_id"]
    assert lines[-2] == "... 5 more runs not shown (all 35 are in compare/runs.csv)"


def test_one_run_only_and_no_run_with_the_metric():
    one = ranking.rank(runs_frame({}), R2_METRIC)
    assert (
        compare.text_table(one, R2_METRIC, "x")
        .splitlines()[0]
        .startswith("1 pipeline run of experiment x, best first by R² (higher is better)")
    )
    none = ranking.rank(runs_frame({R2: None}, {R2: math.nan}), R2_METRIC)
    assert ranking.best_run(none, R2_METRIC) is None
    assert compare.text_table(none, R2_METRIC, "x").splitlines()[-1] == "No run has R² (r2_score): no best run."


def test_the_csv_keeps_every_column_and_iso_start_times():
    ranked = ranking.rank(runs_frame({"model_version": None}, {}), RMSE_METRIC)
    text = compare.to_csv(ranked)
    assert text.splitlines()[0] == ",".join(COLUMNS)
    back = pd.read_csv(io.StringIO(text), dtype=str)
    assert list(back["run_id"]) == list(ranked["run_id"])
    assert back.loc[0, "start_time"] == "2025-01-01T00:00:00+00:00"


def test_a_frame_with_only_some_columns_ranks_prints_and_plots():
    # As the sweep driver builds for its card: no start time, kind, verdict or version; a run without a name.
    frame = pd.DataFrame({"run_id": ["a" * 32, "b" * 32], "run_name": ["first", None], "alpha": [0.1, 1.0], RMSE: [55.0, 52.0]})
    ranked = ranking.rank(frame, RMSE_METRIC)
    assert run_ids(ranked) == ["b" * 32, "a" * 32]
    assert compare.describe_best(ranked, RMSE_METRIC) == f"Best by RMSE: run {'b' * 32} (bbbbbbbb), RMSE 52 at alpha=1, l1_ratio=-"
    # No run has l1_ratio: no plot of it, and nothing to split alpha's plot by.
    figures = ranking.plots(ranked, RMSE_METRIC)
    assert list(figures) == ["plots/rmse_vs_alpha.png"]
    assert legend_labels(figures["plots/rmse_vs_alpha.png"]) == ["runs", "best: bbbbbbbb"]


# --- plots ---


def legend_labels(fig) -> list[str]:
    return [text.get_text() for text in fig.axes[0].get_legend().get_texts()]


def test_plots_are_named_by_metric_with_the_metric_against_each_parameter():
    frame = runs_frame({"alpha": 0.1}, {"alpha": 1.0})
    for metric, short in ((RMSE_METRIC, "rmse"), (R2_METRIC, "r2")):
        figures = ranking.plots(ranking.rank(frame, metric), metric)
        assert list(figures) == [f"plots/{short}_vs_alpha.png", f"plots/{short}_vs_l1_ratio.png"]
        alpha_ax, l1_ax = (fig.axes[0] for fig in figures.values())
        assert alpha_ax.get_xlabel() == "alpha" and l1_ax.get_xlabel() == "l1_ratio"
        assert alpha_ax.get_ylabel() == f"{metric.label} ({metric.direction})"
        for fig in figures.values():
            assert figure_png(fig).startswith(PNG_MAGIC)


def test_one_series_per_value_of_the_other_parameter_and_the_best_run_starred():
    frame = runs_frame(
        {"alpha": 0.1, "l1_ratio": 0.2, RMSE: 55.0},
        {"alpha": 1.0, "l1_ratio": 0.2, RMSE: 54.0},
        {"alpha": 0.1, "l1_ratio": 0.8, RMSE: 53.0, "run_name": "winner"},
        {"alpha": 1.0, "l1_ratio": math.nan, RMSE: 56.0},
    )
    fig = ranking.metric_plot(ranking.rank(frame, RMSE_METRIC), RMSE_METRIC, "alpha", "l1_ratio")
    assert legend_labels(fig) == ["l1_ratio = 0.2", "l1_ratio = 0.8", "l1_ratio unknown", "best: winner"]
    best = fig.axes[0].collections[-1].get_offsets()
    assert best.tolist() == [[0.1, 53.0]]


def test_a_parameter_is_on_a_log_scale_only_when_it_spans_more_than_a_factor_of_ten_above_zero():
    def scale(values, x="alpha"):
        frame = runs_frame(*({"alpha": v, "l1_ratio": 0.5, "max_iter": v} for v in values))
        return ranking.metric_plot(ranking.rank(frame, RMSE_METRIC), RMSE_METRIC, x, "l1_ratio").axes[0].get_xscale()

    assert scale([0.01, 0.1, 1.0]) == "log"
    assert scale([0.1, 1.0]) == "linear"  # a factor of 10 exactly
    assert scale([0.0, 0.1, 10.0]) == "linear"  # 0 has no logarithm
    assert scale([100, 1000, 10000], x="max_iter") == "log"  # any parameter, not only alpha
    assert scale([100, 500, 1000], x="max_iter") == "linear"


def test_runs_missing_the_metric_or_parameter_are_left_out_of_the_plot():
    frame = runs_frame({RMSE: math.nan}, {"alpha": math.nan, RMSE: 51.0}, {RMSE: 52.0, "alpha": 0.3})
    fig = ranking.metric_plot(ranking.rank(frame, RMSE_METRIC), RMSE_METRIC, "alpha", "l1_ratio")
    points = [p for c in fig.axes[0].collections for p in c.get_offsets().tolist()]
    assert points == [[0.3, 52.0]]
    assert legend_labels(fig) == ["l1_ratio = 0.5"]  # the best run has no alpha: no star

    empty = ranking.metric_plot(ranking.rank(runs_frame({RMSE: math.nan}), RMSE_METRIC), RMSE_METRIC, "alpha", "l1_ratio")
    assert [t.get_text() for t in empty.axes[0].texts] == ["no run has both alpha and RMSE"]
    assert figure_png(empty).startswith(PNG_MAGIC)


def test_many_series_get_distinct_colors_and_the_legend_beside_the_plot():
    frame = runs_frame(*({"alpha": 0.1 * (i % 3 + 1), "l1_ratio": i / 20} for i in range(12)))
    fig = ranking.metric_plot(ranking.rank(frame, RMSE_METRIC), RMSE_METRIC, "alpha", "l1_ratio")
    series = [c for c in fig.axes[0].collections if c.get_label().startswith("l1_ratio")]
    assert len(series) == 12
    assert len({tuple(c.get_facecolor()[0]) for c in series}) == 12
    assert figure_png(fig).startswith(PNG_MAGIC)


def test_other_parameters_are_columns_and_each_one_that_varies_gets_a_plot():
    frame = runs_frame(
        {"alpha": 0.1, "max_iter": 100, "selection": "cyclic", "tol": 1e-4},
        {"alpha": 0.1, "max_iter": 1000, "selection": "random", "tol": 1e-4},
        {"alpha": 1.0, "max_iter": 1000, "selection": "random", "tol": 1e-4, RMSE: 10.0},
    )
    ranked = ranking.rank(frame, RMSE_METRIC)
    assert list(ranked.columns[4:9]) == ["alpha", "l1_ratio", "max_iter", "selection", "tol"]
    assert ranking.parameters(ranked) == ["alpha", "l1_ratio", "max_iter", "selection", "tol"]
    assert ranked["max_iter"].dtype == "float64" and ranked["selection"].tolist() == ["random", "cyclic", "random"]
    # alpha and l1_ratio always; max_iter and selection vary; tol does not. Series: the first other parameter that varies.
    assert ranking.plot_axes(ranked) == [("alpha", "max_iter"), ("l1_ratio", "alpha"), ("max_iter", "alpha"), ("selection", "alpha")]
    figures = ranking.plots(ranked, RMSE_METRIC)
    assert list(figures) == [f"plots/rmse_vs_{name}.png" for name in ("alpha", "l1_ratio", "max_iter", "selection")]
    text_ax = figures["plots/rmse_vs_selection.png"].axes[0]
    assert [t.get_text() for t in text_ax.get_xticklabels()] == ["cyclic", "random"]  # text values as categories
    assert text_ax.get_xscale() == "linear"
    table = compare.text_table(ranked, RMSE_METRIC, "e").splitlines()
    assert table[1].split()[6:11] == ["alpha", "l1_ratio", "max_iter", "selection", "tol"]
    best = f"Best by RMSE: run {frame.loc[2, 'run_id']} (run-2), RMSE 10"
    assert table[-1] == f"{best} at alpha=1, l1_ratio=0.5, max_iter=1000, selection=random, tol=0.0001"


def test_a_parameter_that_is_not_always_a_number_stays_text():
    ranked = ranking.rank(runs_frame({"max_depth": "None"}, {"max_depth": "3"}, {}), RMSE_METRIC)
    assert ranked["max_depth"].tolist()[:2] == ["None", "3"] and pd.isna(ranked["max_depth"].iloc[2])


def test_the_caller_says_which_parameters_are_always_plotted():
    # As a sweep over one parameter: its plot even when the grid has one value.
    frame = pd.DataFrame({"run_id": ["a" * 32], "run_name": ["trial 1"], "max_iter": [100.0], RMSE: [50.0]})
    ranked = ranking.rank(frame, RMSE_METRIC)
    assert list(ranking.plots(ranked, RMSE_METRIC)) == []
    assert list(ranking.plots(ranked, RMSE_METRIC, always=["max_iter"])) == ["plots/rmse_vs_max_iter.png"]


def test_plot_files_are_safe_names():
    assert ranking.plot_file(RMSE_METRIC, "alpha") == "plots/rmse_vs_alpha.png"
    assert ranking.plot_file(R2_METRIC, "a b/c") == "plots/r2_vs_a_b_c.png"


# --- the table from MLflow's tables ---


def mlflow_table(*rows: dict) -> pd.DataFrame:
    """A table like mlflow.search_runs returns: run_id, start_time, metrics.*, params.*, tags.*."""
    return pd.DataFrame([{"start_time": pd.Timestamp(1000 * i, unit="ms", tz="UTC")} | row for i, row in enumerate(rows)])


def test_the_table_takes_model_params_metrics_verdicts_and_versions_from_mlflows_tables():
    evaluate, register = "tags.pipeline.evaluate.run_id", "tags.pipeline.register.run_id"
    runs = mlflow_table(
        {
            "run_id": "r1",
            "tags.mlflow.runName": "own metrics",
            evaluate: "e1",
            register: "g1",
            f"metrics.{RMSE}": 45.0,
            "params.model.estimator": "sklearn.linear_model.ElasticNet",
            "params.model.alpha": "0.1",
            "params.model.max_iter": "5000",
            "params.alpha": "99",
            "params.trial": "1",
            "tags.pipeline.kind": "trial",
        },
        {"run_id": "r2", evaluate: "e2", "params.model.alpha": "1.0", "tags.pipeline.evaluation.passed": "false"},
        {"run_id": "r3", evaluate: "gone"},
    )
    linked = mlflow_table(
        {"run_id": "e1", f"metrics.{RMSE}": 50.0, f"metrics.{MAE}": 40.0, "tags.pipeline.evaluation.passed": "true"},
        {"run_id": "e2", f"metrics.{RMSE}": 60.0},
        {"run_id": "g1", "tags.pipeline.output.model_version": "3"},
    ).set_index("run_id")
    frame = compare.build_frame(runs, linked)
    assert list(frame.columns) == [*COLUMNS[:6], "max_iter", *COLUMNS[6:]]
    r1, r2, r3 = (row for _, row in frame.iterrows())
    assert (r1["run_name"], r1["kind"], r1["alpha"], r1["max_iter"], r1[RMSE], r1[MAE]) == ("own metrics", "trial", 0.1, 5000.0, 45.0, 40.0)
    assert (r1["evaluation"], r1["model_version"], r1["evaluate_run_id"]) == ("passed", "3", "e1")
    # No verdict on the evaluate run: the run's own.
    assert (r2["kind"], r2["alpha"], r2[RMSE], r2["evaluation"]) == ("pipeline", 1.0, 60.0, "rejected")
    assert pd.isna(r2["model_version"]) and math.isnan(r2["max_iter"])
    assert math.isnan(r3[RMSE]) and pd.isna(r3["evaluation"]) and pd.isna(r3["run_name"])


def test_no_runs_make_an_empty_table_with_every_column():
    frame = compare.build_frame(pd.DataFrame(columns=["run_id"]), pd.DataFrame(columns=["run_id"]).set_index("run_id"))
    assert frame.empty and list(frame.columns) == list(COLUMNS)


# --- the card ---


def test_the_card_shows_the_best_run_the_plots_and_links_every_run_without_credentials():
    frame = runs_frame({"alpha": 0.1, RMSE: 53.0, "run_name": "<b>bold</b>"}, {"alpha": 1.0, RMSE: 60.0, "evaluation": None})
    uri = "https://alice:secret@mlflow.example.com/base"
    out = compare.run(frame, RMSE_METRIC, experiment_name="Default", experiment_id="7", tracking_uri=uri)
    html = out.card.render()
    assert "secret" not in html
    assert html.count('<img src="data:image/png;base64,') == 2
    for run_id in frame["run_id"]:
        assert f'<a href="{run_url(uri, "7", run_id)}">' in html
    assert run_url(uri, "7", frame.loc[0, "run_id"]).startswith("https://mlflow.example.com/base/#/experiments/7/runs/")
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold" not in html
    assert "Compare: Default" in html and "best first by RMSE (lower is better)" in html
    assert '<td class="good">passed</td>' in html
    assert "NaN" not in html  # missing values are empty cells
    assert out.best["run_id"] == frame.loc[0, "run_id"]
    assert out.table.splitlines()[-1].startswith(f"Best by RMSE: run {frame.loc[0, 'run_id']}")


def test_a_card_of_many_runs_shows_the_first_and_points_to_the_csv():
    frame = runs_frame(*({} for _ in range(5)))
    card = compare.build_card(
        ranking.rank(frame, RMSE_METRIC), RMSE_METRIC, {}, experiment_name="e", experiment_id="1", tracking_uri="sqlite:///x", max_rows=3
    )
    html = card.render()
    assert html.count("/#/experiments/1/runs/") == 3 + 1  # three rows and the best run
    assert "The first 3 of 5 runs; all are in compare/runs.csv." in html
