"""Lost artifacts and deleted versions against a real (temporary) store, in this process: the cache,
the champion a candidate is compared with, and rollback."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from steps import register, rollback
from steps.core.errors import InputError
from steps.mlflow_io.champions import champion_to_compare, current_champion, has_model_files
from steps.mlflow_io.registry import alias_version
from steps.orchestration.cache import cache_key, find_reusable_run, miss_reason
from tests.conftest import fit_model, log_model, make_frame

BY = {"user": "tester", "run_id": "run123"}
NAME = "unit-model"


def _lose_files(model_uri: str) -> None:
    """What deleting the artifact store does to one logged model: its row stays, its files go."""
    shutil.rmtree(Path(MlflowClient().get_logged_model(model_uri.removeprefix("models:/")).artifact_location))


def _register(model_uri: str, passed: bool = True, compared_with: str | None = None) -> register.RegisterOutputs:
    verdict = register.Verdict(passed=passed, reason="because", compared_with=compared_with)
    return register.run(MlflowClient(), model_uri, NAME, verdict, tags={"evaluation.passed": str(passed).lower()}, by=BY)


@pytest.fixture
def fitted(small_schema):
    return fit_model(make_frame(rows=60), small_schema, alpha=0.1, l1_ratio=0.5)


@pytest.fixture
def new_model(tracking_uri, fitted):
    def log() -> str:
        with mlflow.start_run():
            return log_model(fitted).model_uri

    return log


def test_a_cached_model_whose_files_are_gone_is_not_reused_and_the_miss_says_why(tracking_uri, fitted):
    client = MlflowClient()
    key = cache_key("train", {"alpha": 0.1}, {"train_uri": "d1"}, code="c", env="e")
    with mlflow.start_run() as run:
        model_uri = log_model(fitted).model_uri
        mlflow.set_tags({**key.tags(), "pipeline.step": "train"})
    experiment = run.info.experiment_id
    reusable = find_reusable_run(client, experiment, key, lambda r: {"model_uri": model_uri})
    assert reusable is not None and reusable.info.run_id == run.info.run_id
    assert has_model_files(client, model_uri)

    _lose_files(model_uri)
    assert client.get_logged_model(model_uri.removeprefix("models:/")) is not None  # the row is still there
    assert not has_model_files(client, model_uri)
    assert find_reusable_run(client, experiment, key, lambda r: {"model_uri": model_uri}) is None
    why = miss_reason(client, experiment, "train", key, unknown=[], forced=False, use_cache=True)
    assert why == f"the outputs of run {run.info.run_id} are gone"


def test_a_champion_whose_files_are_gone_is_one_line_naming_the_fix(new_model):
    first, second = new_model(), new_model()
    _register(first)  # 1
    _register(second, compared_with="1")  # 2, the champion
    _lose_files(second)
    client = MlflowClient()
    with pytest.raises(InputError) as raised:
        champion_to_compare(client, NAME, new_model())
    message = str(raised.value)
    assert message.startswith(f"the champion of '{NAME}', version 2, has lost its files (no MLmodel at ")
    assert message.endswith("roll back to version 1, the newest earlier champion whose files exist: mlflow run . -e rollback -P version=1")

    _lose_files(first)
    with pytest.raises(
        InputError, match=r"no earlier champion has its files: remove the alias with mlflow run \. -e rollback -P version=none"
    ):
        champion_to_compare(client, NAME, new_model())
    # The advertised fix: no alias, and no former champion with its files: the next good run is compared with none.
    out = rollback.run(client, NAME, rollback.REMOVE, "files lost", by=BY)
    assert (out.demoted.version, out.champion) == ("2", None)
    assert alias_version(client, NAME, "champion") is None
    comparison = champion_to_compare(client, NAME, new_model())
    # Removed on purpose: no former champion stands in any more (not even one with its files).
    assert (comparison.uri, comparison.note) == ("", "")
    assert _register(new_model()).decision == "promoted"


def test_without_the_alias_the_newest_surviving_former_champion_is_compared_and_restored(new_model):
    client = MlflowClient()
    _register(new_model())  # 1
    _register(new_model(), compared_with="1")  # 2
    _register(new_model(), compared_with="2")  # 3, the champion
    client.delete_model_version(NAME, "3")  # takes the alias with it
    assert alias_version(client, NAME, "champion") is None
    comparison = champion_to_compare(client, NAME, new_model())
    assert comparison.uri == f"models:/{NAME}/2"
    assert comparison.note == "no champion alias; compared with version 2, the newest surviving former champion"

    # A former champion whose files are gone does not stand in; an archived one does, with a warning.
    _lose_files(client.get_model_version(NAME, "2").source)
    with pytest.warns(FutureWarning, match="deprecated"):  # stages are, but a store may still have them
        client.transition_model_version_stage(NAME, "1", "Archived")
    choice = current_champion(client, NAME)
    assert choice.number == "1" and not choice.by_alias
    assert "(version 2: its files are gone from " in choice.note and choice.note.endswith("it is used all the same")

    # register agrees with evaluate: the candidate compared with version 1 is promoted over it, not left "not promoted".
    promoted = _register(new_model(), compared_with="1")
    assert (promoted.decision, promoted.champion, promoted.previous_champion, promoted.former_champion) == ("promoted", "4", None, "1")
    assert client.get_model_version(NAME, "4").tags["champion.previous"] == "1"
    assert "version 1, the newest surviving former champion, stood in" in register._before(promoted)


def test_rollback_without_the_alias_restores_the_newest_surviving_former_champion(new_model):
    client = MlflowClient()
    with pytest.raises(InputError, match=f"registered model '{NAME}' has no champion: nothing to roll back"):
        rollback.run(client, NAME, None, "why", by=BY)
    _register(new_model())  # 1
    _register(new_model(), compared_with="1")  # 2
    client.delete_model_version(NAME, "2")
    out = rollback.run(client, NAME, None, "champion deleted", by=BY)
    assert (out.demoted, out.champion.version) == (None, "1")
    assert out.notes == ("no champion alias: making version 1, the newest surviving former champion, champion again",)
    assert alias_version(client, NAME, "champion") == "1"
    assert "champion.restored_at" in client.get_model_version(NAME, "1").tags

    client.delete_registered_model_alias(NAME, "champion")
    _lose_files(client.get_model_version(NAME, "1").source)
    with pytest.raises(InputError, match=r"no champion alias, and no former champion survives \(version 1: its files are gone from "):
        rollback.run(client, NAME, None, "again", by=BY)


def test_rollback_walks_past_a_deleted_previous_champion_and_refuses_a_version_without_files(new_model):
    client = MlflowClient()
    _register(new_model())  # 1
    _register(new_model(), compared_with="1")  # 2
    _register(new_model(), compared_with="2")  # 3, previous 2
    client.delete_model_version(NAME, "2")
    out = rollback.run(client, NAME, None, "bad", by=BY)
    assert (out.demoted.version, out.champion.version) == ("3", "1")
    assert out.notes == (
        "version 2, the one version 3 replaced, was deleted: rolling back further, to version 1, the newest surviving champion before it",
    )
    # Version 3 was rolled back: it is no former champion to fall back on, and a version without files is refused.
    _lose_files(client.get_model_version(NAME, "3").source)
    with pytest.raises(InputError, match=f"{NAME} version 3 has lost its files \\(no MLmodel at .*\\): not making it the champion"):
        rollback.run(client, NAME, "3", "try it", by=BY)
    with pytest.raises(InputError, match=r"-P version: expected a model version number \(1, 2, \.\.\.\) or 'none'"):
        rollback.parse_version("latest")
    assert rollback.parse_version("None") == rollback.REMOVE
