"""Reading tables from every kind of location ingest accepts, and logging artifacts."""

from __future__ import annotations

import importlib.util
import time

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pandas._libs.parsers import STR_NA_VALUES

from steps.core.conf import PROJECT_ROOT
from steps.core.errors import DataError, InputError
from steps.mlflow_io import artifacts
from tests.conftest import ScriptedServer, SilentServer, make_frame


def test_relative_paths_resolve_inside_the_project_not_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert artifacts.resolve_data_uri("data/example_data.csv") == str(PROJECT_ROOT / "data/example_data.csv")
    assert artifacts.resolve_data_uri("s3://bucket/x.csv") == "s3://bucket/x.csv"
    assert artifacts.resolve_data_uri("/abs/x.csv") == "/abs/x.csv"
    assert len(artifacts.read_table("data/example_data.csv")) == 442


def test_reads_csv_and_parquet_from_paths_and_file_uris(tmp_path):
    frame = make_frame(rows=8, missing=False)
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    for uri in (str(tmp_path / "d.csv"), (tmp_path / "d.parquet").as_uri()):
        pd.testing.assert_frame_equal(artifacts.read_table(uri), frame, check_dtype=False)


def test_reads_over_http_and_reports_http_errors(http_root):
    root, base = http_root
    make_frame(rows=8).to_csv(root / "d.csv", index=False)
    assert len(artifacts.read_table(f"{base}/d.csv")) == 8
    with pytest.raises(InputError, match=r"dataset http://127.0.0.1:\d+/missing.csv: HTTP 404"):
        artifacts.read_table(f"{base}/missing.csv")


@pytest.mark.parametrize(
    ("content", "name", "expected"),
    [
        (b"", "empty.csv", r"empty.csv: the file is empty"),
        (b"a,b\n\xff\xfe,1\n", "latin.csv", r"latin.csv: not UTF-8 text \(invalid byte 0xff\)"),
        (b"not parquet", "bad.parquet", r"bad.parquet: cannot parse as parquet"),
        (b"a,b\n1,2\n", "data.txt", r"data.txt: unsupported file type"),
    ],
)
def test_unreadable_files_are_one_line_errors(tmp_path, content, name, expected):
    (tmp_path / name).write_bytes(content)
    with pytest.raises((DataError, InputError), match=expected) as info:
        artifacts.read_table(str(tmp_path / name))
    assert "\n" not in str(info.value)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(InputError, match=r"dataset .*nope.csv: file not found"):
        artifacts.read_table(str(tmp_path / "nope.csv"))


def test_csv_text_columns_are_read_as_written_and_repeated_headers_refused(tmp_path):
    (tmp_path / "codes.csv").write_text("code,y\n007,1\n,2\n010,3\n")
    frame = artifacts.read_table(str(tmp_path / "codes.csv"), text_columns=["code"])
    assert frame["code"].tolist()[0] == "007" and frame["code"].tolist()[2] == "010"
    (tmp_path / "dup.csv").write_text("x,y,x\n1,2,3\n")
    with pytest.raises(DataError, match=r"dup.csv: duplicate column name\(s\) 'x'"):
        artifacts.read_table(str(tmp_path / "dup.csv"))


def test_a_binary_file_given_as_a_text_input_is_a_clear_error(tmp_path):
    make_frame(rows=3).to_parquet(tmp_path / "split.parquet")
    with pytest.raises(InputError, match=r"ingest manifest .*split.parquet: not a text file"):
        artifacts.load_manifest(str(tmp_path / "split.parquet"))


@pytest.mark.skipif(importlib.util.find_spec("boto3") is not None, reason="boto3 is installed, so s3:// URIs are readable")
def test_a_uri_scheme_whose_client_is_not_installed_is_a_clear_error():
    with pytest.raises(InputError, match=r"dataset s3://bucket/x.csv: cannot download: the Python package '\w+' is not installed"):
        artifacts.read_table("s3://bucket/x.csv")


def test_a_split_without_the_schema_columns_is_refused(tmp_path, small_schema):
    make_frame(rows=4).drop(columns=["x2"]).to_parquet(tmp_path / "train.parquet")
    with pytest.raises(InputError, match=r"train split .*train.parquet: missing column\(s\) 'x2' of the manifest's schema"):
        artifacts.read_split(str(tmp_path / "train.parquet"), "train split", small_schema)


def test_pyarrow_reads_missing_values_like_pandas():
    assert set(artifacts.PANDAS_NA_STRINGS) == set(STR_NA_VALUES)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("a,b,code\n1,NA,007\n,3,None\nnan,null,x\n", id="missing values and a text column"),
        pytest.param("a,when\n1,2020-01-01\n2,2020-01-02\n", id="dates stay text"),
        pytest.param('a,b\n"1,5",2\n', id="quoted delimiter"),
        pytest.param("a,b\n1,2,3\n4,5\n", id="ragged rows (pyarrow refuses; pandas reads)"),
        pytest.param("a,b\n1,\n2,\n", id="a column with no value"),
        pytest.param("a,,c\n1,2,3\n", id="an unnamed column"),
    ],
)
def test_csv_is_read_as_pandas_reads_it(tmp_path, content):
    path = tmp_path / "t.csv"
    path.write_text(content, encoding="utf-8")
    expected = pd.read_csv(path, encoding="utf-8", dtype={"code": "string"})
    pd.testing.assert_frame_equal(artifacts.read_table(str(path), text_columns=["code"]), expected)


def test_large_tables_are_written_in_row_groups_and_read_back_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "PARQUET_CHUNK_ROWS", 4)
    frame = pd.DataFrame({"x": np.arange(10, dtype="float64"), "name": [f"n{i}" for i in range(10)]})
    artifacts.write_parquet(frame, tmp_path / "t.parquet")
    assert pq.ParquetFile(tmp_path / "t.parquet").num_row_groups == 3
    pd.testing.assert_frame_equal(artifacts.read_table(str(tmp_path / "t.parquet")), frame)


def test_a_large_frames_dataset_schema_is_mlflows_inferred_from_a_sample(monkeypatch):
    monkeypatch.setattr(artifacts, "SCHEMA_SAMPLE_ROWS", 50)
    frame = make_frame(rows=200, missing=False)
    frame.loc[150, "x2"] = np.nan  # only past the sample: the column must still be optional
    dataset = artifacts.to_dataset(frame, "d", None, "y", sha256="ab" * 32)
    assert dataset.schema == mlflow.data.from_pandas(frame, targets="y", name="d").schema
    assert dataset.profile["num_rows"] == 200
    assert dataset.digest == "ab" * 8


def test_object_columns_are_written_whole_whatever_their_first_rows_hold(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "PARQUET_CHUNK_ROWS", 2)
    frame = pd.DataFrame({"x": np.arange(6, dtype="float64"), "flag": [None, None, None, True, False, True]})
    artifacts.write_parquet(frame, tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "t.parquet"), frame)


@pytest.mark.parametrize("server", [lambda: ScriptedServer(trickle_every=0.1), SilentServer], ids=["trickling", "silent"])
def test_a_download_ends_at_its_overall_deadline_however_the_server_trickles(server, tmp_path):
    with server() as running:
        start = time.monotonic()
        with pytest.raises(InputError, match=r"dataset http://127\.0\.0\.1:\d+/data\.csv: cannot download: not complete after 0\.5 s"):
            artifacts.fetch(running.url, tmp_path, "dataset", timeout=0.5)
        assert time.monotonic() - start < 2


def test_a_download_within_its_deadline_is_read_and_digested_as_served(tmp_path):
    body = make_frame(5).to_csv(index=False).encode()
    with ScriptedServer([body]) as running:
        frame, digest = artifacts.read_table_with_digest(running.url, timeout=5)
    assert len(frame) == 5
    assert digest == artifacts.sha256_bytes(body)


def test_a_local_file_rewritten_while_it_is_read_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "data.csv"
    make_frame(5).to_csv(path, index=False)
    parse = artifacts._parse_table

    def parse_then_rewrite(*args, **kwargs):
        frame = parse(*args, **kwargs)
        make_frame(7).to_csv(path, index=False)  # another process finishes writing the file
        return frame

    monkeypatch.setattr(artifacts, "_parse_table", parse_then_rewrite)
    with pytest.raises(DataError, match="the file changed while it was read; run again once it is written"):
        artifacts.read_table_with_digest(str(path))
