"""Map a path into the YAML document (keys and list indexes) to file:line:col."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

Loc = Sequence[str | int]


def locate(doc: Any, loc: Loc, *, at_key: bool = False) -> tuple[int, int]:
    """1-based (line, col) of the deepest node on `loc` that exists in `doc`.

    The last part points at its value, or at the key itself with `at_key` (unknown
    keys). When the path runs out (a missing key), the nearest existing parent is used.
    """
    pos = (1, 1)
    node = doc
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, CommentedMap) and part in node:
            line, col = node.lc.value(part) if last and not at_key else node.lc.key(part)
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line, col = node.lc.item(part)
        else:
            break
        pos = (line + 1, col + 1)
        node = node[part]
    return pos
