"""The process that hosts one agent session, detached from fleet.

`python -m reconciler.act.session_host --exit-file F -- ARGV...` forks; the child starts
a new session (so it is its own process group, outside fleet's), runs ARGV with the
inherited stdout/stderr (the session log), and writes F atomically with the exit code
when ARGV ends. The parent prints the child's pid and exits as soon as ARGV has started,
so the session is never a child of fleet (no zombies in a long-running loop) and survives
fleet exiting. When ARGV cannot start (no such program, not executable), the parent also
prints a JSON line with why (`CannotStart`), the exit file records it with code 127, and
the log gets `fleet: cannot start ...`: fleet treats it as a configuration error.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..store import clock
from ..store.records import CannotStart

if TYPE_CHECKING:
    from .spend_receiver import SpendReceiver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reconciler.act.session_host")
    parser.add_argument("--exit-file", required=True)
    # claude: receive its OTLP cost metrics while it runs and write them here (act/spend_receiver.py)
    parser.add_argument("--spend-file")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    started_r, started_w = os.pipe()  # the child closes it once ARGV runs, after writing why not if it cannot
    pid = os.fork()
    if pid:
        os.close(started_w)
        with os.fdopen(started_r, "rb") as f:
            cannot = f.read()
        print(pid, flush=True)
        if cannot:
            print(cannot.decode(errors="replace"), flush=True)
        return 0
    os.close(started_r)
    os.setsid()
    _host(command, args.exit_file, started_w, args.spend_file)
    return 0  # not reached


def _host(command: list[str], exit_file: str, started_fd: int, spend_file: str | None = None) -> None:
    # the pid pipe to fleet must not stay open in the session
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(2, 1)  # stdout -> the log (fleet opened stderr on it)
    os.dup2(devnull, 0)
    receiver = _receiver(spend_file) if spend_file else None
    run_recorded(command, exit_file, started_fd=started_fd, receiver=receiver)
    os._exit(0)


def _receiver(spend_file: str) -> SpendReceiver | None:
    """The session's own OTLP receiver, bound before it starts; None if its metrics go over gRPC
    (left alone) or no port could be had (its live spend is then read from its log)."""
    from .spend_receiver import SpendReceiver, forward_headers, forward_target

    target = forward_target(os.environ)
    if target is False:
        return None
    try:
        return SpendReceiver(Path(spend_file), forward=target if isinstance(target, tuple) else None,
                             headers=forward_headers(os.environ))
    except OSError as exc:
        print(f"fleet: no live cost receiver for this session ({exc}); live spend is read from the log",
              file=sys.stderr, flush=True)
        return None


def cannot_start(program: str, exc: OSError) -> CannotStart:
    """Why `program` did not start, in words and as a condition reason."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        reason = "NotFound"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        reason = "PermissionDenied"
    elif exc.errno == errno.ENOEXEC:
        reason = "NotExecutable"  # a script without a #! line, a binary for another machine
    else:
        reason = "CannotStart"
    # a bare name is looked up on PATH; a relative path with a '/' in the session's cwd, its worktree
    where = " (searched PATH)" if "/" not in program else "" if os.path.isabs(program) else f" (in {os.getcwd()})"
    return CannotStart(reason, f"cannot start {program!r}: {exc.strerror or exc}{where}")


def run_recorded(command: list[str], exit_file: str, *, also_default: tuple[int, ...] = (),
                 started_fd: int | None = None, receiver: SpendReceiver | None = None) -> None:
    """Run `command` as our child and write its exit code to `exit_file` when it ends.

    Shared by this local host and the Ray node's (engines/ray/host.py). TERM/INT/HUP reach
    the whole group; the host ignores them so it outlives the agent to record how it ended,
    while the agent gets them with their default actions (and `also_default`). `started_fd`
    is closed once the command runs; if it cannot start, why is written to it first (as JSON),
    after the exit file. `receiver`: the command's environment sends its metrics to it; it serves
    while the command runs and is closed before the exit file is written (the spend file is final
    when the exit file appears).
    """
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    reset = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, *also_default)

    def default_signals() -> None:
        for sig in reset:
            signal.signal(sig, signal.SIG_DFL)

    env = None
    if receiver is not None:
        from .spend_receiver import claude_env

        env = claude_env(os.environ, receiver.endpoint)
    try:
        # the receiver's thread starts after the fork: preexec_fn runs in a process with one thread
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, preexec_fn=default_signals, env=env)
    except OSError as exc:
        cannot = cannot_start(command[0], exc)
        print(f"fleet: {cannot.message}", file=sys.stderr, flush=True)
        write_exit(exit_file, 127, cannot)
        _report_started(started_fd, cannot)
        return
    _report_started(started_fd, None)
    if receiver is not None:
        receiver.start()
    try:
        code = child.wait()
    finally:
        if receiver is not None:
            receiver.close()
    if code < 0:  # killed by a signal: record it the way shells do (and `fleet lock`)
        code = 128 - code
    write_exit(exit_file, code)


def _report_started(fd: int | None, cannot: CannotStart | None) -> None:
    if fd is None:
        return
    try:
        if cannot is not None:
            os.write(fd, json.dumps(cannot.to_json()).encode())
    finally:
        os.close(fd)


def write_exit(path: str, code: int, cannot: CannotStart | None = None) -> None:
    # the owner variables (observe/processes.py) say which run of which spec ended: fleet may
    # have died before recording the launch (observe/snapshot.py `_adopt_ended`)
    data: dict[str, object] = {"pid": os.getpid(), "exit_code": code, "finished_at": clock.now_iso(),
                               "session_id": os.environ.get("FLEET_SESSION_ID"),
                               "spec_hash": os.environ.get("FLEET_SPEC_HASH")}
    if cannot is not None:
        data["cannot_start"] = cannot.to_json()
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
