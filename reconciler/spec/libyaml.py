"""libyaml's parser (ruamel.yaml.clib) under ruamel's own composer, for the texts where the two
parsers cannot read differently.

ruamel's pure-Python scanner and parser are most of the cost of reading a fleet file: ~30 ms
of the 40 ms a 1,000-agent file takes, in every `fleet diff`. libyaml makes the same events in
about 1 ms. Only the events come from it: the composer with its bounds (loader.py
`_BoundedComposer`), the constructor, the YAML 1.2 resolver and so every value, type and
position stay ruamel's.

libyaml implements YAML 1.1, ruamel's parser 1.2, so it is used only on texts where the two
agree (`eligible`), and only its success counts: on any error the caller reads the text again
with ruamel's parser, which says what is wrong and where, as it always did. Positions shown in
messages come from ruamel's reading too (loader.py `Positions`). The property test
(tests/test_libyaml.py) holds the two to the same values and types.
"""
from __future__ import annotations

import re
from typing import Any

from ruamel.yaml.events import ScalarEvent

try:
    from _ruamel_yaml import CParser as _CParser  # type: ignore[import-not-found]
except ImportError:  # not built for this interpreter: ruamel's parser reads every file
    _CParser = None
CParser: Any = _CParser

# What libyaml reads as ruamel does: printable ASCII and newlines. This leaves out tabs (YAML 1.1
# and 1.2 allow them in different places), carriage returns, byte order marks, and the line breaks
# YAML 1.1 has and 1.2 does not (NEL, LS, PS); those texts are read by ruamel's parser.
_OUTSIDE = re.compile(r"[^\n\x20-\x7e]")
# Where the bundled libyaml (0.1.7) and ruamel's YAML 1.2 parser read differently, each found by a
# generator and named in tests/test_libyaml.py (a text with any of these is read by ruamel):
_DIFFERS = re.compile("|".join([
    r"[|>][-+0-9]*#",  # a block scalar header with a comment right after it (`|#`): ruamel refuses it
    r"[|>][-+0-9]* *\n#",  # a block scalar whose next line starts with `#` (top level: libyaml reads a comment)
    r"(?:^|[\s\[\]{},])[&*?]",  # an anchor, an alias or a `?` key: ruamel takes `:` and `?` into an anchor's name
    r"[\"'\]}]:\S",  # a `:` right after a quote or a bracket with no space: libyaml takes it as a key
    r"(?:^|\n)\.\.\.",  # a document end marker: libyaml takes a second one ruamel refuses
    r"(?:^|\n) +(?:\n|$)",  # a line of spaces only (a block scalar's more-indented blank line: ruamel refuses it)
]))
# libyaml keeps a possible simple key per open bracket and checks them all at every token: a text
# of many nested brackets costs it quadratic time, where ruamel's scanner refuses the nesting as it
# goes (loader.py `_FlowDepth`). A text with more brackets than this is left to ruamel's scanner.
MOST_BRACKETS = 1024


def eligible(text: str) -> bool:
    """True if libyaml's events for `text` are the ones ruamel's parser would make."""
    if CParser is None or _OUTSIDE.search(text) is not None:
        return False
    if text.startswith("%") or "\n%" in text:  # a %YAML directive changes the version ruamel resolves with
        return False
    if _DIFFERS.search(text) is not None:
        return False
    if "!" in text:  # a tag: ruamel's parser keeps its handle, which its constructor reads (libyaml's does not)
        return False
    return text.count("[") + text.count("{") <= MOST_BRACKETS


class Events:
    """ruamel's parser interface (what its composer calls) over libyaml's; made by ruamel's
    `YAML` as its `Parser`, from the text `YAML.libyaml_text` holds."""

    def __init__(self, loader: Any = None) -> None:
        self._parser = CParser(loader.libyaml_text)

    def check_event(self, *choices: Any) -> bool:
        return bool(self._parser.check_event(*choices))

    def peek_event(self) -> Any:
        return _as_ruamel(self._parser.peek_event())

    def get_event(self) -> Any:
        return _as_ruamel(self._parser.get_event())

    def dispose(self) -> None:
        pass


def _as_ruamel(event: Any) -> Any:
    """The event as ruamel's parser makes it: a plain scalar's style is None (libyaml's is ''; the
    constructor reads `!!str` with style '' as a string, not as the tagged scalar ruamel makes)."""
    if isinstance(event, ScalarEvent) and event.style == "":
        event.style = None
    return event
