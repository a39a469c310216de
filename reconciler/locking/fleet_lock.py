"""The fleet-wide lock: one apply/reconcile at a time per fleet and repo.

filelock holds an OS lock (released by the kernel if the holder dies, so it can't go
stale); a JSON file beside it says who holds it, for the waiting message and
`fleet force-unlock`.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import FleetError
from ..store.records import now_iso, write_json_atomic


def lock_paths(home: Path, fleet: str) -> tuple[Path, Path]:
    return home / f"{fleet}.lock", home / f"{fleet}.lock.json"


def holder(home: Path, fleet: str) -> dict[str, object] | None:
    try:
        return json.loads(lock_paths(home, fleet)[1].read_text())
    except (OSError, ValueError):
        return None


def describe(info: dict[str, object] | None) -> str:
    if not info:
        return "another fleet process"
    return f"{info.get('command')} (pid {info.get('pid')} on {info.get('host')}, since {info.get('since')}, " \
           f"lock ID {info.get('id')})"


@contextmanager
def fleet_lock(home: Path, fleet: str, *, timeout: float | None, command: str,
               on_wait: Callable[[str], None] | None = None) -> Iterator[str]:
    """Hold the fleet lock; wait (telling `on_wait` who holds it) up to `timeout` seconds."""
    lock_file, info_file = lock_paths(home, fleet)
    home.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_file))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait:
            on_wait(f"waiting for the fleet lock held by {describe(holder(home, fleet))}")
        try:
            lock.acquire(timeout=-1 if timeout is None else timeout)
        except Timeout:
            raise FleetError(f"fleet {fleet} is locked by {describe(holder(home, fleet))}",
                             hint="wait for it to finish, raise --lock-timeout, or if that process is "
                                  "gone run `fleet force-unlock ID`") from None
    lock_id = uuid.uuid4().hex[:8]
    write_json_atomic(info_file, {"id": lock_id, "pid": os.getpid(), "host": socket.gethostname(),
                                  "since": now_iso(), "command": command, "argv": sys.argv})
    try:
        yield lock_id
    finally:
        info_file.unlink(missing_ok=True)
        lock.release()


def force_unlock(home: Path, fleet: str, lock_id: str) -> str:
    """Clear a lock whose holder is gone. A live holder is refused: stop it instead."""
    import psutil

    info = holder(home, fleet)
    if info is None:
        raise FleetError(f"fleet {fleet} is not locked")
    if info.get("id") != lock_id:
        raise FleetError(f"lock ID {lock_id} does not match the current lock ({info.get('id')})",
                         hint="copy the ID from the lock message")
    raw_pid = info.get("pid")
    pid = raw_pid if isinstance(raw_pid, int) else 0
    if pid and psutil.pid_exists(pid) and info.get("host") == socket.gethostname():
        raise FleetError(f"the lock holder (pid {pid}) is still running",
                         hint=f"stop it first (kill {pid}); its OS lock is released when it exits")
    lock_paths(home, fleet)[1].unlink(missing_ok=True)
    return f"removed lock {lock_id} of {describe(info)}"
