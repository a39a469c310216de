"""The process that hosts one agent session on a Ray node; it dies with its session actor.

`python -m reconciler.engines.ray.host --exit-file F --parent PID -- ARGV...` is started
by the session actor (actor.py) as a session leader (its own process group). It runs
ARGV as its child with the inherited stdout/stderr (the node-local session log) and
writes F atomically with ARGV's exit code when ARGV ends: act/session_host.py's `run_recorded`.

Unlike a local session it must not outlive what watches it: when the actor's process
goes (its node is lost, or `ray kill`), an agent left running would keep committing and
pushing to a branch that the reconciler is about to resume on another node. So the
host asks the kernel for a signal when its parent dies (PR_SET_PDEATHSIG) and then
kills its whole process group, the agent and everything it started.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys

from ...act.session_host import run_recorded

_PR_SET_PDEATHSIG = 1
_PARENT_GONE = signal.SIGUSR2  # not TERM: a stop TERMs the group, and the host must outlive that to record it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reconciler.engines.ray.host")
    parser.add_argument("--exit-file", required=True)
    parser.add_argument("--parent", type=int, required=True, help="pid of the session actor")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    signal.signal(_PARENT_GONE, _kill_group)
    _die_with_parent(args.parent)
    run_recorded(command, args.exit_file, also_default=(_PARENT_GONE,))
    return 0


def _die_with_parent(parent: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(_PARENT_GONE), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the actor's stop is then the only way it ends
        return
    if os.getppid() != parent:  # the actor died before the request took effect
        _kill_group(int(_PARENT_GONE), None)


def _kill_group(signum: int, frame: object) -> None:
    os.killpg(os.getpgrp(), signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
