"""`forEach.glob` matched against a list of paths instead of the working tree.

`fleet diff --base-rev REV` expands the file as it was at REV, so its globs must see
the files of REV's tree (`git ls-tree`), not today's checkout. The rules are those of
`glob.glob(pattern, recursive=True)` as `checks.py` uses it: `**` as a whole component
matches zero or more directories, wildcards never match a name starting with '.'
unless the pattern does, and `**` never enters a hidden directory.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

_MAGIC = re.compile(r"[*?[]")


def match(pattern: str, paths: Iterable[str]) -> list[str]:
    """The paths (repo-relative, '/'-separated, files only) that `pattern` matches, sorted."""
    parts = [p for p in pattern.split("/") if p != "."]
    return sorted(p for p in paths if _match(parts, p.split("/")))


def _match(pat: Sequence[str], parts: Sequence[str]) -> bool:
    if not pat:
        return not parts
    head = pat[0]
    if head == "**":
        if _match(pat[1:], parts):  # zero directories
            return True
        return bool(parts) and not _hidden(parts[0]) and _match(pat, parts[1:])
    if not parts:
        return False
    name = parts[0]
    if _MAGIC.search(head):
        ok = fnmatchcase(name, head) and not (_hidden(name) and not _hidden(head))
    else:
        ok = name == head
    return ok and _match(pat[1:], parts[1:])


def _hidden(name: str) -> bool:
    return name.startswith(".")
