"""The shipped Kubernetes files (kubernetes/) are complete, and MLflow's Kubernetes backend accepts them.

There is no cluster and no Docker engine here. The fast tests parse the files and run MLflow's own
functions on them (its backend-config parsing, its Job building); the end-to-end test runs the
real ``mlflow run kubernetes --backend kubernetes ...`` against a stand-in Docker engine and a
stand-in Kubernetes API server on 127.0.0.1, and the stand-in API server runs the Job it receives
the way its pod would: the Job's command and environment, in a directory laid out by the
Dockerfile's COPY lines.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import shutil
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import yaml
from mlflow.projects import _parse_kubernetes_config
from mlflow.projects._project_spec import load_project
from mlflow.projects.docker import validate_docker_env
from mlflow.projects.utils import get_entry_point_command

from steps.orchestration.cache import ENV_FILES, project_imports
from tests.conftest import PROJECT_ROOT

KUBERNETES = PROJECT_ROOT / "kubernetes"
BACKEND_CONFIG = KUBERNETES / "backend-config.json"
JOB_TEMPLATE = KUBERNETES / "job-template.yaml"
DOCKERFILE = KUBERNETES / "Dockerfile"
LAUNCHER_REQUIREMENTS = KUBERNETES / "launcher-requirements.txt"

# What MLflow 3.17 substitutes in the template (mlflow/projects/kubernetes.py).
NAME_PLACEHOLDER = "{replaced with MLflow Project name}"
IMAGE_PLACEHOLDER = "{replaced with URI of Docker image created during Project execution}"
COMMAND_PLACEHOLDER = "{replaced with MLflow Project entry point command}"
# The variables MLflow appends to the container's env; the template must not set them too.
MLFLOW_JOB_ENV = ("MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")
SECRET_NAME = "mlflow-pipeline-tracking"

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
FAKE_DIGEST = "sha256:" + "5e" * 32
# The command docs/kubernetes.md gives, run from the repository root.
README_COMMAND = ("mlflow", "run", "kubernetes", "--backend", "kubernetes", "--backend-config", "kubernetes/backend-config.json")


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def backend_config() -> dict[str, str]:
    return json.loads(BACKEND_CONFIG.read_text(encoding="utf-8"))


def job_template() -> dict[str, Any]:
    return read_yaml(JOB_TEMPLATE)


def container(job: dict[str, Any]) -> dict[str, Any]:
    (only,) = job["spec"]["template"]["spec"]["containers"]
    return only


def docker_image() -> str:
    return read_yaml(KUBERNETES / "MLproject")["docker_env"]["image"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(KEYWORD, arguments)`` for each instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    instructions = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerfile_copies() -> list[tuple[list[str], str]]:
    return [(words[:-1], words[-1]) for keyword, args in dockerfile_instructions() if keyword == "COPY" for words in [shlex.split(args)]]


def dockerfile_env() -> dict[str, str]:
    pairs = [word.split("=", 1) for keyword, args in dockerfile_instructions() if keyword == "ENV" for word in shlex.split(args)]
    return dict(pairs)


def lay_out_image(workdir: Path) -> None:
    """Put what the Dockerfile's COPY lines copy under ``workdir`` (the image's WORKDIR)."""
    for sources, target in dockerfile_copies():
        for source in sources:
            path = PROJECT_ROOT / source
            if path.is_dir():
                shutil.copytree(path, workdir / target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                destination = workdir / target / path.name if target.endswith("/") else workdir / target
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, destination)


def as_kubernetes_model(job: dict[str, Any]) -> dict[str, Any]:
    """``job`` read into the Kubernetes client's V1Job and written back: fields it does not know are gone."""
    from kubernetes.client import ApiClient  # noqa: PLC0415 - the optional client

    api = ApiClient()
    model = api.deserialize(SimpleNamespace(data=json.dumps(job)), "V1Job")
    return api.sanitize_for_serialization(model)


# --- the files --------------------------------------------------------------------------------


def test_backend_config_has_the_keys_mlflow_requires_and_mlflow_parses_it(monkeypatch: pytest.MonkeyPatch):
    config = backend_config()
    assert set(config) <= {"kube-context", "kube-job-template-path", "repository-uri"}
    assert config["kube-job-template-path"] == "kubernetes/job-template.yaml"  # relative to the repository root
    monkeypatch.chdir(PROJECT_ROOT)  # where the command in docs/kubernetes.md runs
    parsed = _parse_kubernetes_config(config)
    assert parsed["kube-job-template"] == job_template()
    # Only --build-image uses repository-uri, but it must be there; keep it naming the same repository.
    assert parsed["repository-uri"] == docker_image().rsplit(":", 1)[0]


def test_job_template_is_a_batch_v1_job_with_the_fields_mlflow_fills_in(mlflow_kubernetes: ModuleType):
    job = job_template()
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert job["metadata"]["name"] == NAME_PLACEHOLDER
    assert DNS_LABEL.fullmatch(job["metadata"]["namespace"])  # MLflow reads it, and fails without it
    spec = job["spec"]
    assert spec["backoffLimit"] == 0  # a failed pipeline fails the Job at once; MLflow marks the run FAILED
    assert spec["activeDeadlineSeconds"] > 3600  # a pod that never starts still ends the wait
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    main = container(job)
    assert (main["name"], main["image"], main["command"]) == (NAME_PLACEHOLDER, IMAGE_PLACEHOLDER, [COMMAND_PLACEHOLDER])
    assert as_kubernetes_model(job) == job  # every field is one the Job API knows (no typos)


def test_job_template_takes_the_tracking_credentials_from_a_secret_and_leaves_mlflows_variables_to_mlflow():
    env = container(job_template())["env"]
    assert not {entry["name"] for entry in env} & set(MLFLOW_JOB_ENV)
    secrets = {entry["name"]: entry["valueFrom"]["secretKeyRef"] for entry in env}
    assert set(secrets) == {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
    for ref in secrets.values():
        assert ref["name"] == SECRET_NAME
        assert ref["optional"] is True  # a missing Secret: a one-line 401 error, not a pod that never starts


def test_mlflow_builds_a_valid_job_from_the_template(mlflow_kubernetes: ModuleType, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("KUBE_MLFLOW_TRACKING_URI", raising=False)
    project = load_project(str(KUBERNETES))
    command = get_entry_point_command(project, "main", {"alpha": "0.3", "evaluation.baseline_margin": "0.4"}, None)
    image = docker_image()
    env = {"MLFLOW_RUN_ID": "0123abcd", "MLFLOW_TRACKING_URI": "https://mlflow.example.com", "MLFLOW_EXPERIMENT_ID": "7"}
    job = mlflow_kubernetes._get_kubernetes_job_definition(
        project.name, image, FAKE_DIGEST, mlflow_kubernetes._get_run_command(command), env, job_template()
    )
    name = job["metadata"]["name"]
    assert re.fullmatch(r"mlflow-pipeline-\d{4}(-\d\d){5}-\d{6}", name)
    assert len(name) <= 63  # the Job's name is also its pods' job-name label
    main = container(job)
    assert DNS_LABEL.fullmatch(main["name"])
    assert main["image"] == f"{image}@{FAKE_DIGEST}"
    argv = main["command"]
    assert argv[:4] == ["python", "-m", "steps", "main"]
    pairs = set(itertools.pairwise(argv))
    assert {("--alpha", "0.3"), ("--evaluation.baseline_margin", "0.4")} <= pairs  # -P values as given; defaults come from conf/
    assert "--data_uri" not in argv
    values = {entry["name"]: entry.get("value") for entry in main["env"]}
    assert len(values) == len(main["env"])
    assert {name: values[name] for name in MLFLOW_JOB_ENV} == env
    assert as_kubernetes_model(job) == job


def test_kube_mlflow_tracking_uri_gives_the_pod_another_address_for_the_same_server(
    mlflow_kubernetes: ModuleType, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("KUBE_MLFLOW_TRACKING_URI", "http://mlflow.mlflow.svc.cluster.local:5000")
    env = {"MLFLOW_RUN_ID": "0123abcd", "MLFLOW_TRACKING_URI": "https://mlflow.example.com", "MLFLOW_EXPERIMENT_ID": "7"}
    job = mlflow_kubernetes._get_kubernetes_job_definition("mlflow-pipeline", "image", FAKE_DIGEST, ["python"], env, job_template())
    names = [entry["name"] for entry in container(job)["env"]]
    assert len(names) == len(set(names))
    values = {entry["name"]: entry.get("value") for entry in container(job)["env"]}
    assert values["MLFLOW_TRACKING_URI"] == "http://mlflow.mlflow.svc.cluster.local:5000"


def test_parameter_values_reach_the_pod_verbatim_only_when_shell_safe(mlflow_kubernetes: ModuleType):
    # MLflow 3.17 shell-quotes each word of the command, then hands the words to the container
    # without a shell: a value with a space or a quote arrives with literal quotes (docs/kubernetes.md says so).
    project = load_project(str(KUBERNETES))
    safe = mlflow_kubernetes._get_run_command(get_entry_point_command(project, "rollback", {"reason": "bad-data,2025-01-02"}, None))
    assert safe[-2:] == ["--reason", "bad-data,2025-01-02"]
    spaced = mlflow_kubernetes._get_run_command(get_entry_point_command(project, "rollback", {"reason": "bad data"}, None))
    assert spaced[-2:] == ["--reason", "'bad data'"]


def test_kubernetes_mlproject_is_the_root_project_with_a_docker_env():
    root, kube = read_yaml(PROJECT_ROOT / "MLproject"), read_yaml(KUBERNETES / "MLproject")
    assert "python_env" in root  # `mlflow run .` keeps its environment managers
    assert kube["entry_points"] == root["entry_points"], "copy the root MLproject's entry_points block into kubernetes/MLproject"
    assert kube["name"] == root["name"]
    assert set(kube) == {"name", "docker_env", "entry_points"}
    # The Kubernetes backend ignores docker_env's volumes and environment: settings go in the Job template.
    assert set(kube["docker_env"]) == {"image"}
    project = load_project(str(KUBERNETES))
    assert project.docker_env == {"image": docker_image()}
    root_project = load_project(str(PROJECT_ROOT))
    assert root_project.docker_env is None
    # What `mlflow run <dir> --backend kubernetes` checks first: the root project cannot pass it (docs/kubernetes.md).
    validate_docker_env(project)
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'get'"):
        validate_docker_env(root_project)
    for name, entry_point in root["entry_points"].items():
        assert project.get_entry_point(name).command == root_project.get_entry_point(name).command
        assert set(project.get_entry_point(name).parameters) == set(entry_point.get("parameters", {}))


def test_the_docs_give_the_commands_these_files_work_with():
    page = (PROJECT_ROOT / "docs/kubernetes.md").read_text(encoding="utf-8")
    assert " ".join(README_COMMAND) + " -P alpha=0.3" in page
    assert f"docker build -f kubernetes/Dockerfile -t {docker_image()} ." in page
    assert "pip install -r kubernetes/launcher-requirements.txt" in page
    assert f"kubectl -n {job_template()['metadata']['namespace']} create secret generic {SECRET_NAME}" in page


def test_dockerfile_installs_the_pinned_requirements_on_the_pinned_python():
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    python_version = read_yaml(PROJECT_ROOT / "python_env.yaml")["python"]
    assert instructions[0] == ("FROM", f"python:{python_version}-slim-bookworm")
    install = keywords.index("RUN")
    assert instructions[install] == ("RUN", "python -m pip install -r requirements.txt")
    assert (["requirements.txt"], "./") in dockerfile_copies()[:1]  # first: code changes keep the installed layer
    requirements = [line for line in (PROJECT_ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines() if line[:1].isalpha()]
    assert requirements
    assert all(re.fullmatch(r"[\w.-]+(\[[\w,]+\])?==[\w.]+", line) for line in requirements), requirements  # every one pinned
    assert dict(instructions)["USER"].isdigit()  # runAsNonRoot in the Job template needs a numeric user
    assert dict(instructions)["USER"] != "0"


def test_dockerfile_copies_everything_the_pipeline_reads(tmp_path: Path):
    for sources, _ in dockerfile_copies():
        for source in sources:
            assert (PROJECT_ROOT / source).exists(), source
    lay_out_image(tmp_path)
    needed = ["MLproject", "main.py", "conf/pipeline.yaml", "conf/schema.yaml", "data/example_data.csv", *ENV_FILES]
    needed += [read_yaml(PROJECT_ROOT / "MLproject")["python_env"]]
    # Every module of the project that the driver or a step imports (the step cache's own list).
    for module in [PROJECT_ROOT / "main.py", *(PROJECT_ROOT / "steps").glob("*.py")]:
        needed += [str(path.relative_to(PROJECT_ROOT)) for path in project_imports(module)]
    assert not [name for name in needed if not (tmp_path / name).is_file()]
    assert read_yaml(tmp_path / "MLproject") == read_yaml(PROJECT_ROOT / "MLproject")  # not kubernetes/MLproject


def test_launcher_requirements_pin_the_kubernetes_client_that_was_tested():
    from importlib.metadata import version  # noqa: PLC0415

    lines = [line for line in LAUNCHER_REQUIREMENTS.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    assert lines[0] == "-r ../requirements.txt"
    (pin,) = [line for line in lines if line.startswith("kubernetes==")]
    assert pin == f"kubernetes=={version('kubernetes')}"


# --- end to end, with stand-ins for the Docker engine and the Kubernetes API ------------------
