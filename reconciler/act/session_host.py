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
from datetime import datetime, timezone


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
    # TERM/INT reach the whole group; the runner outlives the agent to record how it ended
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        child = subprocess.Popen(command, preexec_fn=_default_signals)
        code = child.wait()
        if code < 0:  # killed by a signal: record it the way shells do (and `fleet lock`)
            code = 128 - code
    except OSError as exc:
        print(f"fleet: cannot start {command[0]!r}: {exc}", file=sys.stderr, flush=True)
        code = 127
    _write_exit(exit_file, code)
    os._exit(0)


def _default_signals() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
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
