"""Finding JSON documents in a session log.

A session log is the CLI's stdout and stderr interleaved: JSON result objects sit
among warnings, stack traces and progress lines, and may be printed on one line
(claude, codex JSONL) or pretty-printed over many (gemini). These helpers find
them without trusting the rest of the log.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator

_DECODER = json.JSONDecoder()
_DOC_START = re.compile(r"^[ \t]*[\[{]", re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

JsonDict = dict[str, object]


def json_documents(text: str) -> Iterator[object]:
    """Top-level JSON objects/arrays that start a line, in order of appearance.

    A document may span lines. Objects nested inside a decoded document are not
    yielded again, and lines that merely start with `{` or `[` are skipped.
    """
    resume_at = 0
    for match in _DOC_START.finditer(text):
        start = match.end() - 1
        if start < resume_at:
            continue
        try:
            value, end = _DECODER.raw_decode(text, start)
        except ValueError:
            continue
        resume_at = end
        yield value


def json_dicts(text: str) -> Iterator[JsonDict]:
    """Every JSON object in the log: line-start objects, and the elements of arrays."""
    for doc in json_documents(text):
        if isinstance(doc, dict):
            yield doc
        elif isinstance(doc, list):
            yield from (item for item in doc if isinstance(item, dict))


def last_dict(text: str, match: Callable[[JsonDict], bool], marker: re.Pattern[str] | None = None) -> JsonDict | None:
    """The last JSON object satisfying `match`.

    If none starts a line, lines matching `marker` are searched for the object
    anywhere in the line: stderr written without a trailing newline can glue
    junk in front of a one-line JSON result.
    """
    found = [d for d in json_dicts(text) if match(d)]
    if found:
        return found[-1]
    if marker is None:
        return None
    for line in reversed(text.splitlines()):
        if marker.search(line):
            hit = _dict_inside(line, match)
            if hit is not None:
                return hit
    return None


def _dict_inside(line: str, match: Callable[[JsonDict], bool]) -> JsonDict | None:
    for start in (i for i, ch in enumerate(line) if ch == "{"):
        try:
            value, _ = _DECODER.raw_decode(line, start)
        except ValueError:
            continue
        if isinstance(value, dict) and match(value):
            return value
    return None


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def last_line(text: str) -> str | None:
    """The last non-blank line, without colour codes; None for an empty log."""
    for line in reversed(strip_ansi(text).splitlines()):
        if line.strip():
            return line.strip()
    return None


def as_int(value: object) -> int | None:
    """An int from JSON, refusing bools and non-integral floats."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def as_float(value: object) -> float | None:
    """A non-negative number from JSON (a cost); None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if value >= 0 else None


def as_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
