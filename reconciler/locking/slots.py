"""Named counting locks: `fleet lock NAME -- CMD` runs CMD holding one of NAME's slots.

A lock with N slots is N files `<lock dir>/<NAME>.<slot>.lock` (slot = 0..N-1), each
held with filelock (an OS lock: the kernel releases it when the holder dies, so it
never goes stale). Beside each slot file, `<NAME>.<slot>.json` says who holds it
(pid, since, cmd) for the waiting message. `<lock dir>/locks.json` maps lock names to
their declared slot counts; `fleet apply` writes it from the fleet's `spec.locks`, so
sessions, which only know `FLEET_LOCK_DIR`, use the declared counts.

Signals: SIGTERM, SIGINT and SIGHUP are held pending (not delivered asynchronously)
for the whole run and handled in one loop, so a signal can never land between
acquiring a slot and starting CMD, or between CMD exiting and the release. While
waiting, one ends the wait (exit 128+signum, nothing held). While CMD runs it is
forwarded to CMD, and the lock is released only after CMD has exited. Signals the
kernel sends to the terminal's whole foreground process group (Ctrl-C, hangup) are
not forwarded: CMD, in the same group, already received them.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from filelock import FileLock, Timeout

from ..errors import FleetError
from ..spec.names import NAME_PATTERN, name_problem
from ..store.home import home_of
from ..store.records import now_iso, write_json_atomic

LOCK_TABLE = "locks.json"
ENV_LOCK_DIR = "FLEET_LOCK_DIR"
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
POLL_SECONDS = 0.1
_SI_KERNEL_MIN = 1  # si_code > 0: sent by the kernel (e.g. tty Ctrl-C); <= 0: kill()/sigqueue()/tkill()

Say = Callable[[str], None]


# -- files -------------------------------------------------------------------------------------------


def check_lock_name(name: str) -> None:
    problem = name_problem(name)
    if problem:
        raise FleetError(f"invalid lock name: {problem}", hint=f"lock names match {NAME_PATTERN}")


def slot_files(lock_dir: Path, name: str, slot: int) -> tuple[Path, Path]:
    """(the OS lock file, the holder-info JSON) of one slot."""
    return lock_dir / f"{name}.{slot}.lock", lock_dir / f"{name}.{slot}.json"


def read_lock_table(lock_dir: Path) -> dict[str, int]:
    """The `{name: slots}` table in `<lock dir>/locks.json`; {} when absent or unreadable."""
    try:
        data = json.loads((lock_dir / LOCK_TABLE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, int) and v >= 1}


def write_lock_table(lock_dir: Path, locks: Mapping[str, int]) -> Path:
    """Record declared locks (`{name: slots}`) in `<lock dir>/locks.json`; returns its path.

    Merged into what is there (several fleets of one repo share the lock dir; the
    names given win), under a small lock, and written atomically.
    """
    for name, slots in locks.items():
        check_lock_name(name)
        if not isinstance(slots, int) or slots < 1:
            raise FleetError(f"lock {name}: slots must be an integer >= 1, not {slots!r}")
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / LOCK_TABLE
    with FileLock(str(lock_dir / f".{LOCK_TABLE}.lock")):
        table = read_lock_table(lock_dir)
        table.update(locks)
        write_json_atomic(path, dict(sorted(table.items())))
    return path


def repo_lock_dir(common_dir: Path) -> Path:
    """The lock dir of the repo whose git common dir is `common_dir`: `<home>/locks`, the same
    from every worktree (store/home.py)."""
    return home_of(common_dir) / "locks"


def git_common_dir(cwd: Path) -> Path:
    """The git common dir of the repo containing `cwd` (shared by all its worktrees)."""
    try:
        proc = subprocess.run(["git", "rev-parse", "--git-common-dir"], cwd=cwd, capture_output=True, text=True,
                              check=False)
    except OSError as exc:
        raise FleetError(f"cannot run git to find the lock dir: {exc}",
                         hint=f"set {ENV_LOCK_DIR} or pass -f FLEET_FILE") from None
    if proc.returncode != 0:
        raise FleetError(f"{cwd} is not inside a git repository, so there is no default lock dir",
                         hint=f"set {ENV_LOCK_DIR}=DIR (sessions have it), pass -f FLEET_FILE, "
                              "or run inside the repo")
    return (cwd / proc.stdout.strip()).resolve()


# -- holders -----------------------------------------------------------------------------------------


def holders(lock_dir: Path, name: str, slots: int) -> list[dict[str, Any] | None]:
    """Who holds each slot, from the info files; None where unknown or the recorded holder is gone."""
    out: list[dict[str, Any] | None] = []
    for slot in range(slots):
        try:
            info = json.loads(slot_files(lock_dir, name, slot)[1].read_text())
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict) and not _gone(info):
            out.append(info)
        else:
            out.append(None)
    return out


def _gone(info: Mapping[str, Any]) -> bool:
    """True when the recorded holder certainly exited (same host, pid not running)."""
    import psutil

    pid = info.get("pid")
    if not isinstance(pid, int) or info.get("host") != socket.gethostname():
        return False
    return not psutil.pid_exists(pid)


def describe(name: str, slots: int, infos: Sequence[Mapping[str, Any] | None]) -> str:
    """`build (1 slot, held by pid 123 since T: make -j4)`."""
    parts = []
    for info in infos:
        if info is None:
            parts.append("another process")
            continue
        cmd = info.get("cmd")
        shown = " ".join(str(c) for c in cmd) if isinstance(cmd, list) else str(cmd or "?")
        if len(shown) > 60:
            shown = shown[:57] + "..."
        parts.append(f"pid {info.get('pid')} since {info.get('since')}: {shown}")
    plural = "slot" if slots == 1 else "slots"
    return f"{name} ({slots} {plural}, held by {'; '.join(parts)})"


# -- signals -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    signum: int
    from_kernel: bool  # tty-generated: the whole foreground process group got it


class SignalGate:
    """Hold SIGTERM/SIGINT/SIGHUP (and SIGCHLD) pending; `wait()` returns those that arrived.

    On platforms without sigtimedwait (macOS) it falls back to handlers that record
    the signal; then every signal is forwarded.
    """

    def __init__(self) -> None:
        self.blocking = hasattr(signal, "sigtimedwait") and hasattr(signal, "pthread_sigmask")
        self._watched = {*FORWARDED, signal.SIGCHLD}
        self._old_mask: set[int] | None = None
        self._old_handlers: dict[int, Any] = {}
        self._pending: list[Received] = []

    def __enter__(self) -> SignalGate:
        self._old_handlers[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # never auto-reap
        if self.blocking:
            self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, self._watched)
        else:
            for sig in FORWARDED:
                self._old_handlers[sig] = signal.signal(sig, self._record)
        return self

    def _record(self, signum: int, frame: object) -> None:
        self._pending.append(Received(signum, from_kernel=False))

    def wait(self, seconds: float) -> list[Received]:
        """Sleep up to `seconds` (less when a signal or SIGCHLD arrives); the forwardable signals received."""
        if not self.blocking:
            if not self._pending:
                time.sleep(seconds)
            pending, self._pending = self._pending, []
            return pending
        got: list[Received] = []
        info = signal.sigtimedwait(self._watched, seconds)
        while info is not None:
            if info.si_signo != signal.SIGCHLD:
                got.append(Received(info.si_signo, from_kernel=info.si_code >= _SI_KERNEL_MIN))
            info = signal.sigtimedwait(self._watched, 0)
        return got

    def child_setup(self) -> None:
        """Runs in CMD's process before exec: CMD starts with the caller's signal mask."""
        if self._old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.blocking:
            while signal.sigtimedwait(self._watched, 0) is not None:  # consumed: CMD's code is our answer
                pass
            if self._old_mask is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)


# -- holding a slot ----------------------------------------------------------------------------------


class SlotHold:
    """One held slot: the OS lock plus the holder-info file written beside it."""

    def __init__(self, lock: FileLock, lock_dir: Path, name: str, slot: int) -> None:
        self.lock = lock
        self.slot = slot
        self.info_file = slot_files(lock_dir, name, slot)[1]

    def record(self, command: Sequence[str]) -> None:
        write_json_atomic(self.info_file, {"pid": os.getpid(), "host": socket.gethostname(), "since": now_iso(),
                                           "cmd": list(command), "slot": self.slot})

    def release(self) -> None:
        try:
            self.info_file.unlink(missing_ok=True)
        finally:
            self.lock.release(force=True)


def try_acquire(lock_dir: Path, name: str, slots: int) -> SlotHold | None:
    """Take the first free slot without blocking; None when all `slots` are held."""
    for slot in range(slots):
        lock = FileLock(str(slot_files(lock_dir, name, slot)[0]), thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        return SlotHold(lock, lock_dir, name, slot)
    return None


def wait_for_slot(lock_dir: Path, name: str, slots: int, *, timeout: float | None, gate: SignalGate,
                  say: Say, poll: float = POLL_SECONDS) -> SlotHold | int:
    """A held slot, or 128+signum if a signal ended the wait. Raises FleetError on timeout.

    Tells `say` once who holds the lock (after its holders have recorded themselves,
    or after a second if they have not).
    """
    start = time.monotonic()
    announced = False
    while True:
        held = try_acquire(lock_dir, name, slots)
        if held is not None:
            return held
        waited = time.monotonic() - start
        if not announced:
            infos = holders(lock_dir, name, slots)
            if all(infos) or waited >= 1.0 or (timeout is not None and waited + poll >= timeout):
                say(f"fleet lock: waiting for {describe(name, slots, infos)}")
                announced = True
        if timeout is not None and waited >= timeout:
            raise FleetError(f"timed out after {timeout:g}s waiting for lock "
                             f"{describe(name, slots, holders(lock_dir, name, slots))}",
                             hint="wait for the holder to finish, raise --timeout, or drop it to wait "
                                  "without limit")
        sleep = poll if timeout is None else max(0.0, min(poll, timeout - waited))
        for got in gate.wait(sleep):
            say(f"fleet lock: {signal.Signals(got.signum).name} while waiting for {name}; not run")
            return 128 + got.signum


def run_locked(command: Sequence[str], *, lock_dir: Path, name: str, slots: int = 1,
               timeout: float | None = None, say: Say = lambda msg: print(msg, file=sys.stderr),
               poll: float = POLL_SECONDS) -> int:
    """Run `command` holding one of `name`'s `slots`; return its exit code (128+signum if killed).

    126/127 when it cannot be started (as `env` and `timeout` do). Signals: see the
    module docstring. The slot is released on every way out.
    """
    check_lock_name(name)
    if not command:
        raise FleetError("no command to run", hint="fleet lock NAME -- CMD [ARGS...]")
    if slots < 1:
        raise FleetError(f"lock {name}: slots must be >= 1, not {slots}")
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FleetError(f"cannot create lock dir {lock_dir}: {exc.strerror}",
                         hint=f"check {ENV_LOCK_DIR} or the permissions of that directory") from None
    with SignalGate() as gate:
        held = wait_for_slot(lock_dir, name, slots, timeout=timeout, gate=gate, say=say, poll=poll)
        if isinstance(held, int):
            return held
        try:
            held.record(command)
            return run_child(command, gate=gate, say=say, poll=poll)
        finally:
            held.release()


def run_child(command: Sequence[str], *, gate: SignalGate, say: Say, poll: float) -> int:
    try:
        child = subprocess.Popen(list(command), preexec_fn=gate.child_setup if gate.blocking else None)
    except FileNotFoundError:
        say(f"fleet lock: {command[0]}: command not found")
        return 127
    except OSError as exc:
        say(f"fleet lock: cannot run {command[0]}: {exc.strerror}")
        return 126
    while (code := child.poll()) is None:
        for got in gate.wait(poll):
            if not got.from_kernel:  # the tty already sent it to CMD (same process group)
                try:
                    child.send_signal(got.signum)
                except ProcessLookupError:
                    pass
    return 128 - code if code < 0 else code
