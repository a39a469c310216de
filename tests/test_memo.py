"""What the loop remembers between ticks (store/memo.py) is what a fresh read gives.

The records, exit records and the worktree list are each read again only when a file they
came from changed; these pin that the memo never answers with something stale: after any
change a tool makes (git, an editor writing in place, a hand `rm -rf`), the memo's answer
equals a read without it. The racy window is moved out of the way by an injected clock
(`LATE`), so the memo keeps everything it can and each test checks the stat keys alone;
`next_tick` then waits (by touching a file, not by sleeping) until the filesystem's
timestamp has moved on, as the real racy window guarantees.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pytest
from conftest import git, next_tick, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.observe.gitrepo import MARKER, GitRepo
from reconciler.store.memo import RACY_NS, Memo, stat_key
from reconciler.store.records import SessionRecord, StateStore


def late() -> int:
    """"Now", past the racy window of every file written so far: everything is kept."""
    return time.time_ns() + RACY_NS + 10**9


def asked(memo: Memo[object]) -> Any:
    """How the memo is asked: the loop's watched memo in a look (as a pass asks it), a plain one
    as `fleet status` and the dashboard ask it, outside any."""
    return memo.look() if memo.watch is not None else nullcontext()


WATCHED = pytest.mark.parametrize("watch", [False, True], ids=["stat", "watched"])


# ---------------------------------------------------------------------------- the rule itself

def reading(clock: list[int]) -> Callable[[], int]:
    """A clock the test sets: `clock[0]`."""
    return lambda: clock[0]


def test_a_file_changed_within_the_racy_window_is_not_remembered() -> None:
    memo: Memo[str] = Memo(clock_ns=lambda: 10 * RACY_NS)
    old = (1, 10, 5 * RACY_NS, 5 * RACY_NS)
    just_now = (1, 10, 10 * RACY_NS - 1, 10 * RACY_NS - 1)
    touched = (1, 10, 5 * RACY_NS, 10 * RACY_NS - 1)  # chmod or in-place write: ctime moved
    for keys, kept in [((old,), True), ((just_now,), False), ((touched,), False), ((old, None), True),
                       ((old, just_now), False)]:
        memo.forget()
        memo.keep("x", keys, "value", memo.started())
        assert (memo.get("x", keys) == "value") is kept, keys
    memo.keep("x", (old,), "value", memo.started())
    assert memo.get("x", ((2, 10, 5 * RACY_NS, 5 * RACY_NS),)) is None  # another inode: read again
    memo.keep("x", (just_now,), "newer", memo.started())
    assert memo.peek("x") is None  # a racy value replaces nothing: what was kept is forgotten
    # the wall clock stepped back during a read: a file written then looks older than it is
    second = 10**9
    for step, write_at, keep_at, kept in [
        (3 * RACY_NS, second // 10, second // 5, False),  # a short read, a big step
        (5 * second // 2, second // 10, 3 * second, False),  # a step of 2.5 s in a read of 3 s
        (0, second // 10, 3 * second, False),  # no step: written 0.1 s into the read, too recent
        (0, -3 * second, 3 * second, True),  # no step, a long read of an old file: kept
        (second // 2, -3 * second, second, True),  # a step of 0.5 s: an old file is still old
    ]:
        wall, mono = [10 * RACY_NS], [0]
        stepped: Memo[str] = Memo(clock_ns=reading(wall), monotonic_ns=reading(mono))
        started = stepped.started()
        mono[0] += write_at
        wall[0] += write_at - step
        written = (1, 10, wall[0], wall[0])
        mono[0] += keep_at - write_at
        wall[0] += keep_at - write_at
        stepped.keep("x", (written,), "read while it was written", started)
        assert (stepped.peek("x") is not None) is kept, (step, write_at, keep_at)
    memo.keep("a", (old,), "kept", memo.started())
    memo.keep("b", (old,), "gone", memo.started())
    memo.sweep()
    assert memo.get("a", (old,)) == "kept"
    memo.sweep()  # only "a" was asked for since the last sweep
    assert (memo.peek("a"), memo.peek("b")) == ("kept", None)


# ---------------------------------------------------------------------------- records

def records(tmp_path: Path, memo: Memo[object] | None) -> StateStore:
    return StateStore(tmp_path / "home", "t", memo=memo)


@WATCHED
def test_records_and_exit_records_are_read_again_whenever_their_files_change(tmp_path: Path, watch: bool) -> None:
    memo: Memo[object] = Memo(clock_ns=late, watch=watch)

    def all_() -> dict[str, SessionRecord]:
        with asked(memo):
            return store.all()

    def exit_(name: str) -> Any:
        with asked(memo):
            return store.load_exit(name)

    store, fresh = records(tmp_path, memo), records(tmp_path, None)
    store.save(SessionRecord(agent="a1", fleet="t", attempts=1))
    store.save(SessionRecord(agent="a2", fleet="t"))
    assert all_() == fresh.all()
    first = all_()
    first["a1"].attempts = 99
    first["a1"].set_condition("Ready", "True", "Changed", "in memory only")
    again = all_()["a1"]
    assert (again.attempts, again.conditions) == (1, [])  # what a pass changes in memory is its own copy
    assert memo.hits >= 2
    assert memo.watch is None or memo.watch.served >= 2  # watched: known without a stat
    next_tick(tmp_path)
    store.save(SessionRecord(agent="a1", fleet="t", attempts=2))  # atomic replace: a new inode
    assert all_()["a1"].attempts == 2
    path = store.path("a2")
    next_tick(tmp_path)
    text = path.read_text().replace('"attempts": 0', '"attempts": 7')
    with open(path, "r+") as f:  # an editor writing in place, the same size: mtime and ctime move
        f.write(text)
    assert all_()["a2"].attempts == 7
    path.write_text("{ not json")
    assert "unreadable" in (all_()["a2"].reason or "")  # reported as a read without memo reports it
    next_tick(tmp_path)
    store.save(SessionRecord(agent="a2", fleet="t", attempts=3))
    assert all_()["a2"].attempts == 3
    path.unlink()
    assert sorted(all_()) == ["a1"]
    exit_path = store.exit_path("a1")
    exit_path.write_text(json.dumps({"pid": 7, "exit_code": 0, "finished_at": "then"}))
    assert exit_("a1") == fresh.load_exit("a1")
    assert exit_("a1").exit_code == 0  # type: ignore[union-attr]
    next_tick(tmp_path)
    exit_path.write_text(json.dumps({"pid": 7, "exit_code": 3, "finished_at": "then"}))
    assert exit_("a1").exit_code == 3  # type: ignore[union-attr]
    exit_path.write_text("{")
    assert exit_("a1").corrupt is not None  # type: ignore[union-attr]
    exit_path.unlink()
    assert exit_("a1") is None


@WATCHED
def test_exit_records_are_read_as_they_are_now_even_inside_a_look(tmp_path: Path, watch: bool) -> None:
    """A session ends after the pass's look began: its exit record, written then, is what
    `load_exits` reads (observe reads them last for that reason), whatever the look or the
    watch knew of the file before."""
    memo: Memo[object] = Memo(clock_ns=late, watch=watch)
    store = records(tmp_path, memo)
    store.save(SessionRecord(agent="a1", fleet="t"))
    with memo.look():
        assert store.load_exits(["a1"]) == {"a1": None}
    with memo.look():
        assert store.load_exit("a1") is None  # the look has its key now: no exit record
        store.exit_path("a1").write_text(json.dumps({"pid": 7, "exit_code": 0, "finished_at": "then"}))
        ended = store.load_exits(["a1"])["a1"]
    assert ended is not None and ended.exit_code == 0
    memo.close()


@WATCHED
def test_reading_the_exit_records_afresh_leaves_the_rest_of_the_look_one_reading(repo: Path, watch: bool) -> None:
    """`load_exits` restats the exit records only: the tree list asked again later in the same
    look (delivery's observation asks it after the snapshot's) is the answer the look gave
    before, though a tree moved in between; the next look reads the move."""
    _add(repo, "w0")
    memo: Memo[object] = Memo(clock_ns=late, watch=watch)
    handle = GitRepo(repo, memo=memo)
    store = StateStore(repo.parent / "home", "t", memo=memo)
    with memo.look():
        handle.worktrees()  # remembered from here on
    next_tick(repo.parent)
    with memo.look():
        before = handle.worktrees()
        git(repo / ".fleet" / "w0", "commit", "-q", "--allow-empty", "-m", "the agent commits meanwhile")
        store.load_exits(["a1"])
        assert handle.worktrees() == before
    with memo.look():
        assert handle.worktrees() == GitRepo(repo).worktrees() != before
    memo.close()


def test_records_still_in_the_old_home_are_read_without_the_memo(tmp_path: Path) -> None:
    legacy = tmp_path / "old"
    StateStore(legacy, "t").save(SessionRecord(agent="a1", fleet="t"))
    store = StateStore(tmp_path / "home", "t", legacy=legacy, memo=Memo(clock_ns=late))
    assert sorted(store.all()) == ["a1"]
    assert store._memo is None


# ---------------------------------------------------------------------------- the worktree list

def _add(repo: Path, name: str) -> None:
    git(repo, "worktree", "add", "-q", "-b", f"fleet/t/{name}", str(repo / ".fleet" / name), "main")
    admin = Path(git(repo / ".fleet" / name, "rev-parse", "--absolute-git-dir").strip())
    (admin / MARKER).write_text(json.dumps({"fleet": "t", "repo": str(repo / ".git"), "agent": name,
                                            "branch": f"fleet/t/{name}"}))


def _trees(repo: Path) -> list[Path]:
    root = repo / ".fleet"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _op(repo: Path, op: str, pick: int) -> None:
    trees = _trees(repo)
    tree = trees[pick % len(trees)] if trees else None
    if op == "add" or tree is None:
        _add(repo, f"w{len(list((repo / '.git' / 'worktrees').glob('*'))) + pick}")
    elif op == "commit":
        (tree / "f.txt").write_text(f"{pick}\n")
        git(tree, "add", "f.txt")
        git(tree, "commit", "-q", "-m", "work")
    elif op == "remove":
        git(repo, "worktree", "remove", "--force", str(tree))
    elif op == "lock":
        git(repo, "worktree", "lock", "--reason", "why", str(tree))
    elif op == "unlock":
        git(repo, "worktree", "unlock", str(tree))  # fails when not locked: so does nothing
    elif op == "delete-by-hand":
        shutil.rmtree(tree)
    elif op == "detach":
        git(tree, "checkout", "-q", "--detach")
    elif op == "switch":
        git(tree, "checkout", "-q", "-B", f"other/{pick}")
    elif op == "pack-refs":
        git(repo, "pack-refs", "--all")
    elif op == "marker-in-place":
        admin = Path(git(tree, "rev-parse", "--absolute-git-dir").strip())
        marker = admin / MARKER
        if marker.exists():
            marker.write_text(marker.read_text().replace('"t"', '"u"', 1))
    elif op == "main-commit":
        git(repo, "commit", "-q", "--allow-empty", "-m", "main moves")
    elif op == "move":
        git(repo, "worktree", "move", str(tree), str(tree.parent / f"{tree.name}-moved"))
    elif op == "prune":
        git(repo, "worktree", "prune")
    elif op == "move-branch":  # from elsewhere (a fetch, `git branch -f`): nothing in the tree's admin dir moves
        branch = git(tree, "rev-parse", "--abbrev-ref", "HEAD").strip()
        if branch != "HEAD":
            sha = git(repo, "commit-tree", "main^{tree}", "-p", branch, "-m", "elsewhere").strip()
            git(repo, "update-ref", f"refs/heads/{branch}", sha)


OPS = ["add", "commit", "remove", "lock", "unlock", "delete-by-hand", "detach", "switch", "pack-refs",
       "marker-in-place", "main-commit", "move", "prune", "move-branch"]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 5)), min_size=1, max_size=10))
@WATCHED
def test_the_remembered_worktree_list_is_the_fresh_one_after_any_change(watch: bool,
                                                                      steps: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        git(repo, "commit", "-q", "--allow-empty", "-m", "initial")
        _add(repo, "w0")
        _add(repo, "w1")
        memo: Memo[object] = Memo(clock_ns=late, watch=watch)
        remembered = GitRepo(repo, memo=memo)

        def trees() -> object:
            with asked(memo):
                return remembered.worktrees()

        next_tick(Path(tmp))
        assert trees() == GitRepo(repo).worktrees()
        for op, pick in steps:
            try:
                _op(repo, op, pick)
            except Exception:  # noqa: BLE001 - an op git refuses (unlock of an unlocked tree) changes nothing
                pass
            next_tick(Path(tmp))
            hits = memo.hits
            assert trees() == GitRepo(repo).worktrees(), (op, pick)
            served = memo.watch.served if memo.watch is not None else 0
            # asked again with nothing changed, it answers from memory (watched: without a stat)
            assert trees() == GitRepo(repo).worktrees()
            assert memo.hits > hits
            assert memo.watch is None or memo.watch.served > served
        memo.close()


def test_an_unchanged_worktree_list_is_not_asked_of_git_again(repo: Path) -> None:
    _add(repo, "w0")
    memo: Memo[object] = Memo(clock_ns=late)
    first = GitRepo(repo, memo=memo).worktrees()
    git_dir = repo / ".git"
    assert stat_key(os.fspath(git_dir / "worktrees")) is not None
    # `git worktree list` is not run: a repo whose git is gone from PATH still answers
    path = os.environ["PATH"]
    try:
        os.environ["PATH"] = ""
        assert GitRepo(repo, memo=memo).worktrees() == first
    finally:
        os.environ["PATH"] = path


# ---------------------------------------------------------------------------- branch marks

@contextmanager
def marks_repo() -> Iterator[Path]:
    """A fresh repo with one commit on main, in a directory of its own (hypothesis runs many)."""
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        git(repo, "commit", "-q", "--allow-empty", "-m", "initial")
        yield repo


MARK_OPS = ["mark", "delete", "recreate", "pack-refs", "commit", "config-mark", "file-in-place", "protect"]


def _mark_op(repo: Path, op: str, pick: int) -> None:
    from reconciler.act.branch_marks import mark_branch

    branch = f"fleet/t/b{pick % 3}"
    exists = bool(git(repo, "branch", "--list", branch).strip())
    if op == "mark":
        if not exists:
            git(repo, "branch", branch, "main")
        mark_branch(GitRepo(repo), "t", branch)
    elif op == "delete" and exists:
        git(repo, "branch", "-D", branch)
    elif op == "recreate":  # deleted and made again: another identity, no longer the fleet's
        if exists:
            git(repo, "branch", "-D", branch)
        git(repo, "branch", branch, "main")
    elif op == "pack-refs":
        git(repo, "pack-refs", "--all")
    elif op == "commit" and exists:
        sha = git(repo, "commit-tree", "main^{tree}", "-p", branch, "-m", "more").strip()
        git(repo, "update-ref", f"refs/heads/{branch}", sha)
    elif op == "config-mark":  # an old mark, still in the repo config: moved to the file by the pass
        if not exists:
            git(repo, "branch", branch, "main")
        git(repo, "config", f"branch.{branch}.fleetOwner", "t")
    elif op == "file-in-place":
        marks = repo / ".git" / "fleet" / "branches" / "t.json"
        if marks.exists():
            marks.write_text(marks.read_text().replace('"protect": false', '"protect": true', 1))
    elif op == "protect" and exists:
        mark_branch(GitRepo(repo), "t", branch, protect=True)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(MARK_OPS), st.integers(0, 5)), min_size=1, max_size=10))
@WATCHED
def test_remembered_branch_marks_are_the_fresh_ones_after_any_change(watch: bool, steps: list[tuple[str, int]]) -> None:
    """The marks (who owns which branch, which are protected) and the pass's move of old config
    marks into the file: with the loop's memo, the same as without it, after any change."""
    from reconciler.act.branch_marks import migrate_marks

    with marks_repo() as repo:
        memo: Memo[object] = Memo(clock_ns=late, watch=watch)
        for op, pick in steps:
            _mark_op(repo, op, pick)
            next_tick(repo.parent)
            remembered = GitRepo(repo, memo=memo)
            with asked(memo):
                migrate_marks(remembered, "t")  # what a pass does first (it may write the file)
            marks_file = repo / ".git" / "fleet" / "branches" / "t.json"
            settled = marks_file.read_text() if marks_file.exists() else None
            assert migrate_marks(GitRepo(repo), "t") == 0, (op, pick)  # without the memo: nothing left to do
            assert (marks_file.read_text() if marks_file.exists() else None) == settled, (op, pick)
            next_tick(repo.parent)
            with asked(memo):
                assert remembered.marks() == GitRepo(repo).marks(), (op, pick)
            with asked(memo):
                assert GitRepo(repo, memo=memo).marks() == GitRepo(repo).marks(), (op, pick)
            with asked(memo):
                assert migrate_marks(GitRepo(repo, memo=memo), "t") == 0
            hits = memo.hits
            with asked(memo):
                assert migrate_marks(GitRepo(repo, memo=memo), "t") == 0
            assert memo.hits > hits, (op, pick)  # settled, and judged so from memory
        memo.close()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(MARK_OPS), st.integers(0, 5)), min_size=1, max_size=10))
@WATCHED
def test_marks_read_in_one_look_after_the_pass_moved_them_are_the_fresh_ones(watch: bool,
                                                                            steps: list[tuple[str, int]]) -> None:
    """A pass is one look (each file stat'ed once, `Memo.look`): the base check reads the marks,
    the move of old marks may then write the marks file, and observe reads them again. That
    read equals a fresh one, and what it keeps is keyed by the file as written (`Memo.restat`):
    a stat taken before the write is older, so it would only cost a read next tick, but the
    next pass over an unchanged repo must answer from memory."""
    from reconciler.act.branch_marks import migrate_marks

    with marks_repo() as repo:
        memo: Memo[object] = Memo(clock_ns=late, watch=watch)
        for op, pick in steps:
            _mark_op(repo, op, pick)
            next_tick(repo.parent)
            with memo.look():
                remembered = GitRepo(repo, memo=memo)
                remembered.marks()  # the base check's
                migrate_marks(remembered, "t")
                assert remembered.marks() == GitRepo(repo).marks(), (op, pick)
            next_tick(repo.parent)
            with memo.look():  # nothing changed since: the marks are answered from memory
                again = GitRepo(repo, memo=memo)
                assert migrate_marks(again, "t") == 0
                hits = memo.hits
                assert again.marks() == GitRepo(repo).marks(), (op, pick)
                assert memo.hits == hits + 1, (op, pick)


def test_a_look_stats_each_path_once_until_it_ends_or_fleet_writes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("one")
    memo: Memo[object] = Memo()
    first = memo.stat(str(path))
    with memo.look():
        assert memo.stat(str(path)) == first
        path.write_text("two, longer")
        assert memo.stat(str(tmp_path / "f")) == first  # the look's answer: taken once
        memo.restat()  # fleet wrote: what is asked next is stat'ed again
        assert memo.stat(str(path)) == stat_key(str(path)) != first
        path.unlink()
        assert memo.stat(str(path)) is not None
    assert memo.stat(str(path)) is None  # outside a look: a stat each time


def test_a_record_file_that_is_json_but_no_object_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    # `fleet diff` must not crash on a record a hand or a bug left as `[]`; a newer fleet's
    # record (a key this version does not know) is read without it
    for memo in (None, Memo(clock_ns=late)):
        store = records(tmp_path / str(memo is None), memo)
        store.save(SessionRecord(agent="a", fleet="t"))
        store.path("a").write_text("[]")
        store.path("b").write_text(json.dumps({"agent": "b", "fleet": "t", "attempts": 2, "fromTheFuture": 1}))
        found = store.all()
        assert "unreadable" in (found["a"].reason or "")
        assert found["b"] == SessionRecord(agent="b", fleet="t", attempts=2)


def test_only_the_temp_files_of_killed_writes_are_swept(tmp_path: Path) -> None:
    store = records(tmp_path, None)
    store.save(SessionRecord(agent="a", fleet="t"))
    kept = ["a.json", ".tmp", "x.tmp", ".hidden", "a.json.tmp"]
    swept = [".a.json.1234.tmp", "..tmp"]
    for name in kept[1:] + swept:
        (store.dir / name).write_text("{")
    store.sweep_temp()
    assert sorted(os.listdir(store.dir)) == sorted(kept)
    records(tmp_path / "none", None).sweep_temp()  # no state directory yet: nothing to do


# ---------------------------------------------------------------------------- a pass's look and the lock

def test_what_was_written_while_the_pass_waited_for_the_lock_is_what_it_observes(repo: Path) -> None:
    """A pass's look begins before it takes the fleet lock (the base check reads in it); what a
    `fleet apply` holding the lock writes meanwhile is read afresh once the lock is taken, the
    watched memo's word on those files from before the wait notwithstanding."""
    import threading

    import agents

    from reconciler.control.converge import reconcile_once
    from reconciler.locking.fleet_lock import fleet_lock
    from reconciler.observe.snapshot import fleet_home, state_store
    from reconciler.spec.loader import load_fleet

    agents.fleet_yaml(repo, '- {name: w-a, tier: local, command: ["true"], restart: Never}')
    loaded = load_fleet(repo / "fleet.yaml")
    memo: Memo[object] = Memo(clock_ns=late, watch=True)
    reconcile_once(loaded, memo=memo)
    store = state_store(GitRepo(repo), "t")
    wait_until(lambda: store.load_exit("w-a") is not None)
    reconcile_once(loaded, memo=memo)  # the record settles: Succeeded
    reconcile_once(loaded, memo=memo)  # and is known, watched
    seen: list[int] = []

    class Seen(Exception):
        pass

    def planner(observed):  # type: ignore[no-untyped-def]
        seen.append(observed.agents["w-a"].record.attempts)
        raise Seen

    waiting = threading.Event()
    errors: list[BaseException] = []

    def other_pass() -> None:
        try:
            reconcile_once(loaded, memo=memo, lock_timeout=30, on_wait=lambda who: waiting.set(), planner=planner)
        except Seen:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            errors.append(exc)

    with fleet_lock(fleet_home(GitRepo(repo)), "t", timeout=5, command="the test"):
        thread = threading.Thread(target=other_pass)
        thread.start()
        assert waiting.wait(30)
        record = store.load("w-a")
        assert record is not None and record.attempts == 1
        record.attempts = 42  # what the holder of the lock writes while the pass waits
        store.save(record)
    thread.join(60)
    assert not errors and seen == [42]
    memo.close()


def test_a_tree_a_prune_removes_while_git_lists_it_is_seen_pruning(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The markers are read while `git worktree list` runs; a prune by a lock holder (seen by an
    unlocked `fleet diff` or `fleet status`) that writes its intent and removes the tree just
    after its markers were read leaves a tree git lists, gone from disk: it is read as being
    pruned (its intent read again after the list), not as a tree deleted by hand."""
    from reconciler.observe import gitrepo

    _add(repo, "w0")
    tree = repo / ".fleet" / "w0"
    admin = Path(git(tree, "rev-parse", "--absolute-git-dir").strip())
    read_scratch = gitrepo.read_scratch

    def then_pruned(admin_dir: str | Path) -> str | None:
        found = read_scratch(admin_dir)  # the tree's last marker: all three were read
        if tree.exists():
            (admin / gitrepo.PRUNE_INTENT).write_text(json.dumps({"archive": None, "commit": None}))
            shutil.rmtree(tree)
        return found

    monkeypatch.setattr(gitrepo, "read_scratch", then_pruned)
    [seen] = GitRepo(repo).worktrees()[1]
    assert (seen.exists, seen.pruning is not None) == (False, True)
