"""The runtime registry: one adapter per agent CLI, looked up by the tier's `runtime` name.

Adapters only build argv/env and parse logs (see base.py); docs/runtimes.md records
the CLI versions each one was checked against.
"""
from __future__ import annotations

from .aider import AiderRuntime
from .base import Runtime, SessionRequest, SessionResult
from .claude import ClaudeRuntime
from .codex import CodexRuntime
from .command import CommandRuntime
from .gemini import GeminiRuntime

RUNTIME_NAMES: tuple[str, ...] = ("claude", "codex", "gemini", "aider", "command")

RUNTIMES: dict[str, Runtime] = {
    "claude": ClaudeRuntime(),
    "codex": CodexRuntime(),
    "gemini": GeminiRuntime(),
    "aider": AiderRuntime(),
    "command": CommandRuntime(),
}


class UnknownRuntimeError(KeyError):
    """A runtime name no adapter is registered for."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:  # KeyError's own str() is just the quoted key
        return f"unknown runtime {self.name!r}; known runtimes: {', '.join(RUNTIME_NAMES)}"


def get_runtime(name: str) -> Runtime:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise UnknownRuntimeError(name) from None


__all__ = ["RUNTIMES", "RUNTIME_NAMES", "Runtime", "SessionRequest", "SessionResult",
           "UnknownRuntimeError", "get_runtime"]
