"""Adversarial review of this session's safety-relevant changes: one failing test per finding.

Each test is `xfail(strict=True)` until its finding is fixed (the fix then removes the mark);
the reason names the commit it targets. Real repos, real fleet runs, real agent processes.
"""
from __future__ import annotations

from pathlib import Path

import agents
from conftest import branch_marks, fleet_in_process, git, status_in_process, wait_until, write_fleet

A = "fleet/t/w-a00"


def _idle_fleet(repo: Path, mode: str = "crash", *args: str) -> Path:
    """w-a00 and w-a01 running the scripted agent's `mode` with `args`."""
    return agents.for_each(repo, mode, *args)


def _branches(repo: Path) -> set[str]:
    return set(git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split())


def test_a_branch_deleted_by_hand_and_made_again_by_the_user_is_not_the_fleets(repo: Path) -> None:
    _idle_fleet(repo, "crash", "0")
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_until(lambda: all(r["phase"] == "Succeeded" for r in status_in_process(repo).values()))
    # the user throws the agent's tree and branch away by hand (no fleet pass runs in between) ...
    git(repo, "worktree", "remove", "--force", str(repo / ".fleet" / "worktrees" / "w-a00"))
    git(repo, "branch", "-D", A)
    # ... and later starts a branch of their own under that name
    git(repo, "branch", A)
    tip = git(repo, "rev-parse", A).strip()
    proc = fleet_in_process("delete", "fleet.yaml", "w-a00", "--yes", cwd=repo)
    # the branch fleet created is gone; this one is the user's: with marks in the config it was unowned,
    # so kept (git drops branch.<b>.* with the branch)
    assert A in _branches(repo), proc.stdout + proc.stderr
    assert git(repo, "rev-parse", A).strip() == tip


def test_fleet_run_from_a_hook_does_not_hand_the_hooks_git_dir_to_the_agent(repo: Path) -> None:
    """act/sessions.py and act/gates.py passed a git hook's GIT_DIR/GIT_INDEX_FILE on to the agent (and
    gates): run from a pre-commit hook of a linked worktree, the agent's commit landed on the user's branch."""
    user_tree = repo.parent / "user-tree"
    git(repo, "worktree", "add", "-q", "-b", "topic", str(user_tree))
    topic = git(repo, "rev-parse", "topic").strip()
    admin = repo / ".git" / "worktrees" / "user-tree"
    index_before = (admin / "index").read_bytes()
    script = agents.install(repo.parent)
    write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: t}}
        spec:
          tiers: {{local: {{runtime: command}}}}
          agents:
            - name: w-a
              tier: local
              command: {agents.argv(script, "commit")}
    """)
    # what git exports to a pre-commit hook in the user's linked worktree (git 2.39, checked by hand)
    hook_env = {"GIT_DIR": str(admin), "GIT_INDEX_FILE": str(admin / "index"), "GIT_PREFIX": ""}
    fleet_in_process("apply", str(repo / "fleet.yaml"), "--yes", cwd=repo, env=hook_env, check=True)
    wait_until(lambda: status_in_process(repo)["w-a"]["phase"] in ("Succeeded", "Failed"))
    assert git(repo, "rev-parse", "topic").strip() == topic  # the user's branch did not move
    assert (admin / "index").read_bytes() == index_before  # nor did the user's index
    assert git(repo, "log", "-1", "--format=%s", "fleet/t/w-a").strip() == "w-a did its work"


# -- delivery: strategy rebase (act/delivery.py `integrate`/`_rebase`), on real repos -------------------------


def _commit(tree: Path, name: str, text: str, msg: str) -> str:
    (tree / name).write_text(text)
    git(tree, "add", name)
    git(tree, "commit", "-q", "-m", msg)
    return git(tree, "rev-parse", "HEAD").strip()


def _delivery_trees(repo: Path) -> tuple[Path, Path]:
    """(the agent's tree on fleet/t/x, a scratch tree detached at the target `integration`), the
    target one commit past main."""
    git(repo, "branch", "integration")
    agent, scratch = repo.parent / "agent", repo.parent / "scratch"
    git(repo, "worktree", "add", "-q", "-b", "fleet/t/x", str(agent), "main")
    git(repo, "worktree", "add", "-q", "--detach", str(scratch), "integration")
    _commit(scratch, "target.txt", "target\n", "target moves on")
    git(repo, "update-ref", "refs/heads/integration", git(scratch, "rev-parse", "HEAD").strip())
    return agent, scratch


def _files(tree: Path, rev: str) -> dict[str, str]:
    names = git(tree, "ls-tree", "-r", "--name-only", rev).split()
    return {n: git(tree, "show", f"{rev}:{n}") for n in names}


def test_rebase_keeps_a_change_made_in_the_agents_merge_of_the_target_itself(repo: Path) -> None:
    """Held: `cherry-pick -m` takes the merge's tree against its target-side parent, so a change
    made only in the merge commit (an "evil merge") is in the squashed resolution."""
    from reconciler.act.delivery import integrate

    agent, scratch = _delivery_trees(repo)
    _commit(agent, "a.txt", "a\n", "agent: a")
    git(agent, "merge", "-q", "--no-commit", "--no-ff", "integration")
    (agent / "in-merge.txt").write_text("made in the merge commit\n")
    git(agent, "add", "in-merge.txt")
    git(agent, "commit", "-q", "-m", "merge integration, and one more change")
    _commit(agent, "after.txt", "after\n", "agent: after the merge")
    sha, onto = git(agent, "rev-parse", "HEAD").strip(), git(repo, "rev-parse", "integration").strip()
    done = integrate(scratch, onto=onto, sha=sha, strategy="rebase", message="deliver x")
    assert done.commit is not None and not done.conflicts
    assert _files(scratch, done.commit) == _files(agent, sha)  # every file as the agent left it
    git(scratch, "merge-base", "--is-ancestor", onto, done.commit)  # on top of the target: nothing rewritten


def test_rebase_keeps_a_change_made_in_a_merge_of_the_agents_own_side_branch(repo: Path) -> None:
    from reconciler.act.delivery import integrate

    agent, scratch = _delivery_trees(repo)
    _commit(agent, "a.txt", "a\n", "agent: a")
    git(agent, "switch", "-q", "-c", "side")
    _commit(agent, "b.txt", "b\n", "agent: b, on a side branch")
    git(agent, "switch", "-q", "fleet/t/x")
    _commit(agent, "c.txt", "c\n", "agent: c")
    git(agent, "merge", "-q", "--no-commit", "--no-ff", "side")
    (agent / "in-merge.txt").write_text("made in the merge commit\n")
    git(agent, "add", "in-merge.txt")
    git(agent, "commit", "-q", "-m", "merge side, and one more change")
    sha, onto = git(agent, "rev-parse", "HEAD").strip(), git(repo, "rev-parse", "integration").strip()
    done = integrate(scratch, onto=onto, sha=sha, strategy="rebase", message="deliver x")
    assert done.commit is not None and not done.conflicts
    want = {**_files(agent, sha), "target.txt": "target\n"}
    assert _files(scratch, done.commit) == want


# -- branch marks: protect is not ownership ------------------------------------------------------------------


def _protect_fleet(repo: Path, *, prefix: str, protect: bool, declared: bool = True) -> Path:
    script = agents.install(repo.parent)
    agent = f"""
            - name: w-a
              tier: local
              protect: {str(protect).lower()}
              command: {agents.argv(script, "crash", "0")}""" if declared else " []"
    return write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: t}}
        spec:
          worktrees: {{branchPrefix: {prefix}}}
          tiers: {{local: {{runtime: command}}}}
          agents:{agent}
    """)


def test_a_protect_change_does_not_make_the_fleet_own_a_users_branch(repo: Path) -> None:
    """9edf9cf: set_protect added a mark (ownership) for the declared branch when protect changed; after a
    branchPrefix rename that claimed a user's branch (the old fleetProtect key claimed nothing)."""
    _protect_fleet(repo, prefix="fleet/t/", protect=True)
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_until(lambda: status_in_process(repo)["w-a"]["phase"] == "Succeeded")
    git(repo, "branch", "new/w-a")  # the user's own branch, at main
    _protect_fleet(repo, prefix="new/", protect=False)  # the prefix renamed, protect dropped
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo)
    assert "new/w-a" not in branch_marks(repo)


def test_repairing_a_deleted_tree_does_not_take_over_a_users_branch(repo: Path) -> None:
    import shutil

    _protect_fleet(repo, prefix="fleet/t/", protect=False)
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_until(lambda: status_in_process(repo)["w-a"]["phase"] == "Succeeded")
    git(repo, "branch", "new/w-a")  # the user's own branch
    shutil.rmtree(repo / ".fleet" / "worktrees" / "w-a")  # the tree's directory deleted by hand
    _protect_fleet(repo, prefix="new/", protect=False)
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo)
    worktrees = git(repo, "worktree", "list", "--porcelain")
    assert "branch refs/heads/new/w-a" not in worktrees, worktrees  # no agent tree on the user's branch
    assert "new/w-a" not in branch_marks(repo)


# -- git without GitPython (observe/gitcmd.py, e7ff053): what held -------------------------------------------


def test_a_repo_path_with_spaces_and_unicode_run_from_a_subdirectory_with_another_repos_git_dir(
        tmp_path: Path) -> None:
    """Held: fleet's own git ignores a leaked GIT_DIR/GIT_WORK_TREE/GIT_INDEX_FILE (another repo's) and
    works in a path with spaces and non-ASCII letters, run from a subdirectory; the other repo is untouched."""
    repo, other = tmp_path / "my repo é", tmp_path / "other"
    for path in (repo, other):
        path.mkdir()
        git(path, "init", "-q", "-b", "main")
        (path / "README.md").write_text("# r\n")
        git(path, "add", "README.md")
        git(path, "commit", "-q", "-m", "initial commit")
    (repo / "sub dir").mkdir()
    path = _idle_fleet(repo, "crash", "0")
    leak = {"GIT_DIR": str(other / ".git"), "GIT_WORK_TREE": str(other),
            "GIT_INDEX_FILE": str(other / ".git" / "index"), "LANG": "de_DE.UTF-8"}
    before = git(other, "for-each-ref"), (other / ".git" / "index").read_bytes()
    fleet_in_process("apply", "../fleet.yaml", "--yes", cwd=repo / "sub dir", env=leak, check=True)
    wait_until(lambda: all(r["phase"] == "Succeeded" for r in status_in_process(repo).values()))
    path.write_text(path.read_text().replace("[a00, a01]", "[a01]"))
    fleet_in_process("apply", "../fleet.yaml", "--yes", cwd=repo / "sub dir", env=leak, check=True)
    assert A not in _branches(repo) and "fleet/t/w-a01" in _branches(repo)
    assert not (repo / ".fleet" / "worktrees" / "w-a00").exists()
    assert (git(other, "for-each-ref"), (other / ".git" / "index").read_bytes()) == before
    assert git(other, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_a_directory_with_an_invalid_git_dir_inside_another_repo_is_not_a_repository(repo: Path) -> None:
    """e7ff053: _common_dir_at took any `.git` directory as the git dir; git skips an invalid one and
    works on the enclosing repository, so fleet planned there (GitPython refused it)."""
    inner = repo / "inner"
    (inner / ".git").mkdir(parents=True)  # not a repository: no HEAD, objects or refs
    _idle_fleet(inner, "crash", "0")
    proc = fleet_in_process("diff", "fleet.yaml", cwd=inner)
    assert proc.returncode == 2 and "is not a git repository" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
