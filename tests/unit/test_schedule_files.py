"""The shipped scheduling files are complete and all run schedule/run-pipeline.sh."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import PROJECT_ROOT

SCHEDULE = PROJECT_ROOT / "schedule"
CRON_FIELD = r"[\d*/,-]+"


def test_run_script_is_executable_and_requires_a_tracking_uri():
    script = SCHEDULE / "run-pipeline.sh"
    assert os.access(script, os.X_OK)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    process = subprocess.run([str(script)], env=env, capture_output=True, text=True, check=False)
    assert process.returncode == 2
    assert (
        process.stderr.strip()
        == "error: run-pipeline.sh: set MLFLOW_TRACKING_URI to the tracking server (e.g. http://mlflow.internal:5000)"
    )


def test_run_script_stops_in_seconds_with_one_line_when_the_server_is_unreachable(unused_port):
    script = SCHEDULE / "run-pipeline.sh"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://user:secret-password@127.0.0.1:{unused_port}"}
    env = {k: v for k, v in env.items() if not k.startswith("MLFLOW_HTTP_REQUEST_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    start = time.monotonic()
    process = subprocess.run([str(script)], env=env, capture_output=True, text=True, check=False, timeout=120)
    elapsed = time.monotonic() - start
    assert process.returncode == 2, process.stderr
    assert process.stderr.strip() == (
        f"error: cannot reach the tracking server http://127.0.0.1:{unused_port} (connection refused): "
        "is it running, and is MLFLOW_TRACKING_URI right?"
    )
    assert elapsed < 30, elapsed  # MLflow's own retries take about four minutes


def test_crontab_line_runs_the_script_with_a_tracking_uri():
    lines = [line for line in (SCHEDULE / "crontab").read_text().splitlines() if line and not line.startswith("#")]
    assert any(re.fullmatch(r"MLFLOW_TRACKING_URI=\S+", line) for line in lines)
    jobs = [line for line in lines if re.match(rf"({CRON_FIELD}\s+){{5}}", line)]
    assert len(jobs) == 1
    assert "schedule/run-pipeline.sh" in jobs[0]


def test_systemd_service_and_timer_are_complete():
    service = configparser.ConfigParser(interpolation=None)
    service.read(SCHEDULE / "mlflow-pipeline.service")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["ExecStart"].split()[0].endswith("schedule/run-pipeline.sh")
    assert service["Service"]["EnvironmentFile"]  # MLFLOW_TRACKING_URI and credentials live there
    timer = configparser.ConfigParser(interpolation=None)
    timer.read(SCHEDULE / "mlflow-pipeline.timer")
    assert timer["Timer"]["Unit"] == "mlflow-pipeline.service"
    assert timer["Timer"]["OnCalendar"]
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_github_actions_workflow_is_scheduled_and_reads_the_uri_from_secrets():
    workflow = yaml.safe_load((PROJECT_ROOT / ".github/workflows/scheduled-pipeline.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    (schedule,) = triggers["schedule"]
    assert re.fullmatch(rf"{CRON_FIELD}( {CRON_FIELD}){{4}}", schedule["cron"])
    job = workflow["jobs"]["pipeline"]
    assert job["env"]["MLFLOW_TRACKING_URI"] == "${{ secrets.MLFLOW_TRACKING_URI }}"
    commands = [step.get("run", "") for step in job["steps"]]
    assert "python -m pip install -r requirements.txt" in commands
    assert "schedule/run-pipeline.sh" in commands
    assert workflow["concurrency"]["cancel-in-progress"] is False
