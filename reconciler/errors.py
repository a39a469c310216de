"""The one user-facing error type and the exit codes (docs/output.md#exit-codes)."""
from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_CHANGES = 1  # `fleet diff`: changes pending
EXIT_INVALID = 1  # `fleet validate`: the file is invalid
EXIT_ERROR = 1  # `fleet apply`/others: an error
EXIT_DIFF_ERROR = 2  # `fleet diff`: >1 means error, as `kubectl diff`
EXIT_BLOCKED = 3  # apply/delete refused to destroy work
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


def exit_code(*, blocked: bool, failed: bool) -> int:
    """The exit code of a pass that acted: `fleet apply`, `fleet delete`, a loop tick.

    Refused work wins over failed actions: 3 tells the operator that something was
    kept to protect work, which a retry will not change, while 1 may be transient."""
    if blocked:
        return EXIT_BLOCKED
    return EXIT_ERROR if failed else EXIT_OK


@dataclass(frozen=True)
class Problem:
    """One thing wrong with user input: what, where (file:line:col) and how to fix it."""

    message: str
    file: str | None = None
    line: int | None = None  # 1-based
    col: int | None = None  # 1-based
    hint: str | None = None

    @property
    def where(self) -> str:
        if self.file is None:
            return ""
        if self.line is None:
            return self.file
        return f"{self.file}:{self.line}:{self.col or 1}"

    def render(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class FleetError(Exception):
    """An error the user can fix. Printed as one clear message, never a traceback."""

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int = EXIT_ERROR,
                 problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code
        self.problems = problems or []

    def render(self) -> str:
        lines = [p.render() for p in self.problems] or [self.message]
        if self.problems:
            lines.append(self.message)
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


class SpecInvalid(FleetError):
    """fleet.yaml failed to parse or validate; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        n = len(problems)
        files = {p.file for p in problems}
        # name the file: with `fleet validate a.yaml b.yaml` the count must say whose it is
        where = next(iter(files)) if len(files) == 1 and None not in files else "fleet file"
        super().__init__(f"{n} error{'s' if n != 1 else ''} in {where}", problems=problems,
                         exit_code=EXIT_INVALID)
