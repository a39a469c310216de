"""What the running loop remembers between ticks: files and answers kept by the `stat` of
what they were read from, so a tick reads again only what changed.

A `Memo` is held by one `fleet reconcile --watch` process (control/loop.py) and given to
its observation; a single `fleet apply`, `diff` or `status` has none and reads everything.
An entry is used again only while every file it was read from has the same inode, size,
mtime and ctime (an atomic replace makes a new inode; any write moves mtime and ctime,
which no tool can set back). As in git's index ("racy git"), an entry is kept only if
each of those files was last changed at least `RACY_NS` before the read began: a change
in the same timestamp tick as the read could leave every stat field as it was.

Never used for the checks right before an action (act/): those read afresh, whatever a
tick remembered.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")
# a file changed this recently when it was read is read again next time: coarser than any
# filesystem's timestamp tick (ext4 and tmpfs: a jiffy, FAT: 2 s)
RACY_NS = 2_000_000_000

Key = tuple[int, int, int, int] | None  # (inode, size, mtime_ns, ctime_ns); None: no such file


def stat_key(path: str) -> Key:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Memo(Generic[T]):
    """Values computed from files, each kept with the keys of the files it came from."""

    def __init__(self, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._clock_ns = clock_ns  # injected: tests move "now" past the racy window
        self._entries: dict[str, tuple[tuple[Key, ...], T]] = {}
        self._asked: set[str] = set()  # since the last `sweep`
        self.hits = self.misses = 0

    def started(self) -> int:
        """The moment a read begins (pass it to `keep`)."""
        return self._clock_ns()

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

    def keep(self, name: str, keys: tuple[Key, ...], value: T, started: int) -> None:
        """Remember `value` for `name`, read from the files whose keys are `keys`, if none of
        them changed within RACY_NS of `started` (taken before the read; the keys may be taken
        after it: a file changed in between is newer than `started`, so it is not kept);
        else forget it."""
        self._asked.add(name)
        limit = started - RACY_NS
        if all(k is None or (k[2] < limit and k[3] < limit) for k in keys):
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

    def file(self, path: str, parse: Callable[[str], T], started: int | None = None) -> T:
        """`parse(text of path)`, again only when the file changed; FileNotFoundError as `open`."""
        begun = self.started() if started is None else started  # before the stat: see `keep`
        key = stat_key(path)
        if key is None:
            self._entries.pop(path, None)
            raise FileNotFoundError(path)
        found = self.get(path, (key,))
        if found is not None:
            return found
        with open(path) as f:
            value = parse(f.read())
        self.keep(path, (key,), value, begun)
        return value
