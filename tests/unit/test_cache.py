"""Cache keys: what they depend on, and what they must not depend on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from steps import featurize
from steps.orchestration.cache import KEY_PARTS, cache_key, code_digest, env_digest, project_imports
from tests.conftest import PROJECT_ROOT, make_frame


def copy_project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(PROJECT_ROOT / "steps", root / "steps", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("MLproject", "requirements.txt", "python_env.yaml"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    return root


def _edit(path: Path) -> None:
    with path.open("a") as handle:
        handle.write("\n# an edit\n")


def test_code_digest_follows_project_imports_only(tmp_path):
    root = copy_project(tmp_path)
    train_modules = {str(p.relative_to(root)) for p in project_imports(root / "steps" / "train.py", root)}
    used = {"train.py", "core/model.py", "core/features.py", "core/schema.py", "mlflow_io/artifacts.py", "mlflow_io/step_run.py"}
    assert {f"steps/{name}" for name in used} <= train_modules
    # Entry points import no other entry point, and no orchestration.
    assert not {m for m in train_modules if m.startswith("steps/orchestration/")}
    assert "steps/featurize.py" not in train_modules and "steps/register.py" not in train_modules

    steps = ("ingest", "featurize", "train", "register")
    before = {step: code_digest(step, root) for step in steps}
    _edit(root / "steps" / "featurize.py")
    after = {step: code_digest(step, root) for step in steps}
    assert after["featurize"] != before["featurize"]
    assert after["train"] == before["train"] == code_digest("train", PROJECT_ROOT)  # train no longer imports featurize
    _edit(root / "steps" / "core" / "features.py")
    shared = {step: code_digest(step, root) for step in steps}
    assert shared["featurize"] != after["featurize"] and shared["train"] != after["train"]
    assert shared["ingest"] == before["ingest"] and shared["register"] == before["register"]


def test_plumbing_edits_reuse_every_step(tmp_path):
    """The runtime layer (signals, locks, process start) and orchestration (config, runner, the
    sweep) decide how and when steps run, never what they compute: editing them keeps every key."""
    root = copy_project(tmp_path)
    steps = ("ingest", "featurize", "train", "evaluate", "register", "predict", "rollback", "compare")
    before = {step: code_digest(step, root) for step in steps}
    for plumbing in ("runtime/signals.py", "runtime/tracking.py", "runtime/lock.py", "orchestration/config.py", "orchestration/runner.py"):
        _edit(root / "steps" / plumbing)
    (root / "main.py").write_text("# the driver\n")
    _edit(root / "steps" / "sweep.py")
    assert {step: code_digest(step, root) for step in steps} == before


def test_code_digest_includes_the_entry_point(tmp_path):
    root = copy_project(tmp_path)
    before = code_digest("train", root)
    mlproject = root / "MLproject"
    mlproject.write_text(
        mlproject.read_text().replace("command: python -m steps train\n", "command: python -m steps train --max_iter 10\n")
    )
    assert code_digest("train", root) != before
    assert code_digest("ingest", root) == code_digest("ingest", PROJECT_ROOT)  # other entry points are unaffected


def test_env_digest_changes_with_the_pins(tmp_path):
    root = copy_project(tmp_path)
    before = env_digest(root)
    (root / "requirements.txt").write_text((root / "requirements.txt").read_text().replace("scikit-learn==", "scikit-learn==0"))
    assert env_digest(root) != before


def test_key_parts_are_separate_and_input_uris_do_not_count():
    base = cache_key("train", {"alpha": 0.3}, {"train_uri": "d1"}, code="c", env="e")
    assert set(base.parts) == set(KEY_PARTS)
    assert cache_key("train", {"alpha": "0.3"}, {"train_uri": "d1"}, code="c", env="e").value == base.value
    changed = cache_key("train", {"alpha": 0.5}, {"train_uri": "d1"}, code="c", env="e")
    assert [p for p in KEY_PARTS if changed.parts[p] != base.parts[p]] == ["params"]
    assert cache_key("train", {"alpha": 0.3}, {"train_uri": "d2"}, code="c", env="e").parts["inputs"] != base.parts["inputs"]
    assert cache_key("evaluate", {"alpha": 0.3}, {"train_uri": "d1"}, code="c", env="e").value != base.value


DIGEST_IN_A_NEW_PROCESS = """
import sys
from steps import featurize
from steps.core.schema import parse_schema
from tests.conftest import SMALL_SCHEMA, make_frame
print(featurize.transformer_digest(featurize.run(make_frame(rows=20), parse_schema(SMALL_SCHEMA, "s")).transformer))
"""


def test_transformer_digest_is_the_same_for_the_same_fit_in_any_process(small_schema):
    transformer = featurize.run(make_frame(rows=20), small_schema).transformer
    digest = featurize.transformer_digest(transformer)
    other = subprocess.run([sys.executable, "-c", DIGEST_IN_A_NEW_PROCESS], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert other.stdout.strip() == digest
    refit = featurize.run(make_frame(rows=20, seed=1), small_schema).transformer
    assert featurize.transformer_digest(refit) != digest


def test_the_cards_template_is_code_of_every_step_that_draws_a_card(tmp_path):
    root = copy_project(tmp_path)
    before = {step: code_digest(step, root) for step in ("ingest", "train")}
    _edit(root / "steps" / "mlflow_io" / "templates" / "card.html.j2")
    assert all(code_digest(step, root) != digest for step, digest in before.items())
