"""Which former champion stands in when the champion alias is gone, and what register makes of it (no store)."""

from __future__ import annotations

from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

from steps import register
from steps.mlflow_io.champions import ChampionChoice, Survivor, became_champion_at, demoted_by_rollback, first_surviving, former_champions

T1, T2, T3, T4 = (f"2026-12-01T10:00:0{n}+00:00" for n in range(1, 5))


def version(number: int, stage: str = "None", **tags: str) -> ModelVersion:
    """A model version as the registry returns it, with tags given as ``promoted_at=...`` etc."""
    names = {"promoted_at": "champion.promoted_at", "restored_at": "champion.restored_at", "rolled_back": "champion.rolled_back.at"}
    entries = [ModelVersionTag(names[key], value) for key, value in tags.items()]
    return ModelVersion("m", str(number), creation_timestamp=number, current_stage=stage, source=f"models:/m-{number}", tags=entries)


def numbers(versions) -> list[str]:
    return [v.version for v in versions]


def test_former_champions_are_newest_first_by_when_they_last_became_champion():
    history = [
        version(1, promoted_at=T1, restored_at=T4),  # promoted first, made champion again by a rollback last
        version(2, promoted_at=T2),
        version(3),  # never champion (rejected)
        version(4, promoted_at=T3, rolled_back=T4),  # demoted by that rollback
    ]
    assert became_champion_at(history[0]) == T4 and became_champion_at(history[2]) == ""
    assert demoted_by_rollback(history[3]) and not demoted_by_rollback(history[0])
    assert numbers(former_champions(history)) == ["1", "2"]


def test_a_version_restored_after_its_rollback_counts_again():
    assert numbers(former_champions([version(1, promoted_at=T1, rolled_back=T2, restored_at=T3)])) == ["1"]


def test_promotions_in_the_same_second_are_ordered_by_version():
    assert numbers(former_champions([version(2, promoted_at=T1), version(3, promoted_at=T1)])) == ["3", "2"]


def test_before_keeps_the_champions_a_version_may_have_replaced():
    history = [version(1, promoted_at=T1), version(2, promoted_at=T2), version(4, promoted_at=T3)]
    current = history[2]
    assert numbers(former_champions(history, before=current)) == ["2", "1"]
    # Restored since: what it replaced is still what came before its promotion.
    restored = version(2, promoted_at=T2, restored_at=T4)
    assert numbers(former_champions([*history[:1], restored, history[2]], before=restored)) == ["1"]


def test_first_surviving_passes_over_versions_whose_files_are_gone_and_says_so():
    newest_first = [version(3, promoted_at=T3), version(2, promoted_at=T2), version(1, promoted_at=T1)]
    gone = {"3": "/store/m-3/artifacts"}
    survivor = first_surviving(newest_first, lambda v: gone.get(v.version))
    assert survivor.version.version == "2"
    assert survivor.passed_over == ("version 3: its files are gone from /store/m-3/artifacts",)
    nothing = first_surviving(newest_first, lambda v: f"/store/m-{v.version}")
    assert nothing.version is None and len(nothing.passed_over) == 3


def test_an_archived_former_champion_is_used_with_a_warning():
    assert Survivor(version(1, stage="Archived", promoted_at=T1)).archived == (
        "version 1 is in MLflow's deprecated 'Archived' stage; it is used all the same"
    )
    assert Survivor(version(1, promoted_at=T1)).archived == ""


def test_the_note_says_what_stands_in_for_the_champion():
    former = version(1, promoted_at=T1)
    assert ChampionChoice(former, by_alias=True).note == ""
    assert ChampionChoice(None).note == ""  # never a champion: the gate's "no champion yet"
    survivor = Survivor(former, ("version 2: its files are gone from /x",))
    assert ChampionChoice(former, history=True, survivor=survivor).note == (
        "no champion alias; compared with version 1, the newest surviving former champion (version 2: its files are gone from /x)"
    )
    archived = version(1, stage="Archived", promoted_at=T1)
    assert ChampionChoice(archived, history=True, survivor=Survivor(archived)).note.endswith("stage; it is used all the same")
    none_left = ChampionChoice(None, history=True, survivor=Survivor(None, ("version 1: its files are gone from /x",)))
    assert none_left.note == (
        "no champion alias, and no former champion survives (version 1: its files are gone from /x): no champion to compare with"
    )


def test_register_promotes_over_the_former_champion_evaluate_compared_with():
    verdict = register.Verdict(passed=True, reason="better than champion version 1", compared_with="1")
    former = version(1, promoted_at=T1)
    assert register.decide(verdict, former, former=True) == (register.PROMOTED, "better than champion version 1")
    # Another former champion now (the one compared with was deleted meanwhile): not comparable, so not promoted.
    decision, reason = register.decide(verdict, version(0, promoted_at=T1), former=True)
    assert decision == register.STALE
    assert "champion is now version 0 (no champion alias: the newest surviving former champion)" in reason


def test_a_long_history_of_lost_files_is_named_briefly():
    lost = tuple(f"version {n}: its files are gone from /x/{n}" for n in range(9, 4, -1))
    assert Survivor(None, lost).gone == f" ({'; '.join(lost[:3])}; and 2 more)"
    assert Survivor(None).gone == ""
