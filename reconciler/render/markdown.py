"""Helpers for GitHub-flavoured markdown that a bot posts and later edits in place.

Everything taken from the repo (file names, commit subjects, reasons, prompts) is
escaped, so a commit subject containing `</details>` or a `|` cannot break the comment,
and a comment stays under GitHub's size limit however large the fleet is.
"""
from __future__ import annotations

import html
import re
from collections.abc import Sequence

LIMIT = 60_000  # GitHub rejects comments over 65,536 characters; keep room for the footer


def text(value: object) -> str:
    """Plain text in markdown or HTML context: no tags, no entities, no emphasis."""
    return re.sub(r"([\\`*_\[\]])", r"\\\1", html.escape(str(value), quote=False))


def code(value: object) -> str:
    """Inline code that survives backticks and pipes, also inside a table cell."""
    return "<code>" + html.escape(str(value), quote=False).replace("|", "&#124;").replace("\n", "↵") + "</code>"


def fence(body: str, lang: str = "") -> list[str]:
    """A fenced block whose fence is longer than any backtick run in `body`."""
    ticks = "`" * max(3, max((len(m) for m in re.findall(r"`+", body)), default=0) + 1)
    return [f"{ticks}{lang}", *body.splitlines(), ticks]


def fit(head: Sequence[str], blocks: Sequence[Sequence[str]], *, what: str, more: str) -> list[str]:
    """`head` plus as many whole `blocks` as fit under LIMIT, then a line saying how many
    were left out (`what`: e.g. "agents") and where to see them (`more`)."""
    out = list(head)
    size = sum(len(line) + 1 for line in out)
    for i, block in enumerate(blocks):
        block_size = sum(len(line) + 1 for line in block)
        if size + block_size > LIMIT:
            out += ["", f"_… {len(blocks) - i} more {what} not shown (comment size limit); {more}._"]
            break
        out += block
        size += block_size
    return out
