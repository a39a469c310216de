"""What the loader accepts from a fleet file it does not trust (docs/fleet-yaml.md "Limits").

A fleet file may come from an untrusted pull request (`fleet diff` in CI), so reading it
is bounded: its size, its nesting, what its aliases expand to, and where its paths may
lead. The bounds that an operator may move (size, paths outside the repository) are set
here from the environment or the command line, never from the file itself.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ..errors import FleetError

MAX_FILE_BYTES = 1 << 20  # 1 MiB: a large fleet file is a few tens of KiB
MAX_DEPTH = 64  # nesting levels; the format itself needs 7
MAX_ALIAS_NODES = 100_000  # values that aliases may add to the document when expanded
MAX_AGENTS = 10_000  # agents after forEach expansion: each one is a session, a worktree and a branch
MAX_EXPANDED_BYTES = 64 << 20  # prompts, commands and env of every expanded agent together
SIZE_ENV = "FLEET_MAX_FILE_SIZE"
OUTSIDE_ENV = "FLEET_ALLOW_OUTSIDE_REPO"
SIZE_FLAG = "--max-file-size"
OUTSIDE_FLAG = "--allow-outside-repo"


@dataclass(frozen=True)
class Limits:
    max_bytes: int = MAX_FILE_BYTES
    allow_outside_repo: bool = False  # spec.repo (and the file itself) may lead out of the file's repository

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Limits:
        limits = cls()
        if (size := environ.get(SIZE_ENV, "").strip()):
            if not size.isdigit() or int(size) < 1:
                raise FleetError(f"{SIZE_ENV}={size!r} is not a size in bytes",
                                 hint=f"e.g. {SIZE_ENV}={2 * MAX_FILE_BYTES} for 2 MiB")
            limits = replace(limits, max_bytes=int(size))
        if environ.get(OUTSIDE_ENV, "").strip().lower() in ("1", "true", "yes"):
            limits = replace(limits, allow_outside_repo=True)
        return limits


_overrides: dict[str, object] = {}  # set from the command line (cli/main.py); they win over the environment


def configure(*, max_bytes: int | None = None, allow_outside_repo: bool | None = None) -> None:
    if max_bytes is not None:
        _overrides["max_bytes"] = max_bytes
    if allow_outside_repo:
        _overrides["allow_outside_repo"] = True


def current() -> Limits:
    """The limits in force: defaults, then the environment, then the command line."""
    return replace(Limits.from_env(), **_overrides)  # type: ignore[arg-type]
