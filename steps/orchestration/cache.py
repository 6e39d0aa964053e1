"""The content-addressed step cache: what a step's result depends on, and finding a reusable run.

A step's cache key digests four parts, each kept as its own tag so a plan can say which changed:

- ``code``: the step's module and every project module it imports (transitively), plus its
  MLproject entry point;
- ``params``: the step's resolved parameters other than its input URIs;
- ``inputs``: the content digests of its input artifacts (recorded by the steps that logged
  them), never their URIs, so the same data under another run or path is the same input;
- ``env``: the pinned environment (requirements.txt and python_env.yaml).
"""

from __future__ import annotations

import ast
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from steps.core.conf import PROJECT_ROOT
from steps.mlflow_io.artifacts import sha256_bytes, sha256_file
from steps.mlflow_io.champions import has_model_files, missing_files
from steps.mlflow_io.contracts import Tag

KEY_PARTS = ("code", "params", "inputs", "env")
ENV_FILES = ("requirements.txt", "python_env.yaml")


def _digest_json(value: object) -> str:
    return sha256_bytes(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


def project_imports(module_path: Path, root: Path = PROJECT_ROOT) -> set[Path]:
    """``module_path`` and every module of the project it imports, directly or not."""
    seen: set[Path] = set()
    pending = [module_path.resolve()]
    while pending:
        path = pending.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        for name in _imported_names(path, *_version(path)):
            candidate = root.joinpath(*name.split("."))
            pending += [candidate.with_suffix(".py"), candidate / "__init__.py"]
    return seen


def _version(path: Path) -> tuple[int, int]:
    """What changes when the file does: the cache below reparses an edited file."""
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=512)
def _imported_names(path: Path, mtime_ns: int, size: int) -> tuple[str, ...]:
    """The modules ``path`` imports (absolute imports), parsed once per version of the file:
    the driver asks for every step, and parsing the project five times cost ~0.6 s a run."""
    del mtime_ns, size  # part of the cache key only
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return tuple(names)


def code_digest(step: str, root: Path = PROJECT_ROOT) -> str:
    """Digest of the code that runs for ``step``: its modules and its MLproject entry point.

    The runtime layer (steps/runtime/: how a process starts, stops and is signalled) is left
    out: it decides how a step runs, never what it computes, so editing it reuses every step.
    """
    runtime = root / "steps" / "runtime"
    modules = [path for path in project_imports(root / "steps" / f"{step}.py", root) if runtime not in path.parents]
    # Files a module reads beside it (the cards' template) are code too.
    resources = {path for module in modules if (module.parent / "templates").is_dir() for path in (module.parent / "templates").rglob("*")}
    files = sorted({*modules, *(path for path in resources if path.is_file())})
    parts = {str(path.relative_to(root)): sha256_file(path) for path in files}
    parts["MLproject"] = _digest_json(_entry_points(root / "MLproject", *_version(root / "MLproject"))[step])
    return _digest_json(parts)


@functools.lru_cache(maxsize=8)
def _entry_points(path: Path, mtime_ns: int, size: int) -> dict:
    del mtime_ns, size  # part of the cache key only
    return yaml.safe_load(path.read_text(encoding="utf-8"))["entry_points"]


def env_digest(root: Path = PROJECT_ROOT) -> str:
    return _digest_json({name: sha256_file(root / name) for name in ENV_FILES})


@dataclass(frozen=True)
class CacheKey:
    """A step's cache key and the digests of its parts."""

    step: str
    parts: dict[str, str]

    @property
    def value(self) -> str:
        return _digest_json({"step": self.step, **self.parts})

    def tags(self) -> dict[str, str]:
        return {Tag.CACHE_KEY: self.value, **{Tag.CACHE_PART + name: digest for name, digest in self.parts.items()}}

    def changed_parts(self, run: Run) -> list[str]:
        """The parts of this key that differ from the key ``run`` was recorded with."""
        return [name for name in KEY_PARTS if run.data.tags.get(Tag.CACHE_PART + name) != self.parts[name]]


def cache_key(step: str, params: Mapping[str, object], input_digests: Mapping[str, str], code: str, env: str) -> CacheKey:
    return CacheKey(
        step=step,
        parts={
            "code": code,
            "params": _digest_json({name: str(value) for name, value in params.items()}),
            "inputs": _digest_json(dict(input_digests)),
            "env": env,
        },
    )


def output_digests(run: Run) -> dict[str, str]:
    """The content digests a step recorded for its outputs, by output name."""
    return {k.removeprefix(Tag.DIGEST): v for k, v in run.data.tags.items() if k.startswith(Tag.DIGEST)}


def _output_exists(client: MlflowClient, run: Run, uri: str) -> bool:
    """Whether an output URI of ``run`` still resolves to something: its row *and* its files.

    A store whose artifacts were deleted keeps every row; a step reused from it would hand on a
    model or file that no one can load.
    """
    try:
        if uri.startswith("runs:/"):
            run_id, _, path = uri.removeprefix("runs:/").partition("/")
            parent = str(Path(path).parent) if "/" in path else ""
            return any(a.path == path for a in client.list_artifacts(run_id, parent or None))
        if uri.startswith("models:/") and "@" in uri:
            return True  # an alias is a pointer that may move on, not an output that can vanish
        if uri.startswith("models:/m-"):
            return has_model_files(client, uri)  # one listing of the logged model's files
        if uri.startswith("models:/"):
            name, _, version = uri.removeprefix("models:/").rpartition("/")
            return missing_files(client, client.get_model_version(name, version)) is None
    except MlflowException:
        return False
    return True


def find_reusable_run(client: MlflowClient, experiment_id: str, key: CacheKey, outputs_of) -> Run | None:
    """The newest FINISHED run of this step with ``key`` whose outputs all still exist.

    ``outputs_of(run)`` gives a run's recorded outputs (name -> URI or value).
    """
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{Tag.CACHE_KEY}` = '{key.value}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    for run in runs:
        uris = [value for value in outputs_of(run).values() if ":/" in value]
        if all(_output_exists(client, run, uri) for uri in uris):
            return run
    return None


def last_run_of(client: MlflowClient, experiment_id: str, step: str) -> Run | None:
    """The newest FINISHED run of ``step`` that recorded a cache key (to explain a miss)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{Tag.STEP}` = '{step}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=5,
    )
    return next((r for r in runs if Tag.CACHE_KEY in r.data.tags), None)


def miss_reason(
    client: MlflowClient, experiment_id: str, step: str, key: CacheKey | None, *, unknown: list[str], forced: bool, use_cache: bool
) -> str:
    """Why ``step`` runs instead of being reused, in words (for the summary's "why" column)."""
    if forced:
        return "selected with -P steps"
    if key is None:
        return f"the content of its inputs ({', '.join(unknown)}) is not known yet"
    if not use_cache:
        return "use_cache=false"
    previous = last_run_of(client, experiment_id, step)
    if previous is None:
        return "no earlier run of this step"
    changed = key.changed_parts(previous)
    if changed:
        return f"{' and '.join(changed)} changed since run {previous.info.run_id}"
    return f"the outputs of run {previous.info.run_id} are gone"
