"""The one-pipeline-at-a-time lock: a real flock, held by one process and tried by another."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from steps.lock import PipelineBusyError, lock_path, pipeline_lock

HOLD_LOCK = """
import sys, time
from steps.lock import pipeline_lock
from pathlib import Path
with pipeline_lock(Path(sys.argv[1]), "holder run abc", "fail", 1):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_in_another_process(path, seconds):
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_lock_path_depends_on_store_experiment_and_model():
    base = lock_path("sqlite:///a.db", "0", "m")
    assert base == lock_path("sqlite:///a.db", "0", "m")
    assert (
        len({base, lock_path("sqlite:///b.db", "0", "m"), lock_path("sqlite:///a.db", "1", "m"), lock_path("sqlite:///a.db", "0", "n")})
        == 4
    )


def test_fail_policy_stops_at_once_naming_the_holder(tmp_path):
    path = tmp_path / "p.lock"
    holder = hold_in_another_process(path, 30)
    try:
        start = time.monotonic()
        with (
            pytest.raises(
                PipelineBusyError, match=r"another run of this pipeline is in progress \(holder run abc, pid \d+\); run.overlap=fail"
            ),
            pipeline_lock(path, "me", "fail", 60),
        ):
            pass
        assert time.monotonic() - start < 5
    finally:
        holder.kill()
        holder.wait()


def test_wait_policy_gives_up_after_max_wait(tmp_path):
    path = tmp_path / "p.lock"
    holder = hold_in_another_process(path, 30)
    try:
        with pytest.raises(PipelineBusyError, match=r"still runs after 2 s \(run.max_wait_seconds\)"), pipeline_lock(path, "me", "wait", 2):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_wait_policy_proceeds_when_the_other_run_ends(tmp_path):
    path = tmp_path / "p.lock"
    holder = hold_in_another_process(path, 2)
    entered = threading.Event()
    with pipeline_lock(path, "me", "wait", 60):
        entered.set()
    holder.wait()
    assert entered.is_set()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    path = tmp_path / "p.lock"
    holder = hold_in_another_process(path, 60)
    holder.kill()  # SIGKILL: no cleanup code runs
    holder.wait()
    with pipeline_lock(path, "me", "fail", 1):
        assert "me, pid" in path.read_text()
