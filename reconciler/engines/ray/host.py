"""The process that hosts one agent session on a Ray node; it dies with its session actor.

`python -m reconciler.engines.ray.host --exit-file F --parent PID -- ARGV...` is started
by the session actor (actor.py) as a session leader (its own process group). It runs
ARGV as its child with the inherited stdout/stderr (the node-local session log) and
writes F atomically with ARGV's exit code when ARGV ends, like the local session runner.

Unlike a local session it must not outlive what watches it: when the actor's process
goes (its node is lost, or `ray kill`), an agent left running would keep committing and
pushing to a branch that the reconciler is about to resume on another node. So the
host asks the kernel for a signal when its parent dies (PR_SET_PDEATHSIG) and then
kills its whole process group, the agent and everything it started.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timezone

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
    # TERM/INT/HUP reach the whole group; the host outlives the agent to record how it ended
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    try:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, preexec_fn=_default_signals)
        code = child.wait()
        if code < 0:  # killed by a signal: record it the way shells do
            code = 128 - code
    except OSError as exc:
        print(f"fleet: cannot start {command[0]!r}: {exc}", file=sys.stderr, flush=True)
        code = 127
    _write_exit(args.exit_file, code)
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


def _default_signals() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, _PARENT_GONE):
        signal.signal(sig, signal.SIG_DFL)


def _write_exit(path: str, code: int) -> None:
    data = {"pid": os.getpid(), "exit_code": code,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds")}
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
