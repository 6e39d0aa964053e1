"""A disk that is full, read-only or not ours to write: one line naming the file or the store (steps.core.errors.storage_error)."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from steps.core.errors import PipelineError, StorageError, storage_error
from steps.mlflow_io import step_run
from steps.mlflow_io.cards import Card, log_card

FULL_DEVICE = Path("/dev/full")  # Linux: every write to it fails with ENOSPC, as on a full disk
needs_dev_full = pytest.mark.skipif(not FULL_DEVICE.exists(), reason="no /dev/full on this system")


def _write_to_full_disk() -> OSError:
    """The OSError of a real write to a full device: it names no file."""
    try:
        with FULL_DEVICE.open("wb", buffering=0) as device:
            device.write(b"x" * 4096)
    except OSError as exc:
        return exc
    pytest.fail("a write to /dev/full succeeded")


@needs_dev_full
def test_a_write_that_fails_midway_on_a_full_disk_names_the_store():
    exc = _write_to_full_disk()
    assert exc.errno == errno.ENOSPC and exc.filename is None
    error = storage_error(exc, "the artifact store /srv/mlruns/1/abc/artifacts")
    assert isinstance(error, StorageError) and isinstance(error, PipelineError)
    assert str(error) == "no space left on device writing the artifact store /srv/mlruns/1/abc/artifacts"


def test_a_copy_onto_a_full_disk_names_its_destination_not_its_source():
    # As shutil.copyfile raises it when sendfile(2) fails on a full file system: both names, the source first.
    exc = OSError(errno.ENOSPC, "No space left on device", "/data/train.parquet", None, "/srv/artifacts/data/train.parquet")
    assert str(storage_error(exc, "the store")) == "no space left on device writing /srv/artifacts/data/train.parquet"


@pytest.mark.parametrize(
    ("code", "line"),
    [
        (errno.EROFS, "read-only file system: cannot write /srv/artifacts/run"),
        (errno.EACCES, "permission denied on /srv/artifacts/run"),
        (errno.EDQUOT, "disk quota exceeded writing /srv/artifacts/run"),
        (errno.ENOSPC, "no space left on device writing /srv/artifacts/run"),
    ],
)
def test_each_problem_of_the_disk_is_said_in_words_with_the_file(code, line):
    # As os.makedirs raises it on a read-only artifact root: the directory it could not create.
    exc = OSError(code, "strerror", "/srv/artifacts/run")
    assert str(storage_error(exc, "the store")) == line


def test_an_error_raised_from_a_full_disk_is_one_too_unless_raised_from_none():
    def wrapped(suppress: bool) -> Exception:
        try:
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError as exc:
                raise (MlflowException("upload failed") if not suppress else ValueError("other")) from (None if suppress else exc)
        except Exception as outer:
            return outer

    assert str(storage_error(wrapped(suppress=False), "the store")) == "no space left on device writing the store"
    assert storage_error(wrapped(suppress=True), "the store") is None


def test_other_errors_are_not_problems_of_the_disk_and_the_store_is_asked_only_when_needed():
    asked = []

    def store() -> str:
        asked.append(True)
        return "the store"

    assert storage_error(FileNotFoundError(errno.ENOENT, "No such file", "x.csv"), store) is None
    assert storage_error(ValueError("bug"), store) is None
    assert storage_error(OSError(errno.EROFS, "Read-only file system", "/ro/x"), store) is not None
    assert asked == []
    assert str(storage_error(OSError(errno.ENOSPC, "No space left on device"), store)) == "no space left on device writing the store"
    assert asked == [True]


def test_without_a_run_an_unnamed_write_names_the_tracking_store_and_the_temporary_directory(monkeypatch, tmp_path):
    monkeypatch.setattr(step_run.tempfile, "tempdir", str(tmp_path))
    while mlflow.active_run():
        mlflow.end_run()
    line = step_run.storage_problem(OSError(errno.ENOSPC, "No space left on device"))
    assert line == f"no space left on device writing the tracking store {mlflow.get_tracking_uri()} or a temporary file in {tmp_path}"
    assert step_run.environment_problem(OSError(errno.ENOSPC, "No space left on device")) == line
    assert step_run.environment_problem(ValueError("a bug")) is None


@needs_dev_full
def test_a_card_that_cannot_be_written_on_a_full_disk_fails_the_run_any_other_problem_is_a_warning(caplog):
    def full() -> Card:
        raise _write_to_full_disk()

    with pytest.raises(OSError) as raised:
        log_card(full)
    assert raised.value.errno == errno.ENOSPC

    def broken() -> Card:
        raise ValueError("a plot numpy cannot draw")

    with caplog.at_level(logging.WARNING):
        log_card(broken)
    assert "no card.html for this run: ValueError: a plot numpy cannot draw" in caplog.text
