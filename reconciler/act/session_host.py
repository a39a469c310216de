"""The process that hosts one agent session, detached from fleet.

`python -m reconciler.act.session_host --exit-file F -- ARGV...` forks; the child starts
a new session (so it is its own process group, outside fleet's), runs ARGV with the
inherited stdout/stderr (the session log), and writes F atomically with the exit code
when ARGV ends. The parent prints the child's pid and exits at once, so the session is
never a child of fleet (no zombies in a long-running loop) and survives fleet exiting.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys

from ..store import clock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reconciler.act.session_host")
    parser.add_argument("--exit-file", required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    pid = os.fork()
    if pid:
        print(pid, flush=True)
        return 0
    os.setsid()
    _host(command, args.exit_file)
    return 0  # not reached


def _host(command: list[str], exit_file: str) -> None:
    # the pid pipe to fleet must not stay open in the session
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(2, 1)  # stdout -> the log (fleet opened stderr on it)
    os.dup2(devnull, 0)
    run_recorded(command, exit_file)
    os._exit(0)


def run_recorded(command: list[str], exit_file: str, *, also_default: tuple[int, ...] = ()) -> None:
    """Run `command` as our child and write its exit code to `exit_file` when it ends.

    Shared by this local host and the Ray node's (engines/ray/host.py). TERM/INT/HUP reach
    the whole group; the host ignores them so it outlives the agent to record how it ended,
    while the agent gets them with their default actions (and `also_default`).
    """
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    reset = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, *also_default)

    def default_signals() -> None:
        for sig in reset:
            signal.signal(sig, signal.SIG_DFL)

    try:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, preexec_fn=default_signals)
        code = child.wait()
        if code < 0:  # killed by a signal: record it the way shells do (and `fleet lock`)
            code = 128 - code
    except OSError as exc:
        print(f"fleet: cannot start {command[0]!r}: {exc}", file=sys.stderr, flush=True)
        code = 127
    write_exit(exit_file, code)


def write_exit(path: str, code: int) -> None:
    # the owner variables (observe/processes.py) say which run of which spec ended: fleet may
    # have died before recording the launch (observe/snapshot.py `_adopt_ended`)
    data = {"pid": os.getpid(), "exit_code": code,
            "finished_at": clock.now_iso(),
            "session_id": os.environ.get("FLEET_SESSION_ID"), "spec_hash": os.environ.get("FLEET_SPEC_HASH")}
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
