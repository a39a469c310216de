"""What the running loop remembers between ticks: files and answers kept by the `stat` of
what they were read from, so a tick reads again only what changed.

A `Memo` is held by one `fleet reconcile --watch` process (control/loop.py) and given to
its observation; a single `fleet apply`, `diff` or `status` has none and reads everything.
An entry is used again only while every file it was read from has the same inode, size,
mtime and ctime (an atomic replace makes a new inode; any write moves mtime and ctime,
which no tool can set back). As in git's index ("racy git"), an entry is kept only if
each of those files was last changed at least `RACY_NS` before the read began: a change
in the same timestamp tick as the read could leave every stat field as it was. Nor is
anything read while the wall clock was stepped back by a second or more (a file written
then would look older than it is), measured against the monotonic clock.

Never used for the checks right before an action (act/): those read afresh, whatever a
tick remembered.

Within one look (`Memo.look`: a pass's base check, move of old marks and observation, all
before it acts) each file is `stat`ed once: the marks' keys are asked three times a pass and
share each branch's ref with the worktree list's. A key taken earlier in the look is never
newer than what is read after it, so at worst an answer is read again next tick; fleet's own
writes inside a look (the marks file moved out of the config) call `Memo.restat`.

The loop's memo watches (`Memo(watch=True)`, store/stat_watch.py): a look takes a path's key
from inotify's word that nothing changed it since the last `stat`, so a no-op tick stats only
what changed instead of ~8,000 files at 1,000 agents.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from .stat_watch import StatWatch

T = TypeVar("T")
# a file changed this recently when it was read is read again next time: coarser than any
# filesystem's timestamp tick (ext4 and tmpfs: a jiffy, FAT: 2 s)
RACY_NS = 2_000_000_000

Key = tuple[int, int, int, int] | None  # (inode, size, mtime_ns, ctime_ns); None: no such file
Started = tuple[int, int]  # when a read began: (wall clock, monotonic clock), in ns (`Memo.started`)
_UNSEEN = object()


def stat_key(path: str) -> Key:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Memo(Generic[T]):
    """Values computed from files, each kept with the keys of the files it came from. One
    thread's: a look is asked from the thread that opened it."""

    def __init__(self, clock_ns: Callable[[], int] = time.time_ns, *, watch: bool = False,
                 monotonic_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock_ns = clock_ns  # injected: tests move "now" past the racy window
        self._monotonic_ns = monotonic_ns  # to see the wall clock stepped (`keep`)
        self._entries: dict[str, tuple[tuple[Key, ...], T]] = {}
        self._asked: set[str] = set()  # since the last `sweep`
        self._look: dict[str, Key] | None = None  # the open look's stat keys (`look`)
        self.hits = self.misses = 0
        self.watch: StatWatch | None = None
        if watch:
            from .stat_watch import StatWatch  # inotify: only the loop's memo needs it

            self.watch = StatWatch()  # its refresh is timed by the monotonic clock, not `clock_ns`

    def close(self) -> None:
        """Let go of the watch's inotify instance (a memo is usable afterwards: it stats)."""
        if self.watch is not None:
            self.watch.close()
            self.watch = None

    def stat(self, path: str) -> Key:
        """`stat_key(path)`; inside a look, taken once for the look."""
        look = self._look
        if look is None:
            return stat_key(path)
        key = look.get(path, _UNSEEN)
        if key is _UNSEEN:
            key = look[path] = stat_key(path) if self.watch is None else self.watch.key(path)
        return key  # type: ignore[return-value]

    @contextmanager
    def look(self) -> Iterator[None]:
        """One reading of the world: `stat` answers each path once until it ends. Only around
        reads: what fleet writes inside must be followed by `restat`."""
        if self.watch is not None:
            self.watch.refresh()  # what changed since the last look is stat'ed again
        self._look = {}
        try:
            yield
        finally:
            self._look = None

    def restat(self, paths: Iterable[str] | None = None) -> None:
        """Files a key may name changed since the look began: the open look (if any) stats
        them again. Without `paths` (fleet just wrote files), every file; with them, only
        those, read as they are now (an exit record another process may have written since the
        look began), and every other key stays the look's: what the pass reads after them
        (delivery's tree list) is the same reading as what it read before."""
        look = self._look
        if look is None:
            return
        if self.watch is not None:
            self.watch.refresh()  # first: a change to `paths` is then known to the watch too
        if paths is None:
            look.clear()
        else:
            for path in paths:
                look.pop(path, None)

    def started(self) -> Started:
        """The moment a read begins (pass it to `keep`)."""
        return self._clock_ns(), self._monotonic_ns()

    def get(self, name: str, keys: tuple[Key, ...]) -> T | None:
        self._asked.add(name)
        entry = self._entries.get(name)
        if entry is not None and entry[0] == keys:
            self.hits += 1
            return entry[1]
        self.misses += 1
        return None

    def peek(self, name: str) -> T | None:
        """The value remembered for `name`, whatever its files say now (to know which files to ask)."""
        entry = self._entries.get(name)
        return entry[1] if entry is not None else None

    def keep(self, name: str, keys: tuple[Key, ...], value: T, started: Started) -> None:
        """Remember `value` for `name`, read from the files whose keys are `keys`, if none of
        them changed within RACY_NS of `started` (taken before the read; the keys may be taken
        after it: a file changed in between is newer than `started`, so it is not kept), and
        the wall clock was not stepped back meanwhile; else forget it."""
        self._asked.add(name)
        wall, mono = started
        limit = wall - RACY_NS
        # the wall clock stepped back since `started` makes a file written during the read look
        # older than it is, by the step: one of more than RACY_NS could pass the limit. Against
        # the monotonic clock a net step back of half of it is seen, however long the read
        # took (slewing moves the two apart by at most 0.05%)
        stepped_back = (self._monotonic_ns() - mono) - (self._clock_ns() - wall) > RACY_NS // 2
        if not stepped_back and all(k is None or (k[2] < limit and k[3] < limit) for k in keys):
            self._entries[name] = (keys, value)
        else:
            self._entries.pop(name, None)

    def forget(self, names: Iterable[str] | None = None) -> None:
        if names is None:
            self._entries.clear()
        else:
            for name in names:
                self._entries.pop(name, None)

    def sweep(self) -> None:
        """Forget what was not asked for since the last sweep (the loop sweeps after each tick):
        an agent removed from the fleet is not remembered for the life of the loop."""
        for name in [n for n in self._entries if n not in self._asked]:
            del self._entries[name]
        self._asked.clear()

    def file(self, path: str, parse: Callable[[bytes], T], started: Started | None = None) -> T:
        """`parse(bytes of path)`, again only when the file changed; FileNotFoundError as `open`."""
        begun = self.started() if started is None else started  # before the stat: see `keep`
        key = self.stat(path)
        if key is None:
            self._entries.pop(path, None)
            raise FileNotFoundError(path)
        found = self.get(path, (key,))
        if found is not None:
            return found
        with open(path, "rb") as f:
            value = parse(f.read())
        self.keep(path, (key,), value, begun)
        return value
