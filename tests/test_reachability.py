"""Issue 14, the classes about which commits are safe and what a prune keeps: each test first
builds the adversarial case on a real repo with real agents, then checks fleet's answer.

1 base = an agent's branch; 2 a branch whose upstream is itself; 3 a worktree switched to a
branch the fleet does not own; 5 commits only a reflog holds; 6 a submodule's local commit;
12 a staged version that differs from the working copy. Also: every prune archives first
(retention), `fleet restore`, `fleet archives prune`, ignored files and gc.protectIgnored.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import branch_marks, fleet, git
from test_safety import WT, converge, two_agents, undeclare

A = "fleet/t/w-a00"


def _archives(repo: Path) -> list[dict[str, str]]:
    return json.loads(fleet("archives", "fleet.yaml", "-o", "json", cwd=repo, check=True).stdout)


def _blocked(repo: Path) -> list[dict]:  # type: ignore[type-arg]
    diff = json.loads(fleet("diff", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    return [a for a in diff["actions"] if a["kind"] == "blocked"]


def _reachable(repo: Path, sha: str) -> bool:
    refs = git(repo, "for-each-ref", "--format=%(refname)").split()
    return any(git(repo, "rev-list", r).find(sha) >= 0 for r in refs)


def _sha(repo: Path, rev: str) -> str:
    return git(repo, "rev-parse", rev).strip()


# -- class 1: base resolving to a branch the fleet owns -------------------------------------------

def test_base_that_is_an_owned_branch_is_a_validation_error(repo: Path) -> None:
    path = two_agents(repo)
    converge(repo)
    work = _sha(repo, A)
    path.write_text(path.read_text().replace("spec:\n", f"spec:\n  base: {A}\n"))
    line = path.read_text().splitlines().index(f"  base: {A}") + 1
    for command, code in ((["validate", "fleet.yaml"], 1), (["diff", "fleet.yaml"], 2),
                          (["apply", "fleet.yaml", "--yes"], 1), (["delete", "fleet.yaml", "w-a00", "--yes"], 1)):
        proc = fleet(*command, cwd=repo)
        assert proc.returncode == code, (command, proc.stdout, proc.stderr)
        assert f"fleet.yaml:{line}:" in proc.stderr and "which a fleet owns" in proc.stderr, proc.stderr
        assert "an agent's branch is never a base" in proc.stderr
    path.write_text(path.read_text().replace(f"  base: {A}\n", "  base: refs/heads/" + A + "\n"))
    assert fleet("validate", "fleet.yaml", cwd=repo).returncode == 1  # however it is spelled
    assert _sha(repo, A) == work and (repo / WT / "w-a00").is_dir()


# -- class 2: upstream is the branch itself --------------------------------------------------------

def test_upstream_of_dot_counts_as_not_pushed(repo: Path) -> None:
    path = two_agents(repo)
    converge(repo)
    wt = repo / WT / "w-a00"
    git(wt, "push", "-q", "-u", ".", "HEAD")  # no remote: "." is this repository itself
    assert git(wt, "rev-parse", "--abbrev-ref", "@{upstream}").strip()
    git(repo, "remote", "add", "self", str(repo))  # a remote whose URL is this repository: no backup either
    git(repo, "fetch", "-q", "self")
    undeclare(path)
    blocked = _blocked(repo)
    assert [b["agent"] for b in blocked] == ["w-a00"]
    assert any("w-a00 did its work" in c for c in blocked[0]["details"]["commits"])
    assert fleet("apply", "fleet.yaml", "--yes", cwd=repo).returncode == 3
    assert git(repo, "branch", "--list", A).strip() and wt.is_dir()


def test_a_remote_with_a_url_counts_as_pushed(repo: Path, tmp_path: Path) -> None:
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    path = two_agents(repo)
    converge(repo)
    git(repo / WT / "w-a00", "push", "-q", "-u", "origin", "HEAD")
    undeclare(path)
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (repo / WT / "w-a00").exists() and not git(repo, "branch", "--list", A).strip()


# -- class 3: the tree has a branch the fleet does not own checked out ------------------------------

def test_a_foreign_branch_checked_out_in_the_tree_is_never_deleted(repo: Path) -> None:
    path = two_agents(repo)
    converge(repo)
    git(repo, "merge", "-q", A)  # the agent's own work is merged: its branch may go
    git(repo, "branch", "user-topic", "main")
    wt = repo / WT / "w-a00"
    git(wt, "switch", "-q", "user-topic")
    (wt / "topic.txt").write_text("the user's topic\n")
    git(wt, "add", "topic.txt")
    git(wt, "commit", "-qm", "user topic work")
    topic = _sha(repo, "user-topic")
    (wt / "scratch.txt").write_text("uncommitted\n")
    undeclare(path)
    blocked = _blocked(repo)  # dirty: the tree stays, and so does the branch
    assert [b["agent"] for b in blocked] == ["w-a00"] and blocked[0]["details"]["files"] == ["scratch.txt"]
    assert fleet("apply", "fleet.yaml", "--yes", cwd=repo).returncode == 3
    assert _sha(repo, "user-topic") == topic
    (wt / "scratch.txt").unlink()
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "kept branch user-topic" in proc.stdout
    assert not wt.exists()
    assert _sha(repo, "user-topic") == topic  # the user's branch, its commit and reflog stay
    assert (repo / ".git" / "logs" / "refs" / "heads" / "user-topic").is_file()
    assert not git(repo, "branch", "--list", A).strip()  # the agent's own branch went


# -- class 5: commits only a reflog holds -----------------------------------------------------------

def test_commits_only_a_reflog_holds_are_at_stake_and_archived(repo: Path) -> None:
    path = two_agents(repo)
    converge(repo)
    wt = repo / WT / "w-a00"
    (wt / "idea.txt").write_text("a good idea\n")
    git(wt, "add", "idea.txt")
    git(wt, "commit", "-qm", "the idea only the reflog keeps")
    lost = _sha(wt, "HEAD")
    git(wt, "reset", "-q", "--hard", "HEAD~1")
    git(repo, "merge", "-q", A)  # the branch itself is merged: only the reflog holds the idea
    undeclare(path)
    blocked = _blocked(repo)
    assert [b["agent"] for b in blocked] == ["w-a00"]
    assert any("the idea only the reflog keeps" in c for c in blocked[0]["details"]["commits"])
    assert fleet("apply", "fleet.yaml", "--yes", cwd=repo).returncode == 3 and wt.is_dir()
    proc = fleet("apply", "fleet.yaml", "--yes", "--archive", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ref = _archives(repo)[-1]["ref"]
    git(repo, "merge-base", "--is-ancestor", lost, ref)  # raises if the archive lacks it


# -- class 6: a submodule with a local commit --------------------------------------------------------

def test_a_submodules_local_commit_is_at_stake_and_archived(repo: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    git(lib, "init", "-q", "-b", "main")
    (lib / "lib.txt").write_text("lib\n")
    git(lib, "add", ".")
    git(lib, "commit", "-qm", "lib init")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git(repo, "commit", "-qm", "add lib")
    path = two_agents(repo)
    converge(repo)
    git(repo, "merge", "-q", A)
    wt = repo / WT / "w-a00"
    git(wt, "-c", "protocol.file.allow=always", "submodule", "update", "-q", "--init")
    (wt / "lib" / "lib.txt").write_text("patched in the agent's tree\n")
    git(wt / "lib", "commit", "-qam", "local lib patch")
    patch = _sha(wt / "lib", "HEAD")
    git(wt, "add", "lib")
    git(wt, "commit", "-qm", "bump lib")
    git(repo, "merge", "-q", A)  # the superproject's commits are merged; the lib commit is in no remote
    undeclare(path)
    blocked = _blocked(repo)
    assert [b["agent"] for b in blocked] == ["w-a00"]
    assert any("local lib patch" in c and "(submodule lib)" in c for c in blocked[0]["details"]["commits"])
    proc = fleet("apply", "fleet.yaml", "--yes", "--archive", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not wt.exists()
    ref = _archives(repo)[-1]["ref"]
    # the commit is in the superproject's object store, reachable from the archive
    assert git(repo, "cat-file", "-t", patch).strip() == "commit"
    assert patch in git(repo, "rev-list", ref)


def test_a_tree_with_a_clean_submodule_is_pruned(repo: Path, tmp_path: Path) -> None:
    """git removes a tree with a checked-out submodule only with --force; nothing is at stake in
    it (its commits are its remote's), so the prune goes through."""
    lib = tmp_path / "lib"
    lib.mkdir()
    git(lib, "init", "-q", "-b", "main")
    git(lib, "commit", "-q", "--allow-empty", "-m", "lib init")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git(repo, "commit", "-qm", "add lib")
    path = two_agents(repo)
    converge(repo)
    git(repo, "merge", "-q", A)
    wt = repo / WT / "w-a00"
    git(wt, "-c", "protocol.file.allow=always", "submodule", "update", "-q", "--init")
    undeclare(path)
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not wt.exists() and not git(repo, "branch", "--list", A).strip()


# -- class 12: the index as its own tree; restore -----------------------------------------------------

def test_staged_version_is_archived_and_restore_brings_everything_back(repo: Path) -> None:
    path = two_agents(repo)
    converge(repo)
    wt = repo / WT / "w-a00"
    (wt / "README.md").write_text("staged version\n")
    git(wt, "add", "README.md")
    (wt / "README.md").write_text("working copy version\n")
    (wt / "notes.txt").write_text("untracked notes\n")
    work = _sha(repo, A)
    proc = fleet("delete", "fleet.yaml", "w-a00", "--yes", "--archive", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "fleet restore fleet.yaml w-a00 " in proc.stdout  # issue 15 item 9: the hint is one command
    assert not wt.exists() and not git(repo, "branch", "--list", A).strip()
    ref = _archives(repo)[-1]["ref"]
    assert git(repo, "show", f"{ref}:README.md") == "working copy version\n"
    index = [ln.split(": ")[1] for ln in git(repo, "log", "-1", "--format=%B", ref).splitlines()
             if ln.startswith("Fleet-Index: ")]
    assert git(repo, "show", f"{index[0]}:README.md") == "staged version\n"
    proc = fleet("restore", "fleet.yaml", "w-a00", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _sha(repo, A) == work
    assert A in branch_marks(repo)  # owned by fleet t again
    assert (wt / "README.md").read_text() == "working copy version\n"
    assert (wt / "notes.txt").read_text() == "untracked notes\n"
    assert git(wt, "show", ":README.md") == "staged version\n"  # the index as it was
    diff = json.loads(fleet("diff", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    mine = [a for a in diff["actions"] if a["agent"] == "w-a00"]
    assert [a["kind"] for a in mine] == ["spawn"] and "worktree exists" in mine[0]["reason"]
    assert fleet("restore", "fleet.yaml", "w-a00", cwd=repo).returncode == 1  # never over what is there
    del path


def _hook(repo: Path, body: str) -> None:
    hook = repo / ".git" / "hooks" / "post-checkout"
    hook.write_text("#!/bin/sh\n" + body + "\nexit 0\n")
    hook.chmod(0o755)


def _staged_in_w_a01_then_w_a00_archived(repo: Path) -> tuple[Path, Path, str, str]:
    """Two converged agents; w-a01 has README.md staged; w-a00 deleted with --archive. Returns
    w-a01's tree, its admin dir, its staged index (`ls-files -s`) and its ownership marker."""
    two_agents(repo)
    converge(repo)
    other = repo / WT / "w-a01"
    other_admin = Path(git(other, "rev-parse", "--absolute-git-dir").strip())
    (other / "README.md").write_text("staged in w-a01 only\n")
    git(other, "add", "README.md")
    staged, marker = git(other, "ls-files", "-s"), (other_admin / "fleet-owner.json").read_text()
    proc = fleet("delete", "fleet.yaml", "w-a00", "--yes", "--archive", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return other, other_admin, staged, marker


def test_a_hook_that_points_a_restored_tree_at_another_s_admin_dir_changes_nothing_of_that_tree(repo: Path) -> None:
    """A post-checkout hook rewrites the restored tree's `.git` to name w-a01's admin dir: the
    restore refuses before it puts files or an index anywhere (its `read-tree` would have
    replaced w-a01's index, with what w-a01 had staged), and w-a01's marker stays its own."""
    other, other_admin, staged, marker = _staged_in_w_a01_then_w_a00_archived(repo)
    _hook(repo, f'[ "$(basename "$PWD")" = w-a00 ] && printf "gitdir: %s\\n" "{other_admin}" > .git')
    proc = fleet("restore", "fleet.yaml", "w-a00", cwd=repo)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "does not name its own admin dir" in proc.stderr, proc.stderr
    assert git(other, "ls-files", "-s") == staged
    assert git(other, "show", ":README.md") == "staged in w-a01 only\n"
    assert (other_admin / "fleet-owner.json").read_text() == marker


@pytest.mark.parametrize("how", ["index", "tree", "restore's index"])
def test_a_hook_that_links_a_restored_tree_to_another_s_changes_nothing_of_that_tree(repo: Path, how: str) -> None:
    """The hook makes the restored tree's `index` a symlink to w-a01's (git's index lock
    follows it), or replaces the tree itself with a symlink to w-a01 (its `.git` then names
    w-a01's admin dir, which names it back), or, run again by the restore's own `git restore`,
    links the index file the restore is building to w-a01's: w-a01's index, files and marker
    stay as they were."""
    other, other_admin, staged, marker = _staged_in_w_a01_then_w_a00_archived(repo)
    if how == "index":
        _hook(repo, f'[ "$(basename "$PWD")" = w-a00 ] && ln -sf "{other_admin}/index" '
                    '"$(git rev-parse --absolute-git-dir)/index"')
    elif how == "tree":
        _hook(repo, f'[ "$(basename "$PWD")" = w-a00 ] && cd .. && mv w-a00 .w-a00-moved && ln -s "{other}" w-a00')
    else:
        _hook(repo, f'case "$GIT_INDEX_FILE" in *index.fleet-restore) ln -sf "{other_admin}/index" "$GIT_INDEX_FILE";; '
                    'esac')
    proc = fleet("restore", "fleet.yaml", "w-a00", cwd=repo)
    if how == "tree":
        assert proc.returncode == 1 and "does not name its own admin dir" in proc.stderr, proc.stdout + proc.stderr
    else:  # the tree's own admin dir, with its index symlink replaced by the restored index
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert git(repo / WT / "w-a00", "show", ":w-a00.txt") == "\n"
    assert git(other, "ls-files", "-s") == staged
    assert (other / "README.md").read_text() == "staged in w-a01 only\n"
    assert (other_admin / "fleet-owner.json").read_text() == marker


def _file(path: Path) -> str:
    path.write_text("someone's file\n")
    return "is a file, not a directory"


def _dangling_link(path: Path) -> str:
    path.symlink_to(path.parent / "nowhere")
    return "is a symbolic link"


def _under_a_file(path: Path) -> str:
    path.parent.rename(path.parent.with_name("moved-away"))  # the worktrees root, w-a01's tree with it
    path.parent.write_text("a file where the worktrees directory was\n")
    return f"{path.parent} is a file, not a directory"


@pytest.mark.parametrize("taken", [_file, _dangling_link, _under_a_file], ids=["file", "dangling-link", "under-a-file"])
def test_restore_onto_a_path_that_is_not_a_directory_is_a_user_error(repo: Path, taken) -> None:  # type: ignore[no-untyped-def]
    """`fleet restore FILE NAME STAMP` where something other than a directory holds the worktree
    path (or a directory above it): exit 1 with what is there and what to do, no traceback, and
    nothing restored (no branch made that a second try would then trip on)."""
    two_agents(repo)
    converge(repo)
    wt = repo / WT / "w-a00"
    proc = fleet("delete", "fleet.yaml", "w-a00", "--yes", "--archive", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stamp = _archives(repo)[-1]["ref"].rsplit("/", 1)[1]
    said = taken(wt)
    proc = fleet("restore", "fleet.yaml", "w-a00", stamp, cwd=repo)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "crashed" not in proc.stderr, proc.stderr
    assert said in proc.stderr, proc.stderr
    assert "move it away" in proc.stderr
    assert not git(repo, "branch", "--list", A).strip()  # nothing restored
    assert A not in branch_marks(repo)


# -- archive-first: retention, and `fleet archives prune` ---------------------------------------------

def test_every_prune_keeps_a_retention_archive_that_expires(repo: Path) -> None:
    path = two_agents(repo)
    converge(repo)
    git(repo, "merge", "-q", A)
    work = _sha(repo, A)
    undeclare(path)
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 0 and "kept refs/fleet/archive/t/w-a00/" in proc.stdout, proc.stdout + proc.stderr
    [kept] = _archives(repo)
    assert kept["subject"].startswith("fleet retention archive") and work in git(repo, "rev-list", kept["ref"])
    later = {"FLEET_CLOCK_OFFSET": str(13 * 86400)}
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, env=later, check=True)
    assert len(_archives(repo)) == 1  # within gc.archiveRetention (14d)
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, env={"FLEET_CLOCK_OFFSET": str(15 * 86400)}, check=True)
    assert _archives(repo) == []


def test_archives_prune_drops_only_archives_base_contains(repo: Path) -> None:
    path = two_agents(repo)
    converge(repo)
    (repo / WT / "w-a01" / "wip.txt").write_text("work in progress\n")
    fleet("delete", "fleet.yaml", "--yes", "--archive", cwd=repo, check=True)
    refs = {a["agent"]: a["ref"] for a in _archives(repo)}
    assert set(refs) == {"w-a00", "w-a01"}
    month = {"FLEET_CLOCK_OFFSET": str(30 * 86400)}
    proc = fleet("archives", "prune", "fleet.yaml", "--older-than", "7d", cwd=repo, env=month, check=True)
    assert "0 archive(s) dropped, 2 kept" in proc.stdout  # both hold commits main lacks
    git(repo, "merge", "-q", f"{refs['w-a00']}^1")  # w-a00's work lands in main
    proc = fleet("archives", "prune", "fleet.yaml", "--older-than", "7d", cwd=repo, env=month, check=True)
    assert f"dropped {refs['w-a00']}" in proc.stdout and "1 kept" in proc.stdout
    git(repo, "merge", "-q", f"{refs['w-a01']}^1")  # its commit, but not its uncommitted file
    proc = fleet("archives", "prune", "fleet.yaml", "--older-than", "7d", cwd=repo, env=month, check=True)
    assert [a["ref"] for a in _archives(repo)] == [refs["w-a01"]]
    assert fleet("archives", "prune", "fleet.yaml", "--older-than", "40d", cwd=repo, env=month,
                 check=True).stdout.startswith("0 archive(s)")
    del path


# -- ignored files -------------------------------------------------------------------------------------

def test_ignored_files_are_listed_and_protected_ones_block(repo: Path) -> None:
    (repo / ".gitignore").write_text("build/\n.env\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-qm", "ignore build output")
    path = two_agents(repo)
    converge(repo)
    git(repo, "merge", "-q", A)
    wt = repo / WT / "w-a00"
    (wt / "build").mkdir()
    (wt / "build" / "out.o").write_bytes(b"x" * 1000)
    (wt / ".env").write_text("TOKEN=secret\n")
    undeclare(path)
    blocked = _blocked(repo)
    assert [b["agent"] for b in blocked] == ["w-a00"]
    assert blocked[0]["details"]["protectedIgnored"] == [".env"]
    assert "protected ignored" in blocked[0]["reason"] and "--archive" not in blocked[0]["reason"]
    assert fleet("apply", "fleet.yaml", "--yes", "--archive", cwd=repo).returncode == 3 and wt.is_dir()
    (wt / ".env").unlink()
    diff = json.loads(fleet("diff", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    [prune] = [a for a in diff["actions"] if a["agent"] == "w-a00"]
    assert prune["kind"] == "prune"
    assert prune["details"]["ignored"] == {"count": 1, "bytes": 1000, "some": ["build/out.o"]}
    shown = fleet("diff", "fleet.yaml", cwd=repo).stdout
    assert "ignored: 1 file(s), 1000 bytes, deleted unarchived: build/out.o" in shown


@pytest.mark.parametrize("globs", ["[]", "['*.key']"])
def test_protect_ignored_is_the_fleets_choice(repo: Path, globs: str) -> None:
    (repo / ".gitignore").write_text(".env\nsecret.key\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-qm", "ignore")
    path = two_agents(repo)
    path.write_text(path.read_text().replace("spec:\n", f"spec:\n  gc: {{protectIgnored: {globs}}}\n"))
    converge(repo)
    git(repo, "merge", "-q", A)
    wt = repo / WT / "w-a00"
    (wt / ".env").write_text("A=1\n")
    (wt / "secret.key").write_text("k\n")
    undeclare(path)
    blocked = _blocked(repo)
    expected = [] if globs == "[]" else [["secret.key"]]
    assert [b["details"]["protectedIgnored"] for b in blocked] == expected


# -- one `git rev-list` for every prune candidate (observe/gitrepo.py `with_unmerged`) ---------------

def test_the_shared_rev_list_agrees_with_each_candidates_own_check(repo: Path) -> None:
    """The shortcut may only skip a candidate's own `git log` when that log would find nothing:
    for every kind of tip (branch, detached HEAD, a commit only a reflog holds, merged work,
    work a kept branch holds, a candidate whose branch is itself a shared anchor) the answer
    with the shared rev-list equals the answer without it."""
    from reconciler.observe.gitrepo import GitRepo
    from reconciler.observe.gittree import read_env

    def commit(cwd: Path, msg: str) -> str:
        git(cwd, "commit", "-q", "--allow-empty", "-m", msg)
        return _sha(cwd, "HEAD")

    wts = repo.parent / "wts"
    for name in ("at-base", "ahead", "reflog-only", "merged", "detached", "kept", "anchor"):
        git(repo, "worktree", "add", "-q", "-b", f"c/{name}", str(wts / name), "main")
    commit(wts / "ahead", "only on ahead")
    commit(wts / "reflog-only", "dropped by a reset")
    git(wts / "reflog-only", "reset", "-q", "--hard", "main")
    merged = commit(wts / "merged", "merged into main")
    git(repo, "merge", "-q", "--ff-only", merged)
    git(wts / "detached", "checkout", "-q", "--detach")
    commit(wts / "detached", "on a detached HEAD")
    kept = commit(wts / "kept", "also on keep")
    git(repo, "branch", "keep", kept)
    commit(wts / "anchor", "on a branch named as an anchor")
    gr = GitRepo(repo)
    _, linked = gr.worktrees()
    trees = {wt.path.name: wt for wt in linked}
    extra = ("refs/heads/c/anchor",)  # a shared anchor that is one candidate's own branch
    plain = gr.ref_snapshot("main")
    facts = plain.facts
    snap = gr.with_unmerged(plain, "main", [gr.tips(f"c/{n}", wt.head, wt.admin_dir, facts)
                                            for n, wt in trees.items()], extra_safe=extra)
    assert snap.unmerged is not None
    own_extra = {"kept": ["refs/heads/keep"]}
    for name, wt in trees.items():
        branch, safe = f"c/{name}", [*extra, *own_extra.get(name, [])]
        alone = gr.unsafe(branch, wt.head, "main", admin_dir=wt.admin_dir, extra_safe=safe)
        shared = gr.unsafe(branch, wt.head, "main", admin_dir=wt.admin_dir, refs=snap, extra_safe=safe)
        assert shared == alone, name
        # as an observation of many candidates runs it: the tips read once for the rev-list and
        # handed on, the pass's one environment, the tree's facts read beforehand in a pool
        tips = gr.tips(branch, wt.head, wt.admin_dir, facts)
        passed = gr.unsafe(branch, wt.head, "main", admin_dir=wt.admin_dir, refs=snap, extra_safe=safe,
                           tips=tips, env=read_env())
        assert passed == alone, name
        whole = gr.at_stake(wt, "main", branch=branch, extra_safe=safe)
        assert gr.at_stake(wt, "main", branch=branch, extra_safe=safe, refs=snap, tips=tips, env=read_env(),
                           tree=gr.tree_facts(wt, env=read_env())) == whole, name
    settled = {n for n, wt in trees.items() if snap.settles(f"c/{n}", gr.tips(f"c/{n}", wt.head, wt.admin_dir, facts))}
    assert settled == {"at-base", "merged"}  # the rest have work only their own check can judge
    found = {n for n, wt in trees.items() if gr.unsafe(f"c/{n}", wt.head, "main", admin_dir=wt.admin_dir, refs=snap,
                                                          extra_safe=[*extra, *own_extra.get(n, [])])}
    assert found == {"ahead", "reflog-only", "detached", "anchor"}  # "kept": its commit is on keep


def test_ignored_files_are_named_one_by_one_from_the_same_status(repo: Path) -> None:
    """The ignored files come from `git status --ignored` (one git process a tree): each file,
    inside ignored directories too, names with spaces and newlines kept whole, and a protected
    one deep in an ignored directory still blocks."""
    from reconciler.observe.gitrepo import GitRepo

    (repo / ".gitignore").write_text("build/\n*.log\n.env\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-qm", "ignores")
    wt = repo.parent / "wt"
    git(repo, "worktree", "add", "-q", "-b", "c/a", str(wt), "main")
    (wt / "build" / "deep").mkdir(parents=True)
    (wt / "build" / "deep" / "out.o").write_bytes(b"x" * 10)
    (wt / "build" / "deep" / ".env").write_text("TOKEN=1\n")
    (wt / "two\nlines.log").write_text("y")
    (wt / "a space.log").write_text("zz")
    gr = GitRepo(repo)
    [tree] = [t for t in gr.worktrees()[1] if t.path.name == "wt"]
    stake = gr.at_stake(tree, "main", branch="c/a")
    assert sorted(stake.ignored) == sorted(["build/deep/out.o", "build/deep/.env", "two\nlines.log", "a space.log"])
    assert stake.ignored_bytes == 10 + 8 + 1 + 2
    assert stake.protected_ignored == ["build/deep/.env"]
    assert stake.dirty == []  # ignored is not uncommitted work
