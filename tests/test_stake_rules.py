"""One set of at-stake rules for both engines (observe/stake.py) and one archiving routine (act/archive.py).

(a) `judge` over plain facts: every kind of fact alone and in combination, no I/O.
(b) The same situations made for real, in a linked worktree of a local repo (`GitRepo.at_stake`,
    the local engine's gatherer) and in a clone of a bare remote as a Ray session actor keeps
    one (`clone_facts`, the actor's gatherer, without Ray): both must judge them alike.
(c) The actor's release on its node (no Ray): refuses what no archive can hold, archives the
    rest through the shared routine and pushes it under the shared archive name.
"""
from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import git

from reconciler.act.archive import archive_ref, snapshot_commit
from reconciler.engines.ray.actor import SessionActor, SessionConfig, clone_facts, stake_status
from reconciler.engines.ray.observe import agent_facts
from reconciler.errors import FleetError
from reconciler.observe.gitrepo import GitRepo, Worktree
from reconciler.observe.processes import ProcessTable
from reconciler.observe.stake import AtStake, RefFacts, TreeFacts, anchors, judge, owned_base, protected, stake_tips

BRANCH = "fleet/t/w-a00"

# ---- (a) the rules over plain facts ---------------------------------------------------------

RULES: list[tuple[str, TreeFacts, bool, bool, str]] = [
    # id, facts, safe, archivable, summary
    ("nothing", TreeFacts(), True, True, ""),
    ("edit", TreeFacts(status=("README.md",)), False, True, "1 uncommitted file(s)"),
    ("hidden edit", TreeFacts(hidden_edits=("README.md",)), False, True, "1 uncommitted file(s)"),
    ("edit and hidden edit", TreeFacts(status=("a.txt",), hidden_edits=("README.md",)), False, True,
     "2 uncommitted file(s)"),
    ("nested repo", TreeFacts(status=("sub/",), nested_repos=("sub/",)), False, False,
     "1 uncommitted file(s), 1 nested git repo(s)"),
    ("commit", TreeFacts(commits=("1234567 work",)), False, True, "1 unmerged commit(s)"),
    ("one commit from two sources", TreeFacts(commits=("1234567abc work", "1234567 work")), False, True,
     "1 unmerged commit(s)"),
    ("two commits, one prefix", TreeFacts(commits=("1234567a one", "1234567b two")), False, True,
     "2 unmerged commit(s)"),
    ("stash", TreeFacts(stashes=("stash@{0} On b: keep",)), False, True, "1 stash entry"),
    ("stashes", TreeFacts(stashes=("stash@{0} On b: x", "stash@{1} On b: y")), False, True, "2 stash entries"),
    ("merge", TreeFacts(markers=("MERGE_HEAD",)), False, False, "merge in progress"),
    ("markers in rule order", TreeFacts(markers=("BISECT_LOG", "rebase-merge")), False, False,
     "rebase in progress, bisect in progress"),
    ("every marker", TreeFacts(markers=("REVERT_HEAD", "CHERRY_PICK_HEAD", "rebase-apply", "MERGE_HEAD")), False,
     False, "merge in progress, rebase/am in progress, cherry-pick in progress, revert in progress"),
    ("not a marker", TreeFacts(markers=("ORIG_HEAD",)), True, True, ""),
    ("process", TreeFacts(processes=("42 vim notes.txt",)), False, False, "1 process(es) running in it"),
    ("locked", TreeFacts(locked=True), False, False, "worktree is locked"),
    ("files and commits", TreeFacts(status=("a",), commits=("1234567 x",), stashes=("s On b: y",)), False, True,
     "1 uncommitted file(s), 1 unmerged commit(s), 1 stash entry"),
    ("everything", TreeFacts(status=("a", "sub/"), hidden_edits=("b",), nested_repos=("sub/",),
                             commits=("1234567 x", "89abcde y"), stashes=("s On b: z",), markers=("MERGE_HEAD",),
                             processes=("1 sh", "2 sh"), locked=True), False, False,
     ("3 uncommitted file(s), 2 unmerged commit(s), 1 stash entry, merge in progress, 2 process(es) running in it, "
      "1 nested git repo(s), worktree is locked")),
]


@pytest.mark.parametrize(("facts", "safe", "archivable", "summary"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_judge(facts: TreeFacts, safe: bool, archivable: bool, summary: str) -> None:
    stake = judge(facts)
    assert (stake.safe, stake.archivable, stake.summary()) == (safe, archivable, summary)


def test_judge_keeps_every_fact() -> None:
    stake = judge(RULES[-1][1])
    assert stake == AtStake(dirty=["a", "sub/", "b"], commits=["1234567 x", "89abcde y"], stashes=["s On b: z"],
                            in_progress=["merge"], processes=["1 sh", "2 sh"], nested_repos=["sub/"], locked=True)


def test_a_ray_agent_is_judged_on_its_branch_and_its_clone() -> None:
    facts = TreeFacts(status=("draft.txt",), hidden_edits=("README.md",), nested_repos=(),
                      commits=("1234567 on the branch too", "89abcde only in the clone"), markers=("MERGE_HEAD",),
                      processes=("7 sleep 60",))
    status = {"state": "exited", **stake_status(facts)}
    stake = judge(agent_facts(["1234567890 on the branch too", "fedcba9 on the branch only"], status))
    assert stake.commits == ["1234567890 on the branch too", "fedcba9 on the branch only", "89abcde only in the clone"]
    assert stake.summary() == ("2 uncommitted file(s), 3 unmerged commit(s), merge in progress, "
                               "1 process(es) running in it")
    assert judge(agent_facts(["fedcba9 x"], None)).summary() == "1 unmerged commit(s)"


def test_the_status_of_an_older_actor_is_judged_from_its_lists() -> None:
    old = {"dirty": ["draft.txt"], "unpushed": ["89abcde mine"], "stashes": ["abc On b: x"],
           "in_progress": ["rebase/am"], "ahead": 1, "head": "89abcde"}
    stake = judge(agent_facts(["89abcde mine"], old))
    assert stake.summary() == "1 uncommitted file(s), 1 unmerged commit(s), 1 stash entry, rebase/am in progress"


# ---- (b) the same situations in a local worktree and in a node's clone ----------------------


@dataclass
class Tree:
    """Where a situation is made: a local worktree or a clone, and how it names the side branch."""

    path: Path
    side: str  # a branch with one more file, not part of the agent's branch


def _edit(t: Tree) -> None:
    (t.path / "README.md").write_text("changed\n")


def _untracked(t: Tree) -> None:
    (t.path / "idea.txt").write_text("not added\n")


def _staged(t: Tree) -> None:
    (t.path / "staged.txt").write_text("added\n")
    git(t.path, "add", "staged.txt")


def _flagged(flag: str, *, edit: bool) -> Callable[[Tree], None]:
    def make(t: Tree) -> None:
        git(t.path, "update-index", flag, "README.md")
        if edit:
            (t.path / "README.md").write_text("hidden from git status\n")
    return make


def _nested(t: Tree) -> None:
    sub = t.path / "vendor"
    sub.mkdir()
    git(sub, "init", "-q")
    (sub / "lib.txt").write_text("lib\n")
    git(sub, "add", "lib.txt")
    git(sub, "commit", "-qm", "nested work")


def _stash(t: Tree) -> None:
    (t.path / "README.md").write_text("stashed\n")
    git(t.path, "stash", "push", "-q", "-m", "keep me")


def _commit(t: Tree) -> None:
    (t.path / "work.txt").write_text("work\n")
    git(t.path, "add", "work.txt")
    git(t.path, "commit", "-qm", "the agent's work")


def _merge(t: Tree) -> None:
    git(t.path, "merge", "-q", "--no-ff", "--no-commit", t.side)


def _all(t: Tree, *makes: Callable[[Tree], None]) -> None:
    for make in makes:
        make(t)


SITUATIONS: list[tuple[str, Callable[[Tree], None], str]] = [
    ("clean", lambda t: None, ""),
    ("uncommitted edit", _edit, "1 uncommitted file(s)"),
    ("untracked file", _untracked, "1 uncommitted file(s)"),
    ("staged change", _staged, "1 uncommitted file(s)"),
    ("assume-unchanged edit", _flagged("--assume-unchanged", edit=True), "1 uncommitted file(s)"),
    ("skip-worktree edit", _flagged("--skip-worktree", edit=True), "1 uncommitted file(s)"),
    ("skip-worktree, unchanged", _flagged("--skip-worktree", edit=False), ""),
    ("nested repo", _nested, "1 uncommitted file(s), 1 nested git repo(s)"),
    ("stash", _stash, "1 stash entry"),
    ("unmerged commit", _commit, "1 unmerged commit(s)"),
    ("merge in progress", _merge, "1 uncommitted file(s), merge in progress"),
    ("edit and commit", lambda t: _all(t, _commit, _edit, _untracked), "2 uncommitted file(s), 1 unmerged commit(s)"),
]


@pytest.fixture
def origin(repo: Path, tmp_path: Path) -> Path:
    """`repo` with the agent's branch and a side branch, and a bare remote holding all three."""
    git(repo, "branch", BRANCH)
    git(repo, "checkout", "-q", "-b", "side")
    (repo / "side.txt").write_text("side\n")
    git(repo, "add", "side.txt")
    git(repo, "commit", "-qm", "side work")
    git(repo, "checkout", "-q", "main")
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "push", "-q", str(bare), "main", BRANCH, "side")
    return bare


def local_tree(repo: Path, tmp_path: Path) -> Tree:
    git(repo, "worktree", "add", "-q", str(tmp_path / "wt"), BRANCH)
    return Tree(tmp_path / "wt", side="side")


def node_clone(origin: Path, tmp_path: Path) -> Tree:
    """A clone as `SessionActor._prepare_clone` makes it (without the post-commit push hook)."""
    clone = tmp_path / "node" / "repo"
    clone.parent.mkdir()
    git(clone.parent, "clone", "-q", "--no-checkout", str(origin), str(clone))
    git(clone, "checkout", "-q", "-B", BRANCH, "--track", f"origin/{BRANCH}")
    return Tree(clone, side="origin/side")


def the_worktree(repo: Path, path: Path) -> Worktree:
    _, linked = GitRepo(repo).worktrees()
    [wt] = [w for w in linked if w.path == path.resolve()]
    return wt


def local_stake(repo: Path, path: Path, ignore: frozenset[int] = frozenset()) -> AtStake:
    """As observe reads it (one ref snapshot and process table) and as the last check before a prune does."""
    gitrepo, wt = GitRepo(repo), the_worktree(repo, path)
    observed = gitrepo.at_stake(wt, "main", ignore_groups=ignore, refs=gitrepo.ref_snapshot("main"),
                                table=ProcessTable())
    assert gitrepo.at_stake(wt, "main", ignore_groups=ignore) == observed
    return observed


def shape(stake: AtStake) -> dict[str, Any]:
    """An AtStake with what differs between two repos for one situation left out: shas and pids."""
    return {"dirty": sorted(stake.dirty), "commits": [c.split(" ", 1)[1] for c in stake.commits],
            "stashes": [s.split(" ", 1)[1] for s in stake.stashes], "in_progress": stake.in_progress,
            "processes": [p.split(" ", 1)[1] for p in stake.processes], "nested_repos": stake.nested_repos,
            "locked": stake.locked, "safe": stake.safe, "archivable": stake.archivable, "summary": stake.summary()}


@pytest.mark.parametrize(("make", "summary"), [s[1:] for s in SITUATIONS], ids=[s[0] for s in SITUATIONS])
def test_both_engines_judge_a_situation_alike(repo: Path, origin: Path, tmp_path: Path,
                                              make: Callable[[Tree], None], summary: str) -> None:
    here, there = local_tree(repo, tmp_path), node_clone(origin, tmp_path)
    make(here)
    make(there)
    local, node = local_stake(repo, here.path), judge(clone_facts(there.path))
    assert shape(local) == shape(node)
    assert local.summary() == summary


@pytest.fixture
def sleeper() -> Iterator[Callable[[Path], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(cwd: Path) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=cwd,
                                start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def test_both_engines_see_a_process_in_the_tree_but_not_their_own_sessions(
        repo: Path, origin: Path, tmp_path: Path, sleeper: Callable[[Path], subprocess.Popen[bytes]]) -> None:
    here, there = local_tree(repo, tmp_path), node_clone(origin, tmp_path)
    outside, theirs = sleeper(tmp_path), [sleeper(here.path), sleeper(there.path)]
    local, node = local_stake(repo, here.path), judge(clone_facts(there.path))
    assert shape(local) == shape(node) and local.summary() == "1 process(es) running in it"
    assert [int(p.split()[0]) for p in local.processes + node.processes] == [p.pid for p in theirs]
    assert str(outside.pid) not in " ".join(local.processes + node.processes)
    # a session fleet stops itself before the prune (its process group) does not count
    assert local_stake(repo, here.path, frozenset([theirs[0].pid])).safe
    assert judge(clone_facts(there.path, ignore_groups=frozenset([theirs[1].pid]))).safe


def test_a_failing_git_refuses_instead_of_reading_as_nothing(origin: Path, tmp_path: Path) -> None:
    there = node_clone(origin, tmp_path)
    (there.path / ".git" / "index").write_bytes(b"DIRC garbage")
    with pytest.raises(FleetError, match="cannot tell what is at stake"):
        clone_facts(there.path)


# ---- (c) archiving: one routine, one name ---------------------------------------------------


def test_archive_refs_have_one_name_in_every_engine() -> None:
    when = datetime(2026, 11, 26, 2, 56, 19, 717026, tzinfo=timezone.utc)
    assert archive_ref("demo", "fix-auth", when) == "refs/fleet/archive/demo/fix-auth/20261126T025619717026Z"
    assert re.fullmatch(r"refs/fleet/archive/f/a/\d{8}T\d{12}Z", archive_ref("f", "a"))


def test_the_snapshot_holds_the_tree_and_every_tip_and_leaves_the_index_alone(repo: Path, origin: Path,
                                                                             tmp_path: Path) -> None:
    there = node_clone(origin, tmp_path)
    _commit(there)
    _stash(there)
    (there.path / "README.md").write_text("edited\n")
    git(there.path, "add", "README.md")
    (there.path / "README.md").write_text("edited again\n")
    (there.path / "notes.txt").write_text("untracked\n")
    index = (there.path / ".git" / "index").read_bytes()
    stash = git(there.path, "rev-parse", "refs/stash").strip()
    commit = snapshot_commit(there.path, ["HEAD", BRANCH, stash, "HEAD", "no-such-ref"], "snap", tree=there.path)
    assert (there.path / ".git" / "index").read_bytes() == index
    assert git(there.path, "show", f"{commit}:README.md") == "edited again\n"
    assert git(there.path, "show", f"{commit}:notes.txt") == "untracked\n"
    parents = git(there.path, "rev-list", "--parents", "-1", commit).split()[1:]
    assert parents == [git(there.path, "rev-parse", "HEAD").strip(), stash]


class NodeActor(SessionActor):
    """The actor's methods on a clone, without Ray (Ray's part of `__init__` is the node's identity)."""

    def __init__(self, home: Path, remote: Path) -> None:
        self.cfg = SessionConfig(fleet="t", agent="w-a00", remote=str(remote), branch=BRANCH, base="main",
                                 workdir=str(home))
        self.node_id, self.node_ip, self.hostname, self.instance = "n" * 16, "127.0.0.1", "node", "i"
        self.home, self.clone = home, home / "repo"
        self.log, self.exit_file = home / "session.log", home / "exit.json"
        self._lock, self._push_lock = threading.RLock(), threading.Lock()
        self.state, self.proc, self.launch = "exited", None, None
        self.exit_code = self.error = self.started_at = self.finished_at = self.cannot_start = None
        self.push_error, self.last_push = None, None


@pytest.fixture
def actor(origin: Path, tmp_path: Path) -> NodeActor:
    node_clone(origin, tmp_path)
    return NodeActor(tmp_path / "node", origin)


@pytest.mark.parametrize(("make", "refused"), [
    (_nested, "1 nested git repo(s) in the clone"),
    (_merge, "merge in progress in the clone"),
], ids=["nested repo", "merge"])
def test_release_keeps_a_clone_no_archive_can_hold(actor: NodeActor, make: Callable[[Tree], None],
                                                   refused: str) -> None:
    make(Tree(actor.clone, side="origin/side"))
    saved = actor.release(archive_ref("t", "w-a00"))
    assert (saved["ok"], saved["refused"]) == (False, refused)
    assert actor.clone.is_dir()


def test_release_refuses_a_hidden_edit_then_archives_it(actor: NodeActor, origin: Path) -> None:
    _flagged("--skip-worktree", edit=True)(Tree(actor.clone, side=""))
    saved = actor.release(None)
    assert (saved["ok"], saved["refused"]) == (False, "1 uncommitted file(s)")
    assert saved["stake"]["facts"]["hidden_edits"] == ["README.md"] and actor.clone.is_dir()
    ref = archive_ref("t", "w-a00")
    saved = actor.release(ref)
    assert (saved["ok"], saved["archived"]) == (True, ref)
    assert git(origin, "show", f"{ref}:README.md") == "hidden from git status\n"
    assert not actor.home.exists()


def test_release_pushes_the_branch_and_frees_a_clean_clone(actor: NodeActor, origin: Path) -> None:
    _commit(Tree(actor.clone, side=""))
    saved = actor.release(None)
    assert (saved["ok"], saved["archived"]) == (True, None)
    assert "the agent's work" in git(origin, "log", "--format=%s", "-1", BRANCH)
    assert not actor.home.exists()


def test_release_keeps_a_clone_with_a_process_in_it_but_not_for_its_own_session(
        actor: NodeActor, sleeper: Callable[[Path], subprocess.Popen[bytes]]) -> None:
    session = sleeper(actor.clone)
    with actor._lock:
        actor.state, actor.proc = "running", session
    assert actor.status()["processes"] == []  # its own session, stopped before any release
    with actor._lock:
        actor.state = "exited"  # ended, yet something it left still works in the clone
    assert len(actor.status()["processes"]) == 1
    saved = actor.release(archive_ref("t", "w-a00"))
    assert (saved["ok"], saved["refused"]) == (False, "1 process(es) running in the clone")
    assert actor.clone.is_dir()


# -- the reachability rule, pure (observe/stake.py `anchors`) ---------------------------------------


REFS = ("refs/heads/main", "refs/heads/fleet/t/a", "refs/heads/fleet/t/b", "refs/heads/topic",
        "refs/remotes/origin/main", "refs/remotes/origin/HEAD", "refs/remotes/self/x", "refs/remotes/up/stream/y",
        "refs/remotes/gone/z", "refs/fleet/archive/t/a/20260101T000000000000Z", "refs/tags/v1")


@pytest.mark.parametrize("base_ref, branch, extra, expected", [
    # the tip of base, a real remote's tracking refs (not ".", not its HEAD), archives
    ("refs/heads/main", "fleet/t/a", (), ["refs/heads/main", "refs/remotes/origin/main", "refs/remotes/up/stream/y",
                                         "refs/fleet/archive/t/a/20260101T000000000000Z"]),
    # a base that is an owned branch anchors nothing (and is a validation error: owned_base)
    ("refs/heads/fleet/t/b", "fleet/t/a", (), ["refs/remotes/origin/main", "refs/remotes/up/stream/y",
                                              "refs/fleet/archive/t/a/20260101T000000000000Z"]),
    # the branch itself never anchors, nor does an owned branch passed as an extra; a kept user branch does
    ("refs/heads/main", "fleet/t/a", ("refs/heads/fleet/t/a", "refs/heads/fleet/t/b", "refs/heads/topic"),
     ["refs/heads/main", "refs/remotes/origin/main", "refs/remotes/up/stream/y",
      "refs/fleet/archive/t/a/20260101T000000000000Z", "refs/heads/topic"]),
], ids=["base-remote-archive", "owned-base", "extras"])
def test_anchors_are_exactly_the_rule(base_ref: str, branch: str, extra: tuple[str, ...],
                                      expected: list[str]) -> None:
    facts = RefFacts(refs=REFS, remotes=(("origin", "https://example.invalid/r.git"), ("self", "."),
                                         ("up/stream", "git@host:r.git"), ("gone", "")),
                     owned=frozenset({"fleet/t/a", "fleet/t/b"}), base_ref=base_ref, base_commit="c0ffee")
    assert anchors(facts, base="x", branch=branch, extra=extra) == expected


def test_owned_base_and_missing_base() -> None:
    owned = frozenset({"fleet/t/a"})
    assert owned_base(RefFacts(owned=owned, base_ref="refs/heads/fleet/t/a"), "fleet/t/a") == "fleet/t/a"
    assert owned_base(RefFacts(owned=owned, base_ref="refs/heads/main"), "main") is None
    assert owned_base(RefFacts(owned=owned, base_ref=None), "c0ffee") is None
    assert anchors(RefFacts(refs=("refs/heads/main",), base_ref="refs/heads/main"), base="main", branch=None) == []


def test_stake_tips_and_protected_globs() -> None:
    assert stake_tips("b", "abc", ["0" * 40, "abc", "def"]) == ["refs/heads/b", "abc", "def"]
    assert stake_tips(None, None) == []
    globs = (".env", ".env.*", "secrets/*.key")
    assert [p for p in (".env", "app/.env.local", "env", "secrets/a.key", "x/secrets/a.key", "a.key")
            if protected(p, globs)] == [".env", "app/.env.local", "secrets/a.key"]
