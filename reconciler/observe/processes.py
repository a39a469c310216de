"""Process truth through psutil: liveness with create-time checks, and orphans.

Only this module (and `act/sessions.py` for signals) talks to psutil.
"""
from __future__ import annotations

import bisect
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil

# plain data (observe/model.py), importable from here as before
from .liveness import CREATE_TIME_TOLERANCE
from .model import OwnedProcess

# Owner variables every session carries; orphans are found by them.
ENV_FLEET, ENV_REPO, ENV_AGENT, ENV_HASH = "FLEET_NAME", "FLEET_REPO", "FLEET_AGENT", "FLEET_SPEC_HASH"
ENV_SESSION = "FLEET_SESSION_ID"
_CREATE_TIME_TOLERANCE = CREATE_TIME_TOLERANCE  # psutil's create_time has clock-tick resolution


def create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_alive(pid: int | None, created: float | None) -> bool:
    """True only if `pid` runs and is the same process that was recorded (no PID reuse)."""
    if not pid or created is None:
        return False
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - created) > _CREATE_TIME_TOLERANCE:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def owned_processes(fleet: str, repo: str, *, known: dict[int, float] | None = None,
                    table: ProcessTable | None = None) -> list[OwnedProcess]:
    """Session leaders whose environment names this fleet and repo.

    Only one process per session (the group leader) is returned, so stopping it
    stops the agent and everything it started. `known` (pid -> create-time): recorded
    live sessions; they are left out without reading their environment (one /proc read
    per session saved on every tick). `table`: the process pass of this observation.
    """
    found: list[OwnedProcess] = []
    known = known or {}
    for entry in (table or ProcessTable()).leaders():
        created = known.get(entry.pid)
        if created is not None and abs(entry.created - created) < _CREATE_TIME_TOLERANCE:
            continue
        try:
            env = entry.proc.environ()
            if env.get(ENV_FLEET) != fleet or env.get(ENV_REPO) != repo:
                continue
            found.append(OwnedProcess(entry.pid, entry.created, env.get(ENV_AGENT, ""),
                                      env.get(ENV_HASH, ""), env.get(ENV_SESSION, ""),
                                      " ".join(entry.proc.cmdline())[:200]))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, ProcessLookupError):
            continue
    return found


_PROC = Path("/proc")


@dataclass(frozen=True)
class _Entry:
    proc: psutil.Process
    pid: int
    created: float
    leader: bool  # leads its own session (os.getsid(pid) == pid)


class ProcessTable:
    """One pass over the process table per observation, shared by liveness, the orphan scan
    and every prune candidate's "processes in this tree" check.

    Without it each of those walked /proc again: O(agents x processes) for N prune
    candidates. The pass reads pid, create time and status (one /proc/PID/stat read each)
    and the session id; working directories are read on the first `processes_in` and
    kept sorted, so each tree is a binary search, not a scan.
    """

    def __init__(self) -> None:
        me = os.getpid()
        self._by_pid: dict[int, _Entry] = {}
        for proc in psutil.process_iter(["pid", "create_time", "status"]):
            info = proc.info
            if info.get("create_time") is None or info.get("status") == psutil.STATUS_ZOMBIE:
                continue
            try:
                leader = proc.pid != me and os.getsid(proc.pid) == proc.pid
            except (ProcessLookupError, PermissionError):
                continue
            self._by_pid[proc.pid] = _Entry(proc, proc.pid, info["create_time"], leader)
        self._cwds: list[tuple[str, int]] | None = None
        self._cwds_lock = threading.Lock()  # the prune checks' threads ask at once: one reads them

    def alive(self, pid: int | None, created: float | None) -> bool:
        """`is_alive` against this pass: the same process (create time) and not a zombie."""
        entry = self._by_pid.get(pid or 0)
        return (entry is not None and created is not None
                and abs(entry.created - created) <= _CREATE_TIME_TOLERANCE)

    def leaders(self) -> list[_Entry]:
        return [e for e in self._by_pid.values() if e.leader]

    def under(self, path: Path) -> list[tuple[psutil.Process, str]]:
        """Processes whose cwd is `path` or below it, with that cwd."""
        cwds = self._cwds
        if cwds is None:
            with self._cwds_lock:
                if self._cwds is None:
                    found = []
                    for entry in self._by_pid.values():
                        try:
                            cwd = entry.proc.cwd()
                        except (psutil.Error, OSError):
                            continue
                        if cwd:
                            found.append((cwd, entry.pid))
                    self._cwds = sorted(found)
                cwds = self._cwds
        where = str(path)
        # every cwd equal to `where` or starting with `where/` sorts at or after `where` and
        # before `where` + chr(0x10ffff); the prefix check below drops siblings like `where-2`
        lo = bisect.bisect_left(cwds, (where, -1))
        hi = bisect.bisect_left(cwds, (where + "\U0010ffff", -1))
        below = where + os.sep
        return [(self._by_pid[pid].proc, cwd) for cwd, pid in cwds[lo:hi]
                if cwd == where or cwd.startswith(below)]


def _live_under(path: Path) -> list[tuple[psutil.Process, str]]:
    """Processes whose cwd is `path` or below it, read now: one cwd read per process, not a
    whole ProcessTable (create times, statuses, sessions and every cwd, sorted)."""
    where = str(path)
    below = where + os.sep
    found = []
    procfs = _PROC.is_dir()
    for pid in psutil.pids():
        try:
            cwd = os.readlink(_PROC / str(pid) / "cwd") if procfs else psutil.Process(pid).cwd()
        except (OSError, psutil.Error):
            continue  # gone, not ours to read, or a kernel thread
        if procfs and cwd.endswith(" (deleted)") and not os.path.exists(cwd):
            cwd = cwd[:-len(" (deleted)")]  # a directory removed under the process, as psutil reads it
        if cwd == where or cwd.startswith(below):
            try:
                found.append((psutil.Process(pid), cwd))
            except psutil.Error:
                continue
    return found


def processes_in(path: Path, *, ignore_groups: frozenset[int] = frozenset(),
                 table: ProcessTable | None = None) -> list[str]:
    """Live processes whose working directory is `path` or below it ("pid cmdline").

    `ignore_groups`: process groups fleet stops before it prunes (its own sessions).
    `table`: the process pass of this observation; without it /proc is read now, one cwd
    per process (`_live_under`: the last-moment re-check before a removal needs no more).
    """
    found: list[str] = []
    me = os.getpid()
    mine: list[str] | None = None
    for proc, _cwd in (table.under(path) if table is not None else _live_under(path)):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE or os.getpgid(proc.pid) in ignore_groups:
                continue
            cmdline = proc.cmdline()
            if proc.ppid() == me:
                mine = psutil.Process(me).cmdline() if mine is None else mine
                if cmdline == mine or (cmdline and os.path.basename(cmdline[0]) == "git"):
                    # this process's own git call in the tree, or its fork about to exec one:
                    # one of its threads reading the tree (a Ray session actor answering
                    # `status` while it prunes), not work in it. Any other child is counted (a
                    # session's host, a gate), and so is every git that is not this process's
                    # own child (a user's, an agent's: the agent runs under its host).
                    continue
            found.append(f"{proc.pid} {' '.join(cmdline)[:120] or proc.name()}")
        except (psutil.Error, ProcessLookupError):
            continue
    return found
