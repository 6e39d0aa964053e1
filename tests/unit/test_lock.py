"""The one-pipeline-at-a-time lock: a real flock, held by one process and tried by another."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from steps.runtime.lock import PipelineBusyError, lock_path, pipeline_lock

HOLD_LOCK = """
import sys, time
from steps.runtime.lock import pipeline_lock
from pathlib import Path
with pipeline_lock(Path(sys.argv[1]), "holder run abc", "fail", 1):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@contextmanager
def held_by_another_process(path: Path, seconds: float) -> Iterator[subprocess.Popen]:
    """Another process holds the lock at ``path`` for ``seconds`` (killed on exit if still alive)."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "locked"
        yield process
    finally:
        process.kill()
        process.wait()


def test_lock_path_depends_on_store_experiment_and_model():
    base = lock_path("sqlite:///a.db", "0", "m")
    assert base == lock_path("sqlite:///a.db", "0", "m")
    others = {lock_path("sqlite:///b.db", "0", "m"), lock_path("sqlite:///a.db", "1", "m"), lock_path("sqlite:///a.db", "0", "n")}
    assert base not in others and len(others) == 3


def test_fail_policy_stops_at_once_naming_the_holder(tmp_path):
    busy = r"another run of this pipeline is in progress \(holder run abc, pid \d+\); run.overlap=fail"
    with held_by_another_process(tmp_path / "p.lock", 30):
        start = time.monotonic()
        with pytest.raises(PipelineBusyError, match=busy), pipeline_lock(tmp_path / "p.lock", "me", "fail", 60):
            pass
        assert time.monotonic() - start < 5


def test_wait_policy_gives_up_after_max_wait(tmp_path):
    gave_up = r"still runs after 2 s \(run.max_wait_seconds\)"
    with (
        held_by_another_process(tmp_path / "p.lock", 30),
        pytest.raises(PipelineBusyError, match=gave_up),
        pipeline_lock(tmp_path / "p.lock", "me", "wait", 2),
    ):
        pass


def test_wait_policy_proceeds_when_the_other_run_ends(tmp_path):
    with held_by_another_process(tmp_path / "p.lock", 2):
        start = time.monotonic()
        with pipeline_lock(tmp_path / "p.lock", "me", "wait", 60):
            assert time.monotonic() - start > 1  # it waited for the holder's 2 s
            assert "me, pid" in (tmp_path / "p.lock").read_text()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    with held_by_another_process(tmp_path / "p.lock", 60) as holder:
        holder.kill()  # SIGKILL: no cleanup code runs
        holder.wait()
        with pipeline_lock(tmp_path / "p.lock", "me", "fail", 1):
            assert "me, pid" in (tmp_path / "p.lock").read_text()
