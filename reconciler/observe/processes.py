"""Process truth through psutil: liveness with create-time checks, and orphans.

Only this module (and `act/sessions.py` for signals) talks to psutil.
"""
from __future__ import annotations

import os
from pathlib import Path

import psutil

# plain data (observe/model.py), importable from here as before
from .model import OwnedProcess

# Owner variables every session carries; orphans are found by them.
ENV_FLEET, ENV_REPO, ENV_AGENT, ENV_HASH = "FLEET_NAME", "FLEET_REPO", "FLEET_AGENT", "FLEET_SPEC_HASH"
ENV_SESSION = "FLEET_SESSION_ID"
_CREATE_TIME_TOLERANCE = 0.05  # seconds; psutil's create_time has clock-tick resolution


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


def owned_processes(fleet: str, repo: str, *, known: dict[int, float] | None = None) -> list[OwnedProcess]:
    """Session leaders whose environment names this fleet and repo.

    Only one process per session (the group leader) is returned, so stopping it
    stops the agent and everything it started. `known` (pid -> create-time): recorded
    live sessions; they are left out without reading their environment (one /proc read
    per session saved on every tick).
    """
    found: list[OwnedProcess] = []
    me = os.getpid()
    known = known or {}
    for proc in psutil.process_iter(["pid", "create_time"]):
        try:
            if proc.pid == me or os.getsid(proc.pid) != proc.pid:
                continue
            created = known.get(proc.pid)
            if created is not None and abs(proc.info["create_time"] - created) < _CREATE_TIME_TOLERANCE:
                continue
            env = proc.environ()
            if env.get(ENV_FLEET) != fleet or env.get(ENV_REPO) != repo:
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            found.append(OwnedProcess(proc.pid, proc.info["create_time"], env.get(ENV_AGENT, ""),
                                      env.get(ENV_HASH, ""), env.get(ENV_SESSION, ""),
                                      " ".join(proc.cmdline())[:200]))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, ProcessLookupError):
            continue
    return found


class ProcessTable:
    """Every process's working directory, read in one pass, for many `processes_in` calls
    (observing N prune candidates: one pass over /proc, not N)."""

    def __init__(self) -> None:
        self.procs = [(proc, proc.info.get("cwd")) for proc in psutil.process_iter(["pid", "cwd", "name"])]


def processes_in(path: Path, *, ignore_groups: frozenset[int] = frozenset(),
                 table: ProcessTable | None = None) -> list[str]:
    """Live processes whose working directory is `path` or below it ("pid cmdline").

    `ignore_groups`: process groups fleet stops before it prunes (its own sessions).
    `table`: cwds read earlier in the same observation; without it /proc is read now.
    """
    found: list[str] = []
    where, below = str(path), str(path) + os.sep
    procs = table.procs if table is not None else ((p, p.info.get("cwd"))
                                                   for p in psutil.process_iter(["pid", "cwd", "name"]))
    for proc, cwd in procs:
        if not cwd:
            continue
        if cwd == where or cwd.startswith(below):
            try:
                if proc.status() == psutil.STATUS_ZOMBIE or os.getpgid(proc.pid) in ignore_groups:
                    continue
                found.append(f"{proc.pid} {' '.join(proc.cmdline())[:120] or proc.info['name']}")
            except (psutil.Error, ProcessLookupError):
                continue
    return found
