"""Branch ownership in the fleet's marks file (store/branch_marks.py), and the old config marks.

Ownership decides which branches fleet may delete. The attacker cases: a marks file naming a
user's branch, another fleet's file claiming this fleet's branch, the file deleted,
symlinked or garbled. In each, no branch fleet does not own is deleted. The move of old
`branch.<b>.fleetOwner` keys out of the config, and a crash in the middle of it
(failpoint `marks:after-file`), is in tests/test_crash.py's sweep (scenario `migrate`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import agents
import pytest
from conftest import branch_marks, fleet, git, status, wait_until

from reconciler.act.branch_marks import migrate_marks
from reconciler.errors import FleetError
from reconciler.observe.gitrepo import GitRepo
from reconciler.store.branch_marks import marks_path, read_fleet_marks, write_fleet_marks

A, B = "fleet/t/w-a00", "fleet/t/w-a01"


def two_idle_agents(repo: Path, items: str = "a00, a01") -> Path:
    """Two agents that exit 0 without committing: their branches are at main, safe to prune."""
    return agents.for_each(repo, "crash", "0", items=items)


def converged(repo: Path) -> Path:
    path = two_idle_agents(repo)
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_until(lambda: all(r["phase"] == "Succeeded" for r in status(repo).values()))
    return path


def branches(repo: Path) -> set[str]:
    return set(git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split())


def config_marks(repo: Path) -> list[str]:
    return [line for line in git(repo, "config", "--local", "--list").splitlines() if ".fleet" in line]


def test_marks_are_in_the_fleets_file_not_the_repo_config(repo: Path) -> None:
    converged(repo)
    assert branch_marks(repo) == {A: False, B: False}
    assert config_marks(repo) == []
    assert GitRepo(repo).branch_marks() == ({A: "t", B: "t"}, frozenset())


def test_old_config_marks_are_read_and_moved_into_the_file(repo: Path) -> None:
    converged(repo)
    marks_path(repo / ".git", "t").unlink()  # as a repo fleet marked before the file existed
    for branch in (A, B):
        git(repo, "config", f"branch.{branch}.fleetOwner", "t")
    git(repo, "config", f"branch.{A}.fleetProtect", "true")
    assert GitRepo(repo).branch_marks() == ({A: "t", B: "t"}, frozenset({A}))
    assert fleet("diff", "fleet.yaml", cwd=repo).returncode == 0  # still the fleet's: nothing to do
    assert migrate_marks(GitRepo(repo), "t") == 2  # what every pass does first, under the fleet lock
    assert branch_marks(repo) == {A: True, B: False}
    assert config_marks(repo) == []
    assert migrate_marks(GitRepo(repo), "t") == 0
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    assert branch_marks(repo) == {A: False, B: False}  # protect follows the file, which does not say it


def prune_a00(repo: Path, path: Path) -> tuple[int, str]:
    path.write_text(path.read_text().replace("[a00, a01]", "[a01]"))
    proc = fleet("apply", "fleet.yaml", "--yes", "--grace", "1", cwd=repo)
    return proc.returncode, proc.stdout + proc.stderr


def test_a_marks_file_naming_a_users_branch_does_not_make_it_fleets(repo: Path) -> None:
    path = converged(repo)
    git(repo, "branch", "feature")  # the user's, at main: nothing at stake, deletable if it were owned
    git(repo, "branch", "fleet/t/by-hand")  # under the prefix, made by hand: no agent's, unmarked
    write_fleet_marks(repo / ".git", "t", {A: False, B: False, "feature": False, "main": False})
    code, out = prune_a00(repo, path)
    assert code != 0 and "which a fleet owns" in out, out  # `main` claimed: the base check refuses the pass
    assert {"feature", "fleet/t/by-hand", A, B} <= branches(repo)
    write_fleet_marks(repo / ".git", "t", {A: False, B: False, "feature": False})
    code, out = prune_a00(repo, path)
    assert code == 0, out
    assert A not in branches(repo)  # the pass did prune what it owns
    assert {"feature", "fleet/t/by-hand", "main", B} <= branches(repo)
    rows = status(repo)
    assert "feature" not in rows and "by-hand" not in rows


def test_a_branch_another_fleet_also_claims_is_owned_by_neither_and_kept(repo: Path) -> None:
    path = converged(repo)
    write_fleet_marks(repo / ".git", "other", {A: False})
    assert GitRepo(repo).owned_branches() == {B: "t"}
    code, out = prune_a00(repo, path)
    assert code == 0, out
    assert not (repo / ".fleet" / "worktrees" / "w-a00").exists()  # its tree was the fleet's (its marker)
    assert A in branches(repo)  # the branch two fleets claim stays


def test_a_deleted_marks_file_leaves_every_branch_unowned_and_kept(repo: Path) -> None:
    path = converged(repo)
    marks_path(repo / ".git", "t").unlink()
    code, out = prune_a00(repo, path)
    assert code == 0, out
    assert {A, B} <= branches(repo)  # absent mark: not owned, never deleted


def _symlinked(repo: Path) -> None:
    real = repo.parent / "elsewhere.json"
    marks = marks_path(repo / ".git", "t")
    real.write_text(marks.read_text())
    marks.unlink()
    os.symlink(real, marks)


def _garbled(repo: Path) -> None:
    marks_path(repo / ".git", "t").write_text('{"apiVersion": "fleet/v1alpha1", "kind": "BranchMarks", "fl')


def _wrong_fleet(repo: Path) -> None:
    data = json.loads(marks_path(repo / ".git", "t").read_text())
    marks_path(repo / ".git", "t").write_text(json.dumps({**data, "fleet": "other"}))


def _directory_symlinked(repo: Path) -> None:
    d = marks_path(repo / ".git", "t").parent
    d.rename(repo.parent / "marks-elsewhere")
    os.symlink(repo.parent / "marks-elsewhere", d)


@pytest.mark.parametrize("spoil", [_symlinked, _garbled, _wrong_fleet, _directory_symlinked],
                         ids=["symlink", "garbled", "wrong-fleet", "symlinked-dir"])
def test_a_bad_marks_file_is_a_located_error_and_nothing_is_deleted(repo: Path, spoil) -> None:  # type: ignore[no-untyped-def]
    path = converged(repo)
    spoil(repo)
    code, out = prune_a00(repo, path)
    assert code == 1, out
    assert str(marks_path(repo / ".git", "t").parent) in out and "hint:" in out, out
    assert {A, B} <= branches(repo)
    assert (repo / ".fleet" / "worktrees" / "w-a00").is_dir()  # the pass stopped before it planned
    diff = fleet("diff", "fleet.yaml", cwd=repo)
    assert diff.returncode == 2, diff.stdout + diff.stderr
    assert str(marks_path(repo / ".git", "t").parent) in diff.stdout + diff.stderr


@pytest.mark.parametrize(("text", "why"), [
    ("[]", "not a branch-marks file"),
    ('{"apiVersion": "fleet/v1alpha1", "kind": "BranchMarks", "fleet": "t", "branches": []}', "not a mapping"),
    ('{"apiVersion": "fleet/v1alpha1", "kind": "BranchMarks", "fleet": "t", "branches": {"a b": {}}}', "bad entry"),
    ('{"apiVersion": "fleet/v1alpha1", "kind": "BranchMarks", "fleet": "t", "branches": {"x": {"protect": 1}}}',
     "bad entry"),
    ('{"apiVersion": "fleet/v1alpha1", "kind": "BranchMarks", "fleet": "u", "branches": {}}', "names fleet 'u'"),
])
def test_the_marks_file_is_read_strictly(tmp_path: Path, text: str, why: str) -> None:
    path = marks_path(tmp_path, "t")
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(FleetError) as err:
        read_fleet_marks(tmp_path, "t")
    assert why in err.value.message and str(path) in err.value.message


def test_marks_round_trip_and_absent_is_empty(tmp_path: Path) -> None:
    assert read_fleet_marks(tmp_path, "t") == {}
    write_fleet_marks(tmp_path, "t", {"fleet/t/a": True, "fleet/t/b": False})
    assert read_fleet_marks(tmp_path, "t") == {"fleet/t/a": True, "fleet/t/b": False}


# -- a mark names one branch: the first line of its reflog (store/branch_marks.py `entry_holds`) -------------


def test_an_old_mark_gets_the_branchs_identity_and_a_branch_made_again_is_not_owned(repo: Path) -> None:
    from reconciler.store.branch_marks import read_fleet_entries

    git(repo, "branch", A)
    write_fleet_marks(repo / ".git", "t", {A: False})  # as an older fleet wrote it: no identity
    assert GitRepo(repo).owned_branches() == {A: "t"}  # owned, as before
    migrate_marks(GitRepo(repo), "t")  # every pass records the identity of a mark that has none
    first = (repo / ".git" / "logs" / "refs" / "heads" / A).read_text().splitlines()[0]
    assert read_fleet_entries(repo / ".git", "t")[A].ident == first
    git(repo, "branch", "-D", A)
    git(repo, "commit", "-q", "--allow-empty", "-m", "the user moves on")
    git(repo, "branch", A)  # the user's, under the same name
    assert GitRepo(repo).owned_branches() == {}
    migrate_marks(GitRepo(repo), "t")  # the stale mark is dropped, not moved onto the new branch
    assert branch_marks(repo) == {}


def test_a_branch_without_a_reflog_is_never_owned(repo: Path) -> None:
    from reconciler.act.branch_marks import mark_branch, record_identity

    git(repo, "config", "core.logAllRefUpdates", "false")
    mark_branch(GitRepo(repo), "t", A)
    git(repo, "branch", A)
    record_identity(GitRepo(repo), "t", A)
    assert json.loads(marks_path(repo / ".git", "t").read_text())["branches"][A] == {"protect": False, "id": ""}
    assert GitRepo(repo).owned_branches() == {}  # cannot be told from a branch made again: kept


def test_create_worktree_refuses_a_users_branch_before_marking_it(repo: Path) -> None:
    """The act's own check (act/worktrees.py), behind the planner's: a branch that exists and is not
    this fleet's is neither marked nor checked out."""
    from reconciler.act.worktrees import create_worktree
    from reconciler.spec.loader import load_fleet

    loaded = load_fleet(two_idle_agents(repo, "a00"))
    git(repo, "branch", A)  # the user's, under the agent's name
    with pytest.raises(FleetError, match=f"branch {A} exists and is not owned by fleet t"):
        create_worktree(GitRepo(repo), loaded.agents[0], fleet="t")
    assert branch_marks(repo) == {}
    assert "w-a00" not in git(repo, "worktree", "list")


def test_an_action_that_fails_says_what_to_do(repo: Path) -> None:
    """A failed action's hint reaches the operator (it was dropped: only the message was kept).
    The user's branch appears between the plan and the act, so the act's own check refuses it."""
    from reconciler.control.converge import preview
    from reconciler.engines import engine_for
    from reconciler.engines.executor import Executor
    from reconciler.render.plan import outcome_line
    from reconciler.spec.loader import load_fleet

    loaded = load_fleet(two_idle_agents(repo, "a00"))
    engine = engine_for(loaded)
    observed, plan = preview(loaded, engine=engine)
    git(repo, "branch", A)  # the user's, under the agent's name, made after the plan
    outcomes = Executor(loaded, engine, observed).run(plan)
    created = next(o for o in outcomes if o.action.kind == "create-worktree")
    assert not created.ok
    assert created.hint == (f"rename that branch (git branch -m {A} {A}-mine) or the agent; if it is the fleet's, "
                            "mark it: see docs/safety.md \"Ownership\"")
    assert outcome_line(created).splitlines()[1] == f"        hint: {created.hint}"
    assert branch_marks(repo) == {}
