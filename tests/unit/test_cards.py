"""Cards: the HTML builder, and each step's card on small synthetic frames (with missing values)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from steps import featurize, ingest, register, train
from steps.core import features
from steps.core.schema import parse_schema
from steps.mlflow_io import cards
from steps.mlflow_io.cards import Card, format_value
from steps.mlflow_io.registry import RegisteredModel
from tests.conftest import check_card, data_settings, estimator_spec, make_frame


def _figure() -> Figure:
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    return fig


def test_a_card_is_one_well_formed_self_contained_document_with_everything_escaped():
    card = Card("Report <b>&</b>", "sub <i>title</i>")
    card.heading("Numbers").facts({"rows": 1234567, "ratio": 0.123456, "none": None, "flag": True, "nan": float("nan")})
    card.table(
        [{"name": "<script>alert(1)</script>", "value": 1.5, "run": ("abc", 'http://h/#/runs/abc?x=1&y="2"')}, {"name": "b"}],
        ["name", "value", "run"],
        links="run",
    )
    card.table([], ["empty"])
    card.figure(_figure(), 'a "quoted" caption')
    card.code("mlflow run . -P alpha=0.3 && echo <done>")
    text, images = check_card(card.render(), min_images=1)

    assert "<script>" not in card.render() and "&lt;script&gt;alert(1)&lt;/script&gt;" in card.render()
    assert "Report <b>&</b>" in text  # shown as typed, not interpreted
    assert "1,234,567" in text and "0.1235" in text and "true" in text and "NaN" in text
    assert "none" not in text.split("Numbers", 1)[1].split("ratio")[0]  # None values are left out
    assert 'href="http://h/#/runs/abc?x=1&amp;y=&quot;2&quot;"' in card.render()
    assert "(none)" in text  # an empty table says so
    assert len(images) == 1


def _hostile(where: str) -> str:
    return f"{where} <script>alert('x')</script> & co"


def test_markup_and_ampersands_are_escaped_in_every_kind_of_block_and_only_web_addresses_are_links():
    card = Card(_hostile("title"), _hostile("subtitle")).heading(_hostile("heading"))
    card.text(_hostile("text")).text(_hostile("note"), note=True).code(_hostile("code"))
    card.facts({_hostile("fact name"): _hostile("fact value")})
    card.table([{_hostile("column"): _hostile("cell"), "run": (_hostile("table link"), "javascript:alert(1)")}], links="run")
    card.table([{"run": ("web", "https://mlflow.example.com/#/runs/1?a=1&b=2")}], links="run")
    card.link(_hostile("link"), "JavaScript:alert(1)").link("spaced", " javascript:alert(1)").link("data", "data:text/html,<b>")
    card.figure(_figure(), _hostile("caption"))
    document = card.render()
    text, _ = check_card(document, min_images=1)

    kinds = ("title", "subtitle", "heading", "text", "note", "fact name", "fact value", "code", "column", "cell", "table link", "link")
    for where in (*kinds, "caption"):
        assert f"{where} &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in document, where
    for where in kinds:
        assert _hostile(where) in text, where  # shown as typed
    assert 'alt="caption &lt;script&gt;' in document
    # Links to anything but http(s) show their text, not the address.
    assert "javascript" not in document.lower() and "data:text" not in document
    assert document.count("<a ") == 1 and '<a href="https://mlflow.example.com/#/runs/1?a=1&amp;b=2">web</a>' in document
    assert "<p>spaced</p>" in document and "<p>data</p>" in document


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, ""), (3, "3"), (12345, "12,345"), (np.int64(7), "7"), (0.000123456, "0.0001235"), (np.float64(2.5), "2.5"), ("x", "x")],
)
def test_values_are_shown_with_four_significant_digits(value, shown):
    assert format_value(value) == shown


def test_links_point_at_the_ui_of_the_tracking_server_without_its_credentials():
    assert cards.ui_url("https://alice:secret@mlflow.example.com:8443/base/") == "https://mlflow.example.com:8443/base"
    # Every page opens in the UI's Model training view (MLflow 3 opens GenAI by default).
    view = "?workflowType=machine_learning"
    assert cards.run_url("http://127.0.0.1:5001", "3", "abc") == f"http://127.0.0.1:5001/#/experiments/3/runs/abc{view}"
    assert cards.experiment_url("http://127.0.0.1:5001", "3") == f"http://127.0.0.1:5001/#/experiments/3/runs{view}"
    # A local store has no UI until someone starts one: `mlflow ui`'s default address.
    assert cards.ui_url("sqlite:///mlflow.db") == cards.DEFAULT_UI_URL
    assert cards.artifact_url("sqlite:///x.db", "1", "r").endswith(f"/#/experiments/1/runs/r/artifacts/card.html{view}")


def test_the_ingest_card_profiles_every_column_including_missing_values(small_schema):
    frame = make_frame(rows=60)  # one missing value in x1, x2 and color each
    params = data_settings(uri="data.csv", test_size=0.25, seed=3)
    out = ingest.run(frame, small_schema, params, "auto", "data.csv")
    text, _ = check_card(ingest.card(out, small_schema, "data.csv", params).render(), min_images=1)
    assert "60 rows valid" in text and "train rows 45" in text and "test rows 15" in text
    profile = {row["column"]: row for row in ingest.column_profile(out.data, small_schema)}
    assert profile["x1"]["missing"] == 1 and profile["x1"]["missing %"] == pytest.approx(100 / 60)
    assert profile["x1"]["min"] == pytest.approx(frame["x1"].min()) and profile["x1"]["max"] == pytest.approx(frame["x1"].max())
    assert profile["y"]["role"] == "target" and profile["y"]["missing"] == 0
    assert profile["color"]["type"] == "categorical" and "min" not in profile["color"]
    assert profile["color"]["most frequent"].count("(") == 3  # red, green, blue with their counts


def test_the_ingest_card_draws_a_sample_of_large_data(small_schema, monkeypatch):
    monkeypatch.setattr(ingest, "HISTOGRAM_ROWS", 20)
    params = data_settings(uri="data.csv", test_size=0.25, seed=3)
    out = ingest.run(make_frame(rows=60), small_schema, params, "auto", "data.csv")
    text, _ = check_card(ingest.card(out, small_schema, "data.csv", params).render(), min_images=1)
    assert "a random sample of 20 rows" in text


def test_a_column_with_no_value_left_in_a_split_still_gets_a_profile(small_schema):
    frame = make_frame(rows=8)
    frame["x2"] = np.nan
    profile = {row["column"]: row for row in ingest.column_profile(frame, small_schema)}
    assert profile["x2"]["missing"] == 8 and "min" not in profile["x2"]
    check_card(Card("t").figure(ingest.distributions(frame, small_schema), "d").render(), min_images=1)


def test_the_featurize_card_shows_the_fitted_values(small_schema):
    frame = make_frame(rows=50)
    out = featurize.run(frame, small_schema)
    rows = {row["column"]: row for row in features.fitted_transformations(out.transformer)}
    assert rows["x1"]["missing values become"] == pytest.approx(frame["x1"].median())
    imputed = frame["x2"].fillna(frame["x2"].median())
    assert rows["x2"]["minus (mean)"] == pytest.approx(imputed.mean())
    assert rows["x2"]["divided by (std)"] == pytest.approx(imputed.std(ddof=0))
    assert rows["color"]["outputs"] == "3 one-hot column(s): blue, green, red"
    text, _ = check_card(featurize.card(out, small_schema, len(frame)).render())
    assert "output features 5" in text and "50 rows" in text


def test_the_train_card_ranks_the_coefficients_and_draws_them(small_schema):
    frame = make_frame(rows=80)
    transformer = featurize.run(frame, small_schema).transformer
    params = estimator_spec(alpha=0.1, l1_ratio=0.5)
    out = train.run(frame, transformer, small_schema, params)
    text, _ = check_card(train.card(out, params, len(frame), "models:/m-1").render(), min_images=1)
    assert "alpha 0.1" in text and "models:/m-1" in text
    # x1 has by far the largest effect (3 per unit over a range of 100).
    assert text.split("feature coefficient", 1)[1].split()[0] == "x1"


def test_the_register_card_states_the_decision_and_the_aliases():
    verdict = register.Verdict(passed=True, reason="fine", compared_with="2")
    out = register.RegisterOutputs(RegisteredModel("m", "3"), "promoted", "better", champion="3", previous_champion="2")
    text, _ = check_card(register.card(out, verdict, "models:/m-1").render())
    assert "decision promoted" in text and "champion before version 2" in text and "champion after version 3" in text
    assert 'mlflow models serve -m "models:/m@champion"' in text
    rejected = register.RegisterOutputs(RegisteredModel("m", "4"), "rejected", "worse", champion=None)
    text, _ = check_card(register.card(rejected, register.Verdict(False, "worse", None), "models:/m-2").render())
    assert "champion after none" in text and "Serve" not in text


NEARLY_EQUAL = np.full(7, 80.0) + np.array([0, 1e-14, 0, 0, 2e-14, 0, 0])


@pytest.mark.parametrize("values", [np.array([]), np.array([5.0]), NEARLY_EQUAL, np.arange(9.0)])
def test_histograms_of_equal_or_few_values_draw(values):
    fig = Figure()
    cards.histogram(fig.add_subplot(), values, bins=30)
    assert cards.figure_png(fig).startswith(b"\x89PNG")


def test_values_too_far_apart_for_equal_bins_still_draw():
    fig = Figure()
    cards.histogram(fig.add_subplot(), np.array([-1e308, 0.0, 1e308]), bins=30)
    assert cards.figure_png(fig).startswith(b"\x89PNG")


def test_ipv6_hosts_keep_their_brackets():
    assert cards.ui_url("http://user:pw@[::1]:5000/") == "http://[::1]:5000"


def test_wide_data_is_capped_in_the_plots_not_in_the_tables(monkeypatch):

    columns = {f"x{i}": {"dtype": "float"} for i in range(60)} | {"y": {"dtype": "float"}}
    schema = parse_schema({"target": "y", "columns": columns}, source="wide")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(50, 61)), columns=[*columns])
    frame["y"] = frame.sum(axis=1)
    params = data_settings(uri="wide.csv", test_size=0.2, seed=0)
    out = ingest.run(frame, schema, params, "auto", "wide.csv")
    text, _ = check_card(ingest.card(out, schema, "wide.csv", params).render(), min_images=1)
    assert "the target and the first 39 of 60 features" in text and "x59" in text  # every column in the table
    transformer = featurize.run(out.train, schema).transformer
    model = estimator_spec(alpha=0.01, l1_ratio=0.5)
    trained = train.run(out.train, transformer, schema, model)
    text, _ = check_card(train.card(trained, model, len(out.train), "models:/m").render(), min_images=1)
    assert "The 40 largest of 60 are shown" in text
