"""Artifacts logged to and read from a real (temporary) tracking store."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from steps.core.errors import InputError
from steps.mlflow_io import artifacts
from steps.mlflow_io.contracts import Manifest
from tests.conftest import make_frame


def test_logged_table_reads_back_from_its_runs_uri(tracking_uri):
    frame = make_frame(rows=6)
    with mlflow.start_run() as run:
        table = artifacts.log_table(frame, "data/train.parquet")
        written = Manifest(
            source="f.csv",
            resolved_source="/f.csv",
            digest="d",
            rows=6,
            missing_values=0,
            splits={"train": {"rows": 6, "digest": table.digest}},
            split={"test_size": 0.2, "seed": 1},
            target={"task": "regression", "mean": 1.5},
            schema={"target": "y", "columns": {"x": {}, "a": {}, "y": {}}},
        )
        manifest = artifacts.log_record(written, "data/manifest.json")
    assert table.uri == f"runs:/{run.info.run_id}/data/train.parquet"
    pd.testing.assert_frame_equal(artifacts.read_table(table.uri), frame)
    downloaded = mlflow.artifacts.download_artifacts(table.uri)
    assert artifacts.sha256_file(downloaded) == table.digest  # the digest is of the logged content
    read, schema = artifacts.load_manifest(manifest.uri)
    assert read == written and schema.features == ["x", "a"]  # the schema's column order survives the round trip
    with mlflow.start_run():
        other = artifacts.log_json({"schema": {"target": "y"}}, "data/manifest.json")
    with pytest.raises(InputError, match=r"ingest manifest runs:/\w+/data/manifest.json: not written by this pipeline's steps"):
        artifacts.load_manifest(other.uri)


def test_unknown_artifact_uri_is_a_clear_error(tracking_uri):
    with pytest.raises(InputError, match=r"train split runs:/0123456789abcdef/data/train.parquet: cannot download"):
        artifacts.read_table("runs:/0123456789abcdef/data/train.parquet", what="train split")


def test_a_step_alone_logs_the_values_it_took_from_the_config_file(tracking_uri):
    from steps import ingest  # noqa: PLC0415
    from steps.core.data import DataSettings  # noqa: PLC0415
    from steps.mlflow_io.step_run import settings  # noqa: PLC0415

    with mlflow.start_run() as run:
        mlflow.log_param("seed", "7")  # as `mlflow run -P seed=7` logs it
        resolved = settings(ingest.build_parser().parse_args(["--seed", "7"]), DataSettings, "data", ingest.OPTIONS)
    params = mlflow.MlflowClient().get_run(run.info.run_id).data.params
    assert resolved.seed == 7
    assert params == {
        "seed": "7",
        "data_uri": "data/example_data.csv",
        "schema": "conf/schema.yaml",
        "test_size": "0.2",
        "drop_missing_target": "false",
        "download_timeout": "600",
    }
