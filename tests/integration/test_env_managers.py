"""The pipeline in environments MLflow builds from python_env.yaml: uv and virtualenv.

MLflow names an environment after its requirements only, so uv and virtualenv would share one
cached environment; each manager gets its own MLFLOW_ENV_ROOT here so each really builds one.
The roots persist across test sessions (a cache, like ~/.mlflow/envs): the first session builds
the environments from requirements.txt and is the slowest part of the suite.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import STEPS, explain, run_pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.env_manager]

PYTHON_VERSION = yaml.safe_load((PROJECT_ROOT / "python_env.yaml").read_text())["python"]


def _which(tool: str) -> str | None:
    return shutil.which(tool, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def _pyenv_has_python() -> bool:
    pyenv = _which("pyenv")
    if not pyenv:
        return False
    versions = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True, check=False).stdout.split()
    return PYTHON_VERSION in versions


@pytest.mark.parametrize(
    "env_manager",
    [
        pytest.param("uv", marks=pytest.mark.skipif(not _which("uv"), reason="uv is not installed (pip install -r requirements-dev.txt)")),
        pytest.param(
            "virtualenv",
            marks=pytest.mark.skipif(not _pyenv_has_python(), reason=f"virtualenv needs pyenv with Python {PYTHON_VERSION} installed"),
        ),
    ],
)
def test_pipeline_runs_in_an_environment_built_from_python_env_yaml(tmp_path, env_manager):
    env_root = Path.home() / ".cache" / "mlflow-pipeline-tests" / f"envs-{env_manager}"
    run = run_pipeline(tmp_path, "alpha=0.3", env_manager=env_manager, env={"MLFLOW_ENV_ROOT": str(env_root)})
    assert run.process.returncode == 0, explain(run)
    # The driver ran inside the environment MLflow built (its steps inherit it).
    assert re.search(
        rf"Running command 'source {re.escape(str(env_root))}/mlflow-\w+/bin/activate && python -m steps main",
        run.process.stderr,
    ), explain(run)
    assert run.parent().info.status == "FINISHED"
    children = run.children()
    assert set(children) == set(STEPS)
    assert all(child.info.status == "FINISHED" for child in children.values())
    champion = run.client.get_model_version_by_alias("diabetes-elasticnet", "champion")
    assert str(champion.version) == "1"
