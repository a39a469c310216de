"""Map a path into the YAML document (keys and list indexes) to file:line:col."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq, merge_attrib

Loc = Sequence[str | int]


def locate(doc: Any, loc: Loc, *, at_key: bool = False) -> tuple[int, int]:
    """1-based (line, col) of the deepest node on `loc` that exists in `doc`.

    The last part points at its value, or at the key itself with `at_key` (unknown
    keys). When the path runs out (a missing key), the nearest existing parent is used.
    A key that a `<<:` merge brought in is found where the merged mapping has it.
    """
    pos = (1, 1)
    node = doc
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        found = _position(node, part, value=last and not at_key)
        if found is None:
            break
        pos = (found[0] + 1, found[1] + 1)
        node = node[part]
    return pos


def _position(node: Any, part: str | int, *, value: bool) -> tuple[int, int] | None:
    """0-based (line, col) of `part` in `node`, or None if ruamel did not record one."""
    try:
        if isinstance(node, CommentedMap) and part in node:
            holder = _holder(node, part)
            if holder is None:
                return None
            return tuple(holder.lc.value(part) if value else holder.lc.key(part))
        if isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            return tuple(node.lc.item(part))
    except (KeyError, IndexError, TypeError):
        return None
    return None


def _holder(node: CommentedMap, key: Any) -> CommentedMap | None:
    """The mapping whose text has `key`: `node`, or one it merges (`<<: *base`), depth first."""
    stack, seen = [node], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if key in current.lc.data:
            return current
        merged = [m[1] if isinstance(m, tuple) else m for m in getattr(current, merge_attrib, None) or ()]
        stack.extend(reversed([m for m in merged if isinstance(m, CommentedMap)]))
    return None
