"""The loop memo's watch (store/stat_watch.py) gives the key a `stat` would give, for every path.

Keys are given from memory while inotify reports no change that can move them; these pin that
no change a tool makes to a file, a directory or any directory above it (written in place,
replaced, deleted, renamed away with everything under it, chmod, a symlink swapped) leaves a
stale key, and that a path the watch cannot cover (under a symlink) is stat'ed every time.
Each step first waits (by touching a file, not by sleeping) until the filesystem's timestamp
has moved on, so a change always shows in a fresh `stat`.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import next_tick
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inotify_simple import INotify, flags

from reconciler.store.memo import Memo, stat_key
from reconciler.store.stat_watch import REFRESH_NS, StatWatch


class Clock:
    def __init__(self) -> None:
        self.now = 10**18

    def __call__(self) -> int:
        return self.now


# the paths asked after every step: files, directories, missing ones, and ones through a symlink
ASKED = ["a", "a/f", "a/g", "a/b", "a/b/h", "a/b/none/x", "c", "c/f", "c/h", "link", "link/f", "link/b/h", "d"]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _op(root: Path, op: str, pick: int) -> None:
    if not root.is_dir() and op != "root-back":
        return  # moved away: only moving it back does anything
    name = ["a/f", "a/g", "a/b/h", "c/f", "c/h"][pick % 5]
    target = root / name
    if op == "append":
        if target.exists():
            with open(target, "a") as f:
                f.write("more")
    elif op == "same-size-in-place":  # an editor writing over the file: only mtime and ctime move
        if target.exists():
            text = target.read_text()
            with open(target, "r+") as f:
                f.write(text[::-1])
    elif op == "replace":  # temp file, rename over: a new inode
        if target.parent.is_dir():
            tmp = target.parent / ".tmp"
            tmp.write_text(f"new {pick}")
            os.replace(tmp, target)
    elif op == "delete":
        if target.is_file():
            target.unlink()
    elif op == "create":
        if not target.exists() and not target.parent.is_file():
            _write(target, "x" * pick)
    elif op == "chmod":
        if target.exists():
            target.chmod(0o600 if pick % 2 else 0o644)
    elif op == "touch-old":  # a time set back: every field but ctime as it was before
        if target.exists():
            os.utime(target, ns=(10**18, 10**18))
    elif op == "rmtree":
        shutil.rmtree(root / ("a/b" if pick % 2 else "c"), ignore_errors=True)
    elif op == "mkdir":
        (root / ("a/b" if pick % 2 else "c")).mkdir(parents=True, exist_ok=True)
    elif op == "move-dir":  # a directory renamed, all under it with it
        src, dst = (root / "a/b", root / "c") if pick % 2 else (root / "c", root / "a/b")
        if src.is_dir() and not dst.exists():
            os.rename(src, dst)
    elif op == "swap-link":
        link = root / "link"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("a" if pick % 2 else "c")
    elif op == "write-through-link":
        if (root / "link").is_dir():
            (root / "link" / "f").write_text("through the link " * (pick + 1))
    elif op == "dir-for-file":  # d is a file, then a directory, then a file
        d = root / "d"
        if d.is_dir():
            shutil.rmtree(d)
            d.write_text("file")
        else:
            if d.exists():
                d.unlink()
            d.mkdir()
    elif op == "in-d":  # a name made or removed in a directory whose files are never asked: its own key moves
        d = root / "d"
        if d.is_dir():
            inside = d / f"n{pick % 2}"
            if inside.exists():
                inside.unlink()
            else:
                inside.write_text("")
    elif op == "root-away":  # an ancestor of every path renamed
        if root.is_dir():
            os.rename(root, root.with_name("moved"))
    elif op == "root-back":
        moved = root.with_name("moved")
        if moved.is_dir() and not root.exists():
            os.rename(moved, root)


OPS = ["append", "same-size-in-place", "replace", "delete", "create", "chmod", "touch-old", "rmtree", "mkdir",
       "move-dir", "swap-link", "write-through-link", "dir-for-file", "in-d", "root-away", "root-back"]


def _tree(top: Path) -> Path:
    root = top / "root"
    for name in ["a/f", "a/g", "a/b/h", "c/f"]:
        _write(root / name, name)
    (root / "link").symlink_to("a")
    return root


def _asked(root: Path) -> list[str]:
    return [f"{root}/{p}" for p in ASKED]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 9)), min_size=1, max_size=12))
def test_the_watched_key_is_the_stat_after_any_change(steps: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = _tree(Path(tmp))
        watch = StatWatch(Clock())
        try:
            watch.refresh()
            assert watch.usable
            for path in _asked(root):
                assert watch.key(path) == stat_key(path), path
            for op, pick in steps:
                next_tick(Path(tmp))
                _op(root, op, pick)
                watch.refresh()
                for path in _asked(root):
                    assert watch.key(path) == stat_key(path), (op, pick, path)
            # with nothing changed, every covered path is given from memory: all but the ones
            # through the symlink (and, while the root is moved away, the ones under it)
            watch.refresh()
            served = watch.served
            for path in _asked(root):
                assert watch.key(path) == stat_key(path)
            through_link = sum(p.startswith("link/") for p in ASKED)
            assert watch.served - served >= (len(ASKED) - 1 - through_link if root.exists() else 1)
        finally:
            watch.close()


def test_a_path_under_a_symlink_is_statted_every_time(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    watch = StatWatch(Clock())
    watch.refresh()
    through = f"{root}/link/f"
    watch.key(through)
    watch.key(through)
    assert watch.served == 0
    watch.key(f"{root}/a/f")
    assert watch.key(f"{root}/a/f") == stat_key(f"{root}/a/f")
    assert watch.served == 1
    watch.close()


def _max_queued() -> int:
    return int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())


def test_events_lost_to_a_full_queue_forget_everything(tmp_path: Path) -> None:
    """The kernel drops events once its queue is full (and says so): what changed then is not
    known, so nothing known is believed."""
    root = _tree(tmp_path)
    watch = StatWatch(Clock())
    watch.refresh()
    path = f"{root}/a/f"
    before = watch.key(path)
    busy = root / "a" / "g"
    watch.key(os.fspath(busy))  # a/ is watched for writes in place: each write below is an event
    with open(busy, "w") as f:
        for i in range(_max_queued() + 10):
            f.write("x")
            f.flush()
            os.utime(busy, ns=(i, i))  # another event between writes: the kernel merges only equal neighbours
    next_tick(tmp_path)
    Path(path).write_text("changed once the queue was full: its event is lost")
    watch.refresh()
    assert watch.key(path) == stat_key(path) != before
    watch.close()


def test_a_change_no_directory_watch_sees_is_believed_until_the_next_full_refresh(tmp_path: Path) -> None:
    """A write through a hard link in a directory nobody watches is not an event of the file's
    directory: the key is known again from a stat after REFRESH_NS at most."""
    root = _tree(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.link(root / "a" / "f", elsewhere / "f")
    clock = Clock()
    watch = StatWatch(clock)
    watch.refresh()
    path = f"{root}/a/f"
    watch.key(path)
    next_tick(tmp_path)
    (elsewhere / "f").write_text("written through the other name")
    clock.now += REFRESH_NS - 1
    watch.refresh()
    assert watch.key(path) != stat_key(path)  # believed: no event, and the refresh is not due
    clock.now += 1
    watch.refresh()
    assert watch.key(path) == stat_key(path)
    assert stat_key(path)[1] == len("written through the other name")  # type: ignore[index]
    watch.close()


def test_a_directory_covered_from_two_threads_keeps_the_watch_for_writes_in_place(tmp_path: Path) -> None:
    """Observe asks from a pool thread (the worktree list) and the main thread at once. One
    thread watches directory `a` as a path asked (entries only) while the other asks for a file
    in it (writes in place too): the watch must end up with the wider mask, or an in-place write
    to the file is never an event and its old key is believed. The first thread's `add_watch`
    is held until the second one's has gone through, or half a second (the watch's lock keeps
    the second one out meanwhile: then it goes second and nothing is lost; and a second
    `add_watch` adds to a watch's mask, never narrows it)."""
    import threading

    root = _tree(tmp_path)
    directory, path = f"{root}/a", f"{root}/a/f"
    held, widened = threading.Event(), threading.Event()

    class Held(INotify):
        def add_watch(self, where, mask):  # type: ignore[no-untyped-def]
            if where == directory and threading.current_thread().name == "asks-the-directory":
                held.set()
                widened.wait(0.5)
            wd = super().add_watch(where, mask)
            if where == directory and mask & flags.MODIFY:
                widened.set()
            return wd

    watch = StatWatch(Clock(), open_inotify=lambda: Held(nonblocking=True))
    watch.refresh()
    first = threading.Thread(target=watch.key, args=(directory,), name="asks-the-directory")
    first.start()
    assert held.wait(10)  # the first thread is in its cover, about to watch the directory
    watch.key(path)
    first.join()
    before = watch.key(path)
    next_tick(tmp_path)
    with open(path, "r+") as f:  # in place, the same size
        f.write(Path(path).read_text().upper())
    watch.refresh()
    assert watch.key(path) == stat_key(path) != before
    watch.close()


def test_without_inotify_every_key_is_a_stat(tmp_path: Path) -> None:
    def refused() -> INotify:
        raise OSError(24, "Too many open files")

    root = _tree(tmp_path)
    watch = StatWatch(Clock(), open_inotify=refused)
    watch.refresh()
    assert not watch.usable
    path = f"{root}/a/f"
    assert watch.key(path) == watch.key(path) == stat_key(path)
    assert watch.served == 0
    next_tick(tmp_path)
    Path(path).write_text("changed")
    assert watch.key(path) == stat_key(path)


@pytest.mark.parametrize("watch", [False, True])
def test_a_memo_closed_stats_again(tmp_path: Path, watch: bool) -> None:
    path = tmp_path / "f"
    path.write_text("one")
    memo: Memo[object] = Memo(watch=watch)
    with memo.look():
        first = memo.stat(str(path))
    memo.close()
    next_tick(tmp_path)
    path.write_text("two, longer")
    with memo.look():
        assert memo.stat(str(path)) == stat_key(str(path)) != first
