"""The invariant: fleet never deletes work it does not own or that is not safely committed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import agents
import pytest
from conftest import ended, fleet, git, status, wait_until

WT = Path(".fleet") / "worktrees"


def two_agents(repo: Path, items: str = "a00, a01", args: tuple[str, ...] = ("commit",)) -> Path:
    """w-a00 and w-a01 (or `items`), each committing its work (or running `args`) and exiting."""
    return agents.for_each(repo, *args, items=items)


def converge(repo: Path) -> None:
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_until(lambda: all(r["phase"] in ("Succeeded", "Failed") for r in status(repo).values()))


def undeclare(path: Path, keep: str = "a01") -> None:
    text = path.read_text()
    path.write_text(text.replace("[a00, a01]", f"[{keep}]"))



def _dirty(wt: Path, repo: Path) -> str:
    (wt / "README.md").write_text("changed\n")
    return "README.md"


def _untracked(wt: Path, repo: Path) -> str:
    (wt / "new-idea.txt").write_text("not yet added\n")
    return "new-idea.txt"


def _stash(wt: Path, repo: Path) -> str:
    (wt / "README.md").write_text("stashed change\n")
    git(wt, "stash", "push", "-q", "-m", "keep me")
    return "keep me"


def _locked(wt: Path, repo: Path) -> str:
    git(repo, "worktree", "lock", "--reason", "mine", str(wt))
    return "locked"


def _merge_in_progress(wt: Path, repo: Path) -> str:
    git(wt, "checkout", "-q", "-b", "side")
    (wt / "README.md").write_text("side\n")
    git(wt, "commit", "-qam", "side")
    git(wt, "checkout", "-q", "fleet/t/w-a00")
    (wt / "README.md").write_text("ours\n")
    git(wt, "commit", "-qam", "ours")
    subprocess.run(["git", "merge", "side"], cwd=wt, capture_output=True)
    return "merge in progress"


@pytest.mark.parametrize("make_risk", [_dirty, _untracked, _stash, _locked, _merge_in_progress],
                         ids=["dirty", "untracked", "stash", "locked", "merge"])
def test_prune_refuses_worktree_with_work_at_stake(repo: Path, make_risk) -> None:  # type: ignore[no-untyped-def]
    path = two_agents(repo)
    converge(repo)
    git(repo, "merge", "-q", "fleet/t/w-a00")  # its commit is merged, so only the risk blocks
    wt = repo / WT / "w-a00"
    evidence = make_risk(wt, repo)
    before = {p: p.read_bytes() for p in wt.rglob("*") if p.is_file() and ".git" not in p.parts}
    undeclare(path)
    diff = json.loads(fleet("diff", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    blocked = [a for a in diff["actions"] if a["kind"] == "blocked"]
    assert [a["agent"] for a in blocked] == ["w-a00"]
    assert evidence in json.dumps(blocked[0])
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert wt.is_dir() and {p: p.read_bytes() for p in before} == before
    assert "fleet/t/w-a00" in git(repo, "branch", "--list", "fleet/t/w-a00")


def test_prune_refuses_unmerged_commits_and_lists_them(repo: Path) -> None:
    path = two_agents(repo)
    converge(repo)
    undeclare(path)
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 3
    assert "1 unmerged commit(s)" in proc.stdout and "w-a00 did its work" in proc.stdout
    assert (repo / WT / "w-a00" / "w-a00.txt").exists()


def test_prune_refuses_while_a_process_works_in_the_tree(repo: Path) -> None:
    path = two_agents(repo)
    converge(repo)
    git(repo, "merge", "-q", "fleet/t/w-a00")
    editor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=repo / WT / "w-a00")
    try:
        undeclare(path)
        proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
        assert proc.returncode == 3 and "process(es) running in it" in proc.stdout
        assert (repo / WT / "w-a00").is_dir()
    finally:
        editor.kill()
        editor.wait()


def test_clean_merged_worktree_is_pruned_even_with_ignored_files(repo: Path) -> None:
    (repo / ".gitignore").write_text("build/\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-qm", "ignore build")
    path = two_agents(repo)
    converge(repo)
    git(repo, "merge", "-q", "fleet/t/w-a00")
    (repo / WT / "w-a00" / "build").mkdir()
    (repo / WT / "w-a00" / "build" / "out.o").write_text("artifact")
    undeclare(path)
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (repo / WT / "w-a00").exists()
    assert git(repo, "branch", "--list", "fleet/t/w-a00") == ""
    assert "w-a00" not in status(repo)


def test_pushed_branch_is_prunable(repo: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    path = two_agents(repo)
    converge(repo)
    git(repo / WT / "w-a00", "push", "-q", "-u", "origin", "fleet/t/w-a00")
    undeclare(path)
    assert fleet("apply", "fleet.yaml", "--yes", cwd=repo).returncode == 0
    assert not (repo / WT / "w-a00").exists()
    assert "w-a00 did its work" in git(repo, "log", "--format=%s", "origin/fleet/t/w-a00")


def test_archive_saves_commits_and_dirty_files_then_prunes(repo: Path, tmp_path: Path) -> None:
    path = two_agents(repo)
    converge(repo)
    wt = repo / WT / "w-a00"
    (wt / "README.md").write_text("edited, not committed\n")
    (wt / "notes.txt").write_text("untracked notes\n")
    git(wt, "add", "README.md")  # staged in the user's index: the archive must not disturb it
    undeclare(path)
    assert "--archive" in fleet("apply", "fleet.yaml", "--yes", cwd=repo).stdout
    proc = fleet("apply", "fleet.yaml", "--yes", "--archive", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "archived to refs/fleet/archive/t/w-a00/" in proc.stdout and "fleet restore fleet.yaml w-a00 " in proc.stdout
    assert not wt.exists()
    listing = json.loads(fleet("archives", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    assert [a["agent"] for a in listing] == ["w-a00"]
    restored = tmp_path / "restored"
    git(repo, "worktree", "add", "-q", "--detach", str(restored), listing[0]["ref"])
    assert (restored / "README.md").read_text() == "edited, not committed\n"
    assert (restored / "notes.txt").read_text() == "untracked notes\n"
    assert "w-a00 did its work" in git(repo, "log", "--format=%s", listing[0]["ref"] + "^1")


def test_foreign_worktree_and_branches_are_left_alone(repo: Path) -> None:
    (repo / WT).mkdir(parents=True)
    git(repo, "worktree", "add", "-q", "-b", "mine", str(repo / WT / "handmade"))
    git(repo, "branch", "fleet/t/w-a01")  # a user's branch where the fleet wants one
    two_agents(repo)
    diff = json.loads(fleet("diff", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    assert any("handmade" in n and "not owned" in n for n in diff["notes"])
    blocked = [a for a in diff["actions"] if a["kind"] == "blocked"]
    assert [a["agent"] for a in blocked] == ["w-a01"] and "not owned" in blocked[0]["reason"]
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 3
    assert (repo / WT / "handmade").is_dir()
    assert git(repo, "rev-parse", "fleet/t/w-a01") == git(repo, "rev-parse", "main")
    assert fleet("delete", "fleet.yaml", "--yes", cwd=repo).returncode in (0, 3)
    assert (repo / WT / "handmade").is_dir() and "mine" in git(repo, "branch", "--list", "mine")


def test_another_fleets_worktree_is_not_touched(repo: Path) -> None:
    other = two_agents(repo)
    other.write_text(other.read_text().replace("name: t}", "name: other}").replace("[a00, a01]", "[a00]"))
    other.rename(repo / "other.yaml")
    fleet("apply", "other.yaml", "--yes", cwd=repo, check=True)
    wait_until(lambda: status(repo, "other.yaml")["w-a00"]["phase"] == "Succeeded")
    two_agents(repo, items="a05")
    diff = json.loads(fleet("diff", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    assert all(a["agent"] == "w-a05" for a in diff["actions"])
    assert diff["notes"] == []  # another fleet's marked worktree is not news
    assert fleet("delete", "fleet.yaml", "--yes", cwd=repo).returncode == 0
    assert (repo / WT / "w-a00" / "w-a00.txt").exists()
    assert status(repo, "other.yaml")["w-a00"]["phase"] == "Succeeded"


def test_deleted_worktree_directory_is_repaired_keeping_commits(repo: Path) -> None:
    import shutil

    two_agents(repo, items="a00")
    converge(repo)
    shutil.rmtree(repo / WT / "w-a00")
    diff = json.loads(fleet("diff", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    assert [(a["kind"], a["details"].get("repair")) for a in diff["actions"]] == [("create-worktree", "missing")]
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    assert (repo / WT / "w-a00" / "w-a00.txt").exists()
    assert fleet("diff", "fleet.yaml", cwd=repo).returncode == 0


def test_branch_checked_out_elsewhere_is_reported_not_forced(repo: Path, tmp_path: Path) -> None:
    git(repo, "branch", "fleet/t/w-a00")
    git(repo, "config", "branch.fleet/t/w-a00.fleetOwner", "t")
    git(repo, "worktree", "add", "-q", str(tmp_path / "elsewhere"), "fleet/t/w-a00")
    two_agents(repo, items="a00")
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 3 and "is checked out at" in proc.stdout
    assert (tmp_path / "elsewhere").is_dir()


def test_orphan_session_is_stopped_and_shown_as_stop(repo: Path) -> None:
    two_agents(repo, items="a00", args=("sleep", "60"))
    env = {**os.environ, "FLEET_NAME": "t", "FLEET_REPO": str((repo / ".git").resolve()),
           "FLEET_AGENT": "ghost", "FLEET_SPEC_HASH": "x"}
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env,
                              start_new_session=True)
    try:
        diff = fleet("diff", "fleet.yaml", cwd=repo).stdout
        assert "- stop" in diff and "ghost" in diff and "orphan" in diff
        fleet("apply", "fleet.yaml", "--yes", "--grace", "2", cwd=repo, check=True)
        orphan.wait(timeout=10)
        assert orphan.returncode == -signal.SIGTERM
    finally:
        if orphan.poll() is None:
            orphan.kill()


def test_delete_stops_and_prunes_only_safe_agents(repo: Path) -> None:
    two_agents(repo)
    converge(repo)
    git(repo, "merge", "-q", "fleet/t/w-a00")
    proc = fleet("delete", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 3
    assert not (repo / WT / "w-a00").exists()
    assert (repo / WT / "w-a01" / "w-a01.txt").exists()
    proc = fleet("delete", "fleet.yaml", "w-a01", "--yes", "--archive", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (repo / WT / "w-a01").exists()
    assert "w-a01 did its work" in git(repo, "log", "--all", "--format=%s")


def test_running_session_is_stopped_before_its_worktree_is_pruned(repo: Path) -> None:
    path = two_agents(repo, args=("sleep", "60"))
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    pid = status(repo)["w-a00"]["pid"]
    undeclare(path)
    proc = fleet("apply", "fleet.yaml", "--yes", "--grace", "2", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ended(pid)
    assert not (repo / WT / "w-a00").exists()


@pytest.mark.parametrize("flag", ["--assume-unchanged", "--skip-worktree"])
def test_edits_hidden_from_git_status_still_block_the_prune(repo: Path, flag: str) -> None:
    path = two_agents(repo)
    converge(repo)
    git(repo, "merge", "-q", "fleet/t/w-a00")
    wt = repo / WT / "w-a00"
    git(wt, "update-index", flag, "README.md")
    (wt / "README.md").write_text("an edit git status does not show\n")
    undeclare(path)
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 3 and "README.md" in proc.stdout
    assert (wt / "README.md").read_text() == "an edit git status does not show\n"


def test_archive_refuses_a_nested_repository_it_cannot_hold(repo: Path) -> None:
    path = two_agents(repo)
    converge(repo)
    nested = repo / WT / "w-a00" / "vendor" / "lib"
    nested.mkdir(parents=True)
    git(nested, "init", "-q")
    (nested / "a.txt").write_text("nested work\n")
    git(nested, "add", "a.txt")
    git(nested, "commit", "-qm", "nested")
    undeclare(path)
    proc = fleet("apply", "fleet.yaml", "--yes", "--archive", cwd=repo)
    assert proc.returncode == 3 and "nested git repo" in proc.stdout
    assert (nested / "a.txt").read_text() == "nested work\n"


def test_repairing_a_deleted_worktree_leaves_other_missing_worktrees_alone(repo: Path, tmp_path: Path) -> None:
    import shutil

    mine = tmp_path / "mine"
    git(repo, "worktree", "add", "-q", "--detach", str(mine))
    (mine / "x.txt").write_text("x")
    git(mine, "add", "x.txt")
    git(mine, "commit", "-qm", "detached work")
    sha = git(mine, "rev-parse", "HEAD").strip()
    mine.rename(tmp_path / "unmounted")  # the user's disk is away; git sees the worktree as missing
    two_agents(repo, items="a00")
    converge(repo)
    shutil.rmtree(repo / WT / "w-a00")
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    listing = git(repo, "worktree", "list", "--porcelain")
    assert f"worktree {mine}\nHEAD {sha}" in listing  # still registered, so its commit stays reachable


def _ignore_everything_from_the_environment(tmp_path: Path, given: str) -> dict[str, str]:
    everything = tmp_path / "ignore-everything"
    everything.write_text("*\n")
    if given == "parameters":  # what `git -c core.excludesFile=...` passes to every git it starts
        return {"GIT_CONFIG_PARAMETERS": f"'core.excludesfile'='{everything}'"}
    return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "core.excludesFile", "GIT_CONFIG_VALUE_0": str(everything)}


@pytest.mark.parametrize("given", ["parameters", "count"])
def test_git_config_given_in_the_environment_does_not_reach_fleets_own_git(
        repo: Path, tmp_path: Path, given: str) -> None:
    """Config in the environment (a hook's or alias's `git -c`, GIT_CONFIG_COUNT) outranks every
    file: here it makes an agent's new file ignored, which a prune deletes unarchived. fleet's
    own git reads the repository's and the user's config files, never that (docs/safety.md)."""
    path = two_agents(repo)
    converge(repo)
    git(repo, "merge", "-q", "fleet/t/w-a00")  # its commit is merged, so only the new file blocks
    wt = repo / WT / "w-a00"
    (wt / "new-idea.txt").write_text("not yet added\n")
    env = _ignore_everything_from_the_environment(tmp_path, given)
    seen = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=wt, capture_output=True,
                          text=True, check=True, env={**os.environ, **env}).stdout
    assert seen == ""  # what git given that environment sees: the file is hidden
    undeclare(path)
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo, env=env)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "new-idea.txt" in proc.stdout
    assert (wt / "new-idea.txt").read_text() == "not yet added\n"


@pytest.mark.parametrize(("name", "kept"), [
    ("GIT_CONFIG_PARAMETERS", False), ("GIT_CONFIG_COUNT", False), ("GIT_CONFIG_KEY_0", False),
    ("GIT_CONFIG_VALUE_12", False), ("GIT_DIR", False), ("GIT_WORK_TREE", False),
    ("GIT_CONFIG_GLOBAL", True), ("GIT_CONFIG_SYSTEM", True), ("GIT_CONFIG_NOSYSTEM", True), ("HOME", True),
    ("GIT_SSH_COMMAND", True), ("GIT_ASKPASS", True),
])
def test_what_fleets_own_git_inherits(monkeypatch: pytest.MonkeyPatch, name: str, kept: bool) -> None:
    from reconciler.observe.gittree import git_env

    monkeypatch.setenv(name, "x")
    assert (name in git_env()) is kept


def test_fleets_own_git_never_prompts_whatever_the_environment_says(monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.observe.gittree import clean_env, git_env

    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "1")
    assert git_env()["GIT_TERMINAL_PROMPT"] == "0"
    assert clean_env()["GIT_TERMINAL_PROMPT"] == "1"  # sessions and gates: the user's environment as it is
