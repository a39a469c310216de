"""Where a command's output goes: the Rich consoles every command is given, and, for `fleet
status` reading the loop's snapshot, plain stdout where Rich would write plain text anyway.

Importing Rich costs about as much as reading a 1,000-agent snapshot (docs/benchmarks.md
"Status and the dashboard with a loop running"). Written to a pipe or a file, with no
variable forcing a terminal, Rich prints no colour and nothing but the characters; there
`plain_stdout` gives the width Rich would use, and the caller writes the lines itself.
"""
from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

PIPE_WIDTH = 200  # logs and pipes: never truncate a table
# Rich reads these to decide that a pipe is a terminal (or a notebook): any of them set, Rich decides
FORCING = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS", "JUPYTER_LINES")


def console(*, stderr: bool = False) -> Console:
    """A command's Rich console: highlighting off; `PIPE_WIDTH` wide when it is not a terminal
    and COLUMNS is not set."""
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(stderr=stderr, highlight=False, width=PIPE_WIDTH)
    return out


@dataclass(frozen=True)
class PlainStdout:
    """stdout where `console()` would print plain text: no terminal, no colour, this width."""

    width: int
    file: IO[str]
    color_system: None = None

    def write(self, text: str) -> None:
        """Write and flush `text` (`write_out`)."""
        write_out(self.file, text)


def write_out(file: IO[str], text: str) -> None:
    """Write and flush `text` to stdout written directly (not through Rich); a reader that went
    away (`fleet diff | head`, `fleet status | head`) ends the command as Rich's console does:
    exit 1, the rest of the output to /dev/null, no crash report."""
    try:
        file.write(text)
        file.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, file.fileno())  # Python's flush at exit must not fail again
        raise SystemExit(1) from None


def plain_stdout(environ: Mapping[str, str] | None = None, isatty: Callable[[], bool] | None = None,
                 platform: str | None = None) -> PlainStdout | None:
    """stdout, if `console()` would write to it without colour or terminal codes; None: ask Rich.

    Only the plain case is decided here, conservatively: not Windows, stdout not a terminal,
    none of `FORCING` set, and COLUMNS either unset (`PIPE_WIDTH`) or a positive number (that
    width). Anything else (a terminal, FORCE_COLOR, COLUMNS=abc) is left to Rich.
    tests/test_status_plain.py checks each case against what Rich's Console decides."""
    environ = os.environ if environ is None else environ
    if sys.stdout is None or (platform or sys.platform) == "win32" or any(name in environ for name in FORCING):
        return None
    try:
        if (isatty or sys.stdout.isatty)():
            return None
    except ValueError:  # a closed stdout: Rich takes it as no terminal too, but let it say so
        return None
    columns = environ.get("COLUMNS")
    if columns is None:
        width = PIPE_WIDTH
    elif columns.isdigit() and int(columns) > 0:
        width = int(columns)
    else:
        return None
    return PlainStdout(width, sys.stdout)


def printable(line: str) -> bool:
    """Rich prints this text as it is (no control codes to strip, no tabs to expand)."""
    return line.isprintable()


# what Rich's emoji replacement could take for a `:name:` code (it replaces only known names;
# any two colons with no space between are left to Rich)
_EMOJI_CODE = re.compile(r":\S*?:")


def plain_text(lines: list[tuple[str, bool]], width: int) -> str | None:
    """What a `console()` printing each (text, soft_wrap) line writes to a PlainStdout of this
    width, or None where Rich might write something else: a line with control codes or tabs,
    an emoji code, or, wrapped at the width (soft_wrap False), a line longer than the width
    or not ASCII (Rich measures cells, not characters). The caller then prints with Rich."""
    for text, soft_wrap in lines:
        if not text.isprintable() or _EMOJI_CODE.search(text):
            return None
        if not soft_wrap and (len(text) > width or not text.isascii()):
            return None
    return "".join(text + "\n" for text, _ in lines)
