"""The runtime adapter contract: how one agent CLI is started, resumed and read.

An adapter only builds argv/env and parses output. It never spawns anything;
the session module does that, so adapters stay pure and unit-testable.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class SessionRequest:
    """Everything an adapter needs to build a command line for one session."""

    agent: str
    workdir: Path
    prompt: str
    session_id: str  # a UUID fleet generates; adapters that accept one pass it on
    model: str | None = None
    args: tuple[str, ...] = ()  # extra args from the tier
    command: tuple[str, ...] | None = None  # runtime `command` only
    locks: tuple[str, ...] = ()  # the fleet's declared build locks (`fleet lock NAME -- CMD`)
    # the session's hard cap in USD (its budget reservation); claude enforces it itself
    # (`--max-budget-usd`), other runtimes are stopped by fleet when their live spend reaches it
    max_budget_usd: float | None = None


@dataclass(frozen=True)
class SessionResult:
    """What a finished session reported about itself (all optional: CLIs differ)."""

    session_id: str | None = None
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    is_error: bool | None = None
    message: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


class Runtime(Protocol):
    name: str
    can_resume: bool  # True: a failed/gated session continues the same conversation

    def start_argv(self, req: SessionRequest) -> list[str]: ...

    def resume_argv(self, req: SessionRequest, message: str) -> list[str] | None:
        """argv that continues `req.session_id` with `message`; None if unsupported."""
        ...

    def env(self, req: SessionRequest) -> dict[str, str]:
        """Extra environment for the session (e.g. FLEET_PROMPT for `command`)."""
        ...

    def parse_result(self, output: str) -> SessionResult:
        """Parse the session's captured stdout+stderr (the log) into a result."""
        ...
