"""The facts observe gathers for the pure planner: what is at each desired worktree path,
whether a worktree's directory is there, and every branch, read only when it is needed."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import agents
import pytest
from conftest import fleet_in_process, git, session_pids, wait_until, write_fleet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.observe.gitrepo import GitRepo, admin_dir_of
from reconciler.observe.gittree import _in_progress, leftover_facts, tree_facts
from reconciler.observe.model import (
    PATH_EMPTY_DIR,
    PATH_MISSING,
    PATH_NON_EMPTY_DIR,
    PATH_NOT_A_DIR,
    Observed,
    ObservedAgent,
    Worktree,
)
from reconciler.observe.snapshot import observe, observe_paths, path_state
from reconciler.observe.stake import IN_PROGRESS
from reconciler.spec.loader import load_fleet


def _missing(p: Path) -> None:
    pass


def _empty(p: Path) -> None:
    p.mkdir()


def _full(p: Path) -> None:
    p.mkdir()
    (p / ".hidden").write_text("x")


def _file(p: Path) -> None:
    p.write_text("x")


def _link_to_dir(p: Path) -> None:
    (p.parent / "target").mkdir()
    (p.parent / "target" / "f").write_text("x")
    p.symlink_to(p.parent / "target")


def _dangling(p: Path) -> None:
    p.symlink_to(p.parent / "nowhere")


@pytest.mark.parametrize(("make", "state"), [
    (_missing, PATH_MISSING), (_empty, PATH_EMPTY_DIR), (_full, PATH_NON_EMPTY_DIR), (_file, PATH_NOT_A_DIR),
    (_link_to_dir, PATH_NON_EMPTY_DIR), (_dangling, PATH_MISSING),
], ids=["missing", "empty dir", "dir with a dotfile", "file", "symlink to a dir", "dangling symlink"])
def test_path_state(tmp_path: Path, make: Any, state: str) -> None:
    path = tmp_path / "wt"
    make(path)
    assert path_state(path) == state


def test_nothing_is_read_when_every_declared_agent_has_its_worktree(tmp_path: Path) -> None:
    write_fleet(tmp_path, """
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {name: t}
        spec:
          tiers: {local: {runtime: command}}
          agents:
            - {name: a, tier: local, command: [x]}
    """)
    loaded = load_fleet(tmp_path / "fleet.yaml")
    obs = Observed(base_exists=True,
                   agents={"a": ObservedAgent("a", worktree=Worktree(loaded.agents[0].worktree, "c0", "fleet/t/a"))})

    def branches() -> frozenset[str]:
        raise AssertionError("read the branches of a converged fleet")

    observe_paths(obs, loaded.agents, branches)
    assert obs.paths == {} and obs.branches == frozenset()


def test_observe_reads_branches_and_paths_only_for_agents_without_a_worktree(repo: Path) -> None:
    script = agents.install(repo.parent)
    agents.fleet_yaml(repo, f"""
        - name: a
          tier: local
          command: {agents.argv(script, "sleep", "0")}
    """)
    git(repo, "branch", "topic")
    loaded = load_fleet(repo / "fleet.yaml")
    path = loaded.agents[0].worktree
    fresh = observe(loaded)
    assert fresh.branches == frozenset({"main", "topic"}) and fresh.paths == {path: PATH_MISSING}

    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    converged = observe(loaded)
    assert converged.agents["a"].worktree is not None and converged.agents["a"].worktree.exists
    assert converged.branches == frozenset() and converged.paths == {}  # no `git for-each-ref` on this path

    shutil.rmtree(path)
    gone = observe(loaded)
    assert gone.agents["a"].worktree is not None and gone.agents["a"].worktree.exists is False


# ------------------------------------------------- may_have_refs: the archive list without git

REF_OPS = ["add", "add-nested", "add-other-fleet", "delete", "pack", "pack-keep-loose", "delete-all"]


def _ref_op(repo: Path, op: str, pick: int) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    mine = git(repo, "for-each-ref", "--format=%(refname)", "refs/fleet/archive/t/").split()
    if op == "add":
        git(repo, "update-ref", f"refs/fleet/archive/t/a{pick}", head)
    elif op == "add-nested":  # as archives are made: refs/fleet/archive/<fleet>/<agent>/<time>
        git(repo, "update-ref", f"refs/fleet/archive/t/b{pick}/2026-12-03T00-00-0{pick}", head)
    elif op == "add-other-fleet":  # a fleet whose name starts with this one's is not this one's
        git(repo, "update-ref", f"refs/fleet/archive/t2/a{pick}", head)
    elif op == "delete" and mine:
        git(repo, "update-ref", "-d", mine[pick % len(mine)])
    elif op == "pack":
        git(repo, "pack-refs", "--all")
    elif op == "pack-keep-loose":
        git(repo, "pack-refs", "--all", "--no-prune")
    elif op == "delete-all":
        for ref in mine:
            git(repo, "update-ref", "-d", ref)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(REF_OPS), st.integers(0, 3)), min_size=1, max_size=8))
def test_no_archive_is_missed_when_git_is_not_asked(steps: list[tuple[str, int]]) -> None:
    """`GitRepo.may_have_refs` saves the `git for-each-ref` of every pass (the expired retention
    archives) only where there can be no ref: whatever refs were made, deleted or packed, it
    is never False while git lists one, and False once none is left (loose or packed)."""
    import tempfile

    from reconciler.act.archive import list_archives

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "commit", "-q", "--allow-empty", "-m", "initial")
        assert not GitRepo(repo).may_have_refs("refs/fleet/archive/t/")
        for op, pick in steps:
            _ref_op(repo, op, pick)
            listed = git(repo, "for-each-ref", "--format=%(refname)", "refs/fleet/archive/t/").split()
            handle = GitRepo(repo)
            if listed:
                assert handle.may_have_refs("refs/fleet/archive/t/"), (op, pick)
            assert [a.ref for a in list_archives(handle, "t")] == listed, (op, pick)
        for ref in git(repo, "for-each-ref", "--format=%(refname)", "refs/fleet/archive/t/").split():
            git(repo, "update-ref", "-d", ref)
        shutil.rmtree(repo / ".git" / "refs" / "fleet" / "archive" / "t", ignore_errors=True)  # dirs git left
        assert not GitRepo(repo).may_have_refs("refs/fleet/archive/t/")


@pytest.mark.parametrize("name", [*IN_PROGRESS, "dangling REVERT_HEAD", "none"])
def test_an_operation_in_progress_in_the_tree_s_git_dir_is_seen(repo: Path, name: str) -> None:
    """Each marker of an operation git left half done (a merge, rebase, cherry-pick, revert,
    bisect) in a worktree's git dir is a fact of the tree, read from one listing of the dir; a
    dangling symlink under a marker's name counts too (it blocks the prune: the safe side)."""
    tree = repo.parent / "wt"
    git(repo, "worktree", "add", "-q", "-b", "b", str(tree))
    admin = Path(git(tree, "rev-parse", "--absolute-git-dir").strip())
    if name == "dangling REVERT_HEAD":
        (admin / "REVERT_HEAD").symlink_to(admin / "nowhere")
        expected: tuple[str, ...] = ("REVERT_HEAD",)
    elif name == "none":
        (admin / "ORIG_HEAD").write_text("0" * 40 + "\n")  # left by many commands: no operation
        expected = ()
    else:
        marker = admin / name
        if name.startswith("rebase-"):
            marker.mkdir()
        else:
            marker.write_text("0" * 40 + "\n")
        expected = (name,)
    assert tree_facts(tree, admin).markers == expected
    assert tree_facts(tree, None).markers == ()  # no git dir known: none read
    # and alike in a tree an interrupted prune left half deleted (its markers were six `exists`,
    # which a dangling symlink passed)
    head = git(tree, "rev-parse", "HEAD").strip()
    assert leftover_facts(tree, admin, [head]).markers == expected
    shutil.rmtree(tree)
    assert leftover_facts(tree, admin, [head]).markers == expected


@pytest.mark.skipif(os.geteuid() != 0, reason="makes a git dir another user can search but not list")
def test_an_operation_in_progress_is_seen_in_a_git_dir_that_can_be_searched_but_not_listed() -> None:
    """Mode 0311 (what a user without read permission has): one listing fails, but git, and a
    `stat` by name, still find MERGE_HEAD there; reading it as "no marker" let the prune go on."""
    top = Path(tempfile.mkdtemp(prefix="fleet-0311-"))
    try:
        top.chmod(0o755)
        admin = top / "admin"
        admin.mkdir()
        (admin / "MERGE_HEAD").write_text("0" * 40 + "\n")
        admin.chmod(0o311)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child reads as nobody, with what this process has imported
            try:
                os.setgid(65534)
                os.setuid(65534)
                os.write(write, json.dumps(_in_progress(str(admin))).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as got:
            seen = got.read()
        os.waitpid(pid, 0)
        assert json.loads(seen) == ["MERGE_HEAD"]
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_a_worktree_at_a_path_that_is_not_utf8_is_observed_with_its_admin_dir(repo: Path) -> None:
    """A tree a user added at a path whose bytes are not UTF-8 (Linux allows any) is listed by
    git and matched to its admin dir like any other: reading its `gitdir` file as text raised,
    and no tree of the fleet could be observed at all."""
    script = agents.install(repo.parent)
    agents.fleet_yaml(repo, f"""
        - name: a
          tier: local
          command: {agents.argv(script, "sleep", "0")}
    """)
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    loaded = load_fleet(repo / "fleet.yaml")
    odd = os.fsencode(loaded.worktrees_root) + b"/user-\xff"
    subprocess.run([b"git", b"worktree", b"add", b"-q", b"-b", b"odd", odd], cwd=repo, check=True)
    seen = observe(loaded)
    assert seen.agents["a"].worktree is not None and seen.agents["a"].worktree.owner is not None
    [foreign] = seen.foreign
    assert os.fsencode(foreign.path) == odd and foreign.branch == "odd"
    assert foreign.admin_dir is not None and foreign.owner is None
    assert admin_dir_of(foreign.path) == foreign.admin_dir  # its .git file names a path that is not UTF-8 too


def test_a_repository_at_a_path_that_is_not_utf8_goes_through_apply_status_prune_and_restore(tmp_path: Path) -> None:
    """Every command a user runs in a repository whose path is not UTF-8 (Linux allows any
    bytes): `fleet status` crashed, hashing the fleet file's path as UTF-8."""

    def fleet(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:  # its output has those bytes
        proc = subprocess.run([sys.executable, "-m", "reconciler.cli.main", *args], cwd=repo, capture_output=True,
                              text=True, errors="surrogateescape", timeout=120, env={**os.environ, "COLUMNS": "200"})
        assert not check or proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    repo = tmp_path / os.fsdecode(b"repo-\xff\xfe")
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "initial")
    script = agents.install(tmp_path)
    agents.fleet_yaml(repo, f"""
        - name: a
          tier: local
          command: {agents.argv(script, "commit")}
          restart: Never
    """)
    fleet("apply", "fleet.yaml", "--yes", check=True)
    wait_until(lambda: not session_pids(repo), timeout=60)
    fleet("reconcile", "fleet.yaml", "--once", check=True)
    rows = json.loads(fleet("status", "fleet.yaml", "-o", "json", check=True).stdout)["agents"]
    assert [(r["agent"], r["phase"], r["ahead"]) for r in rows] == [("a", "Succeeded", 1)]
    assert "Succeeded" in fleet("status", "fleet.yaml", check=True).stdout
    assert fleet("diff", "fleet.yaml").returncode == 0
    tree = load_fleet(repo / "fleet.yaml").agents[0].worktree
    work = git(repo, "rev-parse", "fleet/t/a").strip()
    fleet("delete", "fleet.yaml", "a", "--yes", "--archive", check=True)
    assert not tree.exists() and not git(repo, "branch", "--list", "fleet/t/a").strip()
    fleet("restore", "fleet.yaml", "a", check=True)
    assert git(repo, "rev-parse", "fleet/t/a").strip() == work and (tree / "a.txt").exists()


def test_worktrees_recorded_with_relative_paths_are_matched_to_their_admin_dirs(repo: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """git 2.48's `worktree.useRelativePaths` writes the admin dir's `gitdir` relative to the
    admin dir and the tree's `.git` relative to the tree (written here by hand as it does; the
    git here, 2.39, lists such a tree at a wrong path, so only fleet's own reading of the two
    files is checked): both are read from where they are, not from the current directory, so
    the tree keeps its admin dir (its owner) and its marker goes where git looks."""
    tree = repo.parent / "trees" / "w0"
    git(repo, "worktree", "add", "-q", "-b", "w0", str(tree))
    admin = Path(git(tree, "rev-parse", "--absolute-git-dir").strip())
    (admin / "gitdir").write_text(os.path.relpath(tree / ".git", admin) + "\n")
    (tree / ".git").write_text(f"gitdir: {os.path.relpath(admin, tree)}\n")
    monkeypatch.chdir(repo.parent.parent)  # neither path means anything from here
    assert git(tree, "rev-parse", "--absolute-git-dir").strip() == str(admin)  # git reads them so
    assert GitRepo(repo).admin_dirs() == {str(tree.resolve()): str(admin)}
    assert admin_dir_of(tree) == admin.resolve()


def test_only_a_tree_s_own_admin_dir_is_taken_for_its_marker(repo: Path, tmp_path: Path) -> None:
    """`own_admin_dir`: the admin dir a tree's `.git` names, only if it is this repository's and
    names the tree back; a `.git` pointing at another tree's admin dir, or at another
    repository's, gives None (fleet would write its marker there)."""

    trees = {name: repo.parent / "trees" / name for name in ("w0", "w1")}
    for name, tree in trees.items():
        git(repo, "worktree", "add", "-q", "-b", name, str(tree))
    admins = {name: Path(git(tree, "rev-parse", "--absolute-git-dir").strip()) for name, tree in trees.items()}
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q", "-b", "main")
    git(other, "commit", "-q", "--allow-empty", "-m", "other")
    git(other, "worktree", "add", "-q", "-b", "x", str(tmp_path / "x"))
    handle = GitRepo(repo)
    assert handle.own_admin_dir(trees["w0"]) == admins["w0"]
    (trees["w0"] / ".git").write_text(f"gitdir: {admins['w1']}\n")  # w1's: it names w1 back, not w0
    assert handle.own_admin_dir(trees["w0"]) is None
    (trees["w0"] / ".git").write_text(f"gitdir: {other / '.git' / 'worktrees' / 'x'}\n")  # another repository's
    assert handle.own_admin_dir(trees["w0"]) is None
    (trees["w0"] / ".git").write_text("")  # no gitfile at all
    assert handle.own_admin_dir(trees["w0"]) is None
    (trees["w0"] / ".git").write_text(f"gitdir: {os.path.relpath(admins['w0'], trees['w0'])}\n")  # relative: its own
    assert handle.own_admin_dir(trees["w0"]) == admins["w0"]


def _agent_a(repo: Path) -> tuple[Path, Path, Path]:
    """Agent a applied: (the scripted agent, a's tree, a's admin dir)."""
    script = agents.install(repo.parent)
    agents.fleet_yaml(repo, f"""
        - {{name: a, tier: local, command: {agents.argv(script, "sleep", "0")}}}
    """)
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    a_tree = load_fleet(repo / "fleet.yaml").agents[0].worktree
    return script, a_tree, Path(git(a_tree, "rev-parse", "--absolute-git-dir").strip())


def _add_b_with_hook(repo: Path, script: Path, body: str, *, b: tuple[str, ...] = ("sleep", "0")
                     ) -> subprocess.CompletedProcess[str]:
    """Declare agent b beside a and apply, with `body` as the repository's post-checkout hook."""
    hook = repo / ".git" / "hooks" / "post-checkout"
    hook.write_text("#!/bin/sh\n" + body + "\nexit 0\n")
    hook.chmod(0o755)
    agents.fleet_yaml(repo, f"""
        - {{name: a, tier: local, command: {agents.argv(script, "sleep", "0")}}}
        - {{name: b, tier: local, command: {agents.argv(script, *b)}}}
    """)
    return fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo)


def test_a_hook_that_points_a_new_tree_at_another_s_admin_dir_does_not_move_that_tree_s_owner(repo: Path) -> None:
    """A post-checkout hook rewrites the new tree's `.git` to name agent a's admin dir: fleet
    refuses to mark it (the create fails, saying why) and a's ownership marker stays a's."""
    script, a_tree, a_admin = _agent_a(repo)
    marker = (a_admin / "fleet-owner.json").read_text()
    res = _add_b_with_hook(repo, script, f'[ "$(basename "$PWD")" = b ] && printf "gitdir: %s\\n" "{a_admin}" > .git')
    assert res.returncode != 0
    assert "does not name its own admin dir" in res.stdout + res.stderr
    assert (a_admin / "fleet-owner.json").read_text() == marker


def test_a_hook_that_links_a_new_tree_s_index_to_another_s_fails_the_create(repo: Path) -> None:
    """The hook makes the new tree b's `index` a symlink to a's: every `git add` of b's session
    would go into a's index. fleet refuses to mark b (the create fails, saying why), and a's
    index is as it was."""
    script, a_tree, a_admin = _agent_a(repo)
    (a_tree / "staged.txt").write_text("a's\n")
    git(a_tree, "add", "staged.txt")
    staged = git(a_tree, "ls-files", "-s")
    res = _add_b_with_hook(repo, script, f'[ "$(basename "$PWD")" = b ] && ln -sf "{a_admin}/index" '
                                         '"$(git rev-parse --absolute-git-dir)/index"', b=("commit",))
    assert res.returncode != 0
    assert "does not name its own admin dir" in res.stdout + res.stderr
    assert git(a_tree, "ls-files", "-s") == staged


def test_a_hook_that_moves_another_tree_into_the_new_tree_s_place_does_not_hand_that_tree_over(repo: Path) -> None:
    """The hook moves the new tree b aside and `git worktree move`s a's tree to b's path: a real
    directory whose admin dir names it back, but a's admin dir, there before the add. fleet
    refuses to mark it as b's, and a's marker still says a."""
    script, a_tree, a_admin = _agent_a(repo)
    marker = (a_admin / "fleet-owner.json").read_text()
    res = _add_b_with_hook(repo, script, f'[ "$(basename "$PWD")" = b ] || exit 0\nb="$PWD"\ncd "{repo}"\n'
                                         f'unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE\nmv "$b" "$b.moved"\n'
                                         f'git worktree move -f "{a_tree}" "$b" 2>>"{repo.parent}/hook.err"')
    b_tree = a_tree.parent / "b"
    assert Path(git(b_tree, "rev-parse", "--absolute-git-dir").strip()) == a_admin  # the hook did its move
    assert res.returncode != 0
    assert "does not name its own admin dir" in res.stdout + res.stderr
    assert (a_admin / "fleet-owner.json").read_text() == marker


def test_a_hook_that_swaps_a_new_tree_for_a_symlink_to_another_does_not_move_that_tree_s_owner(repo: Path) -> None:
    """The hook moves the new tree b aside and puts a symlink to a's tree at its path: b's
    `.git` is then a's, which a's admin dir names back (through the link). fleet refuses to
    mark it: the tree must be a directory at its own path."""
    script, a_tree, a_admin = _agent_a(repo)
    marker = (a_admin / "fleet-owner.json").read_text()
    res = _add_b_with_hook(repo, script,
                           f'[ "$(basename "$PWD")" = b ] && cd .. && mv b .b-moved && ln -s "{a_tree}" b')
    assert res.returncode != 0
    assert "does not name its own admin dir" in res.stdout + res.stderr
    assert (a_admin / "fleet-owner.json").read_text() == marker
