"""Will each session's program start? argv[0] resolved the way the session host will run it.

`fleet validate` and `fleet diff` warn (never fail: the machine that applies may differ from
the one that checks) when a tier's CLI or an agent's `command` program cannot start here, so
a missing `claude` or a typo in a path is seen before a run fails with exit 127.

How it decides, for the program a session runs (the runtime's CLI, e.g. `claude`, or
`command[0]` for runtime `command`):

- a bare name (no `/`) is looked up on the session's PATH: fleet's own bin directory first,
  then the agent's `env.PATH` if it sets one, else the PATH fleet runs with (as the session
  host's exec will); not found, or found but not executable, is a warning;
- an absolute path must exist and be executable;
- a relative path with a `/` (`tools/agent.sh`) is resolved in the agent's worktree when the
  session starts; the worktree may not exist yet, or the agent's base may bring the file, so
  this is not decided here and never warned about;
- `placement.engine: ray` sessions run on other machines: nothing is decided here.

Only reads PATH and the filesystem; builds no argv and starts nothing.
"""
from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import Problem
from ..runtimes import get_runtime
from ..spec.desired import DesiredAgent
from ..spec.loader import LoadedFleet
from ..spec.models import FromEnv
from ..spec.positions import Loc, locate

_OUTCOME = "its sessions would fail at once (exit 127; the agent is Failed with condition StartFailed)"


def session_path(path: str | None) -> str:
    """The PATH a local session runs with: fleet's bin directory first (`fleet lock`, our python)."""
    return str(Path(sys.executable).parent) + os.pathsep + (path or "")


@dataclass(frozen=True)
class _Program:
    name: str
    loc: Loc  # where it is written in the document: the tier's runtime, or the agent's command[0]
    what: str  # "tier worker (runtime claude) runs 'claude'" / "agent audit: command program 'x'"
    path: str | None  # the session's PATH, None when it cannot be known here (a fromEnv PATH not set)


def program_warnings(loaded: LoadedFleet) -> list[Problem]:
    """One warning per program written in the file that cannot start on this machine."""
    if loaded.fleet.spec.placement.engine != "local":
        return []
    warnings: list[Problem] = []
    seen: set[tuple[str, str | None, tuple[str | int, ...]]] = set()
    for program in _programs(loaded.agents):
        key = (program.name, program.path, tuple(program.loc))
        if key in seen:
            continue
        seen.add(key)
        why = _cannot_start(program.name, program.path)
        if why is None:
            continue
        line, col = locate(loaded.raw, program.loc)
        warnings.append(Problem(f"{program.what} {why}", str(loaded.path), line, col, _hint(program, why)))
    return warnings


def _programs(agents: tuple[DesiredAgent, ...]) -> Iterator[_Program]:
    for agent in agents:
        path = _session_path_of(agent)
        runtime = agent.tier.runtime
        if runtime == "command":
            if agent.command:
                yield _Program(agent.command[0], ("spec", "agents", agent.index, "command", 0),
                               f"agent {agent.name}: command program {agent.command[0]!r}", path)
            continue
        executable = getattr(get_runtime(runtime), "executable", None)
        if isinstance(executable, str):
            yield _Program(executable, ("spec", "tiers", agent.tier_name, "runtime"),
                           f"tier {agent.tier_name} (runtime {runtime}) runs {executable!r}, which", path)


def _session_path_of(agent: DesiredAgent) -> str | None:
    value = agent.env.get("PATH")
    if value is None:
        return session_path(os.environ.get("PATH"))
    if isinstance(value, FromEnv):
        return session_path(os.environ[value.fromEnv]) if value.fromEnv in os.environ else None
    return session_path(value)


def _cannot_start(program: str, path: str | None) -> str | None:
    """Why `program` cannot start with `path`, or None if it can or this cannot be decided."""
    if "/" not in program:
        if path is None:
            return None
        if shutil.which(program, path=path) is not None:
            return None
        on_path = any(os.path.exists(os.path.join(d, program)) for d in path.split(os.pathsep) if d)
        return "is on PATH but not executable" if on_path else "is not on PATH"
    if not os.path.isabs(program):
        return None  # resolved in the agent's worktree at run time
    if not os.path.exists(program):
        return "does not exist"
    if os.path.isdir(program) or not os.access(program, os.X_OK):
        return "is not an executable file"
    return None


def _hint(program: _Program, why: str) -> str:
    if "executable" in why:
        return f"`chmod +x` it, or run it through its interpreter (e.g. [sh, {program.name}]); {_OUTCOME}"
    if "/" in program.name:
        return f"fix the path (a relative path with a '/' is resolved in the agent's worktree); {_OUTCOME}"
    if program.loc[1] == "tiers":
        return (f"install {program.name} (docs/runtimes.md) or put its directory on PATH where fleet runs; "
                f"{_OUTCOME}")
    return (f"install it, put its directory on PATH where fleet runs, or write a path (a relative path "
            f"with a '/' is resolved in the agent's worktree); {_OUTCOME}")
