"""`forEach.glob`: matched against a list of paths, or walked in the working tree.

`fleet diff --base-rev REV` expands the file as it was at REV, so its globs must see
the files of REV's tree (`git ls-tree`), not today's checkout: `match`. The working tree
is walked by `walk`. The rules are those of `glob.glob(pattern, recursive=True)`: `**`
as a whole component matches zero or more directories, wildcards never match a name
starting with '.' unless the pattern does, and `**` never enters a hidden directory.

Both are bounded, whatever the tree holds (the file and the tree may be an untrusted
pull request's): matching runs the pattern as a small automaton over a path's
components (linear in the path, never recursive), and the walk never follows a
symlinked directory, so it cannot loop or leave the repository. A symlink to a file
matches like the file, if it resolves inside the repository; one that leads outside is
reported (checks.py makes it an error), its target never read or named.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from pathlib import Path

_MAGIC = re.compile(r"[*?[]")

States = frozenset[int]  # positions in the pattern's components a path prefix can be at


def match(pattern: str, paths: Iterable[str]) -> list[str]:
    """The paths (repo-relative, '/'-separated, files only) that `pattern` matches, sorted."""
    pat = _parts(pattern)
    return sorted(p for p in paths if _matches(pat, p.split("/")))


def walk(root: Path, pattern: str) -> tuple[list[str], list[str]]:
    """(matches, escapes) under `root`, each repo-relative and sorted: the files `pattern`
    matches, and the matching paths that are symlinks leading outside `root`."""
    pat = _parts(pattern)
    real_root = root.resolve()
    found: list[str] = []
    escapes: list[str] = []
    stack: list[tuple[str, States]] = [("", _start(pat))]
    while stack:
        rel, states = stack.pop()
        try:
            entries = list(os.scandir(real_root / rel if rel else real_root))
        except OSError:  # unreadable, or gone meanwhile: nothing to match there
            continue
        for entry in entries:
            after = _step(pat, states, entry.name)
            if not after:
                continue
            path = f"{rel}/{entry.name}" if rel else entry.name
            complete = len(pat) in after
            try:
                if entry.is_symlink():
                    if complete:  # a symlinked directory is never entered: no loop, nothing outside
                        _link(Path(entry.path), real_root, path, found, escapes)
                elif entry.is_dir(follow_symlinks=False):
                    if any(i < len(pat) for i in after):
                        stack.append((path, after))
                elif complete and entry.is_file(follow_symlinks=False):
                    found.append(path)
            except OSError:
                continue
    return sorted(found), sorted(escapes)


def _link(link: Path, root: Path, path: str, found: list[str], escapes: list[str]) -> None:
    """A matching symlink: a file when it resolves to one inside `root`; outside, an escape
    (whether or not its target exists, so nothing about the outside is learnt)."""
    try:
        target = link.resolve()
    except (OSError, RuntimeError):  # a loop of links: it leads nowhere
        return
    if target != root and root not in target.parents:
        escapes.append(path)
    elif target.is_file():
        found.append(path)


def _parts(pattern: str) -> list[str]:
    return [p for p in pattern.split("/") if p != "."]


def _matches(pat: Sequence[str], parts: Sequence[str]) -> bool:
    states = _start(pat)
    for name in parts:
        states = _step(pat, states, name)
        if not states:
            return False
    return len(pat) in states


def _start(pat: Sequence[str]) -> States:
    return _closure(pat, {0})


def _step(pat: Sequence[str], states: States, name: str) -> States:
    """Where each state goes on one more path component `name`."""
    after: set[int] = set()
    for i in states:
        if i == len(pat):
            continue  # the pattern is used up: a longer path does not match
        head = pat[i]
        if head == "**":
            if not _hidden(name):
                after.add(i)  # ** takes this component and may take more
        elif _component(head, name):
            after.add(i + 1)
    return _closure(pat, after)


def _closure(pat: Sequence[str], states: set[int]) -> States:
    """`**` also matches zero components: a state before one is also a state after it."""
    out = set(states)
    todo = list(states)
    while todo:
        i = todo.pop()
        if i < len(pat) and pat[i] == "**" and i + 1 not in out:
            out.add(i + 1)
            todo.append(i + 1)
    return frozenset(out)


def _component(head: str, name: str) -> bool:
    if _MAGIC.search(head):
        return fnmatchcase(name, head) and not (_hidden(name) and not _hidden(head))
    return name == head


def _hidden(name: str) -> bool:
    return name.startswith(".")
