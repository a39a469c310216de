"""Which `stat` answers the loop's memo may give again without a `stat`: inotify watches on
the directories of the paths it asked (store/memo.py `Memo(watch=True)`).

A no-op tick at 1,000 agents stats ~8,000 files (each record, exit record, worktree admin
dir, marker, branch ref and reflog) to learn that none changed: a third of the tick. With a
watch, a path's key is taken once and given again until the kernel reports a change that can
move it. Every change to a name in a directory (created, deleted, renamed over or away, written
in place, truncated, chmod/touch) is an event of that directory's watch naming it; the
directory's own key moves with its entries, which are its own watch's events. So a path is
*covered* only when its directory and every directory above it, up to `/`, are watched: a
renamed or deleted ancestor is an event naming it, and everything known under it is
forgotten. Events are read at the start of each look (`refresh`), so a change made before a
look begins is seen by it.

Not covered, so `stat`ed every time as without a watch: a path that is a symlink or lies
under one (the link's target changes where no watch looks), a directory inotify refuses (no
read permission, the watch limit reached), and everything when inotify cannot be had.

What no directory watch sees: a write through a hard link in another directory, a hard link
to the file made or removed in another directory (its ctime moves, no event names it here), a
change made by another machine on a network filesystem, a mount over a directory. Those reach the loop at
the next full refresh: every `REFRESH_NS` of the monotonic clock (and after the event queue
overflowed) everything is forgotten and the watches are made again, so a missed change is
believed for 30 s at most.
Only observation uses this; the checks right before an action stat and read afresh (act/).
"""
from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Callable

from inotify_simple import INotify, flags

from .memo import Key, stat_key

REFRESH_NS = 30_000_000_000

_ENTRIES = flags.CREATE | flags.DELETE | flags.MOVED_FROM | flags.MOVED_TO  # the directory's own key moves
_SELF_GONE = flags.DELETE_SELF | flags.MOVE_SELF | flags.IGNORED | flags.UNMOUNT
# a directory, not a symlink to one (a link's target changes where no watch looks)
_DIR_ONLY = flags.ONLYDIR | flags.DONT_FOLLOW
# a directory above the paths asked (or asked itself) needs its names' comings and goings and
# chmods only: files written in place in /tmp or a home directory are not the loop's business
_ABOVE = _ENTRIES | flags.ATTRIB | flags.DELETE_SELF | flags.MOVE_SELF | _DIR_ONLY
# a directory holding paths asked: their writes in place too
_HOLDING = _ABOVE | flags.MODIFY | flags.CLOSE_WRITE
_MISSING = "missing"  # `_chain`: the directory does not exist (and the one it would be in is watched)
_UNKNOWN = object()


class StatWatch:
    """Stat keys of absolute paths, each taken once and kept until inotify reports a change
    that can move it (see the module docstring)."""

    def __init__(self, monotonic_ns: Callable[[], int] = time.monotonic_ns,
                 open_inotify: Callable[[], INotify] | None = None) -> None:
        # monotonic, not the memo's wall clock: a clock stepped back must not put off the refresh
        self._monotonic_ns = monotonic_ns
        self._open = open_inotify or (lambda: INotify(nonblocking=True))
        # observe asks from one thread (its pools only wait on git), but covering a path is
        # several steps (watch, stat, remember) that a refresh or cover from another thread
        # must not interleave: a refresh between the stat and the remember would drop the
        # event of a write in between, and the key from before it would be believed. A known
        # key is given without the lock: one dict read. (The memo around it is one thread's.)
        self._lock = threading.Lock()
        self._inotify: INotify | None = None
        self._since = 0  # when the watches were last made afresh
        self._known: dict[str, Key] = {}  # path -> its key when last stat'ed, no change reported since
        self._under: dict[str, set[str]] = {}  # directory -> paths known or watched in it
        self._wd: dict[str, int] = {}  # watched directory -> watch descriptor
        self._dir: dict[int, str] = {}  # watch descriptor -> directory
        self._holding: set[str] = set()  # watched with _HOLDING
        self._refused: set[str] = set()  # directories inotify refused: not asked again until the next refresh
        self.served = 0  # keys given without a stat (tests count them)

    @property
    def usable(self) -> bool:
        return self._inotify is not None

    def key(self, path: str) -> Key:
        """`stat_key(path)`, from what is known while no change was reported."""
        key = self._known.get(path, _UNKNOWN)
        if key is not _UNKNOWN:
            self.served += 1
            return key  # type: ignore[return-value]
        with self._lock:
            return self._cover(path)

    def refresh(self) -> None:
        """Forget what changed since the last call; every REFRESH_NS, or when events were lost
        (the queue overflowed), forget everything and make the watches again."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        now = self._monotonic_ns()
        if self._inotify is None or now - self._since >= REFRESH_NS:
            self._reset(now)
            return
        try:
            events = self._inotify.read(timeout=0)
        except OSError:
            self._reset(now)
            return
        for wd, mask, _cookie, name in events:
            if mask & flags.Q_OVERFLOW:
                self._reset(now)
                return
            directory = self._dir.get(wd)
            if directory is None:
                continue  # a watch already dropped
            if not name:  # the directory itself
                # deleted or moved: the directory above it said so too (it is watched), but a
                # watch the kernel dropped (unmounted) says so only here, and its descriptor
                # must not name the directory any more
                if mask & _SELF_GONE:
                    self._forget(directory)
                else:
                    self._known.pop(directory, None)
                continue
            path = f"{directory}/{name}" if directory != "/" else f"/{name}"
            if mask & _ENTRIES:
                self._known.pop(directory, None)
                self._forget(path)  # another file (or none) under that name now: all under it too
            else:
                self._known.pop(path, None)  # written or touched: the same file, its key moved

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None

    def _reset(self, now: int) -> None:
        self._close()
        for kept in (self._known, self._under, self._wd, self._dir):
            kept.clear()
        self._holding.clear()
        self._refused.clear()
        self._since = now
        try:
            self._inotify = self._open()
        except OSError:  # no inotify here, or the per-user limit of instances reached: stat everything
            self._inotify = None

    def _forget(self, path: str) -> None:
        """Forget `path` and everything known or watched under it."""
        self._known.pop(path, None)
        self._refused.discard(path)
        self._holding.discard(path)
        wd = self._wd.pop(path, None)
        if wd is not None:
            self._dir.pop(wd, None)
            try:
                assert self._inotify is not None
                self._inotify.rm_watch(wd)
            except OSError:  # gone with its directory already
                pass
        for below in self._under.pop(path, ()):
            self._forget(below)

    def _cover(self, path: str) -> Key:
        """Stat `path` and remember its key if it is covered; else only stat it."""
        if self._inotify is None or not path.startswith("/") or path == "/":
            return stat_key(path)
        parent = path.rpartition("/")[0] or "/"
        chain = self._chain(parent)
        if chain is None:
            return stat_key(path)
        if chain is _MISSING:
            return self._remember(path, parent, None)  # under a directory that does not exist: its creation is an event
        if parent not in self._holding:
            # watched for writes in place before the stat: a write after it is an event
            if self._watch(parent, _HOLDING) is None:
                return stat_key(path)
            self._holding.add(parent)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return self._remember(path, parent, None)
        if stat.S_ISLNK(st.st_mode):
            return stat_key(path)
        if stat.S_ISDIR(st.st_mode) and path not in self._wd:
            watched = self._watch(path, _ABOVE)
            if watched is None:
                return stat_key(path)
            return self._cover(path)  # stat'ed again now that its watch exists: a change in between is an event
        return self._remember(path, parent, (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))

    def _remember(self, path: str, parent: str, key: Key) -> Key:
        self._known[path] = key
        self._under.setdefault(parent, set()).add(path)
        return key

    def _chain(self, directory: str) -> str | bool | None:
        """True: `directory` and all above it are watched; _MISSING: it does not exist, and the
        directory it would be in is watched; None: it cannot be watched."""
        if directory in self._wd:
            return True
        if directory in self._refused:
            return None
        if directory in self._known and self._known[directory] is None:
            return _MISSING
        parent = directory.rpartition("/")[0] or "/"
        if directory != "/":
            above = self._chain(parent)
            if above is None:
                return None
            if above is _MISSING:
                self._remember(directory, parent, None)
                return _MISSING
        watched = self._watch(directory, _ABOVE)
        if watched is _MISSING:
            if directory == "/":
                return None
            self._remember(directory, parent, None)
            return _MISSING
        return None if watched is None else True

    def _watch(self, directory: str, mask: int) -> int | str | None:
        """Watch `directory` (again, adding `mask` to what its watch has): its descriptor,
        _MISSING when it does not exist, None when refused."""
        assert self._inotify is not None
        try:
            # MASK_ADD: a directory already watched, for writes in place too, keeps them; also
            # when it is reached again by another path (a bind mount, refused below), where a
            # plain add_watch had already narrowed the one watch both paths share
            wd = self._inotify.add_watch(directory, mask | flags.MASK_ADD)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return _MISSING
            self._refused.add(directory)  # a symlink or a file (ENOTDIR), no permission, the watch limit
            return None
        if self._dir.get(wd, directory) != directory:  # the same directory by another path (a bind mount)
            self._refused.add(directory)
            return None
        self._wd[directory] = wd
        self._dir[wd] = directory
        if directory != "/":
            self._under.setdefault(directory.rpartition("/")[0] or "/", set()).add(directory)
        return wd
