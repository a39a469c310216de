"""The state store: one JSON record per agent under `<home>/state/<fleet>/`.

`<home>` is `<git common dir>/fleet` (store/home.py). Until `migrate` has moved an older
fleet's `.fleet/` there, a store given `legacy` reads what it does not find in its home
from there too (fleet diff and fleet status migrate nothing: they write nothing).

Records are written atomically (temp file + rename in the same directory), so a
reader never sees half a record and a crash leaves the old or the new one. The
store is a cache of what fleet did; observation (git, psutil) is always the truth.
"""
from __future__ import annotations

import copy
import json
import marshal
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from . import clock
from .memo import Memo

PENDING, RUNNING, SUCCEEDED, FAILED, BLOCKED = "Pending", "Running", "Succeeded", "Failed", "Blocked"
DELIVERED = "Delivered"  # Succeeded, and its work is in the delivery target (docs/delivery.md)
# Intents recorded (as `reason`) before acting, so a crash mid-way is recognised and finished
CREATING_WORKTREE, STARTING_SESSION, PRUNING = "creating worktree", "starting session", "pruning"


def now_iso() -> str:
    return clock.now_iso()


@dataclass
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""
    lastTransitionTime: str = field(default_factory=now_iso)


@dataclass
class SessionRecord:
    agent: str
    fleet: str
    phase: str = PENDING
    tier: str | None = None
    runtime: str | None = None
    model: str | None = None
    branch: str | None = None
    worktree: str | None = None
    spec_hash: str | None = None
    session_spec: dict[str, Any] | None = None  # what spec_hash was computed from (drift explanation)
    pid: int | None = None
    create_time: float | None = None  # psutil create_time of pid: guards against PID reuse
    session_id: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    attempts: int = 0
    cost_usd: float = 0.0  # sum of the ledger
    ledger: dict[str, dict[str, Any]] = field(default_factory=dict)  # run-<started_at> -> {usd, at, source, ...}
    # what the running session reserved against the budgets when it started (act/costs.py)
    reserved_usd: float | None = None
    cap_usd: float | None = None  # the running session's hard cap (claude: --max-budget-usd; others: fleet stops it)
    paused: bool = False  # stopped by a budget (onExhausted: pause): resumed when the budget allows
    reason: str | None = None  # why Pending/Blocked/Failed, for humans
    protect: bool = False
    gates: list[str] = field(default_factory=list)  # the agent's gates when its session started
    gates_pending: bool = False  # exited 0; the reconciler has not run the gates yet
    gate_failures: dict[str, int] = field(default_factory=dict)  # gate -> failures for this spec
    last_gate: dict[str, Any] | None = None  # {name, exit_code, output} of the last gate run
    gates_exhausted: bool = False  # a gate failed maxAttempts times: Failed, no restart
    gate_feedback: str | None = None  # a failed gate's output, to be sent to the resumed session
    last_output: list[str] = field(default_factory=list)  # last meaningful log lines of a stopped run
    restarts: int = 0  # consecutive failed runs (backoff exponent); 0 after a healthy run
    # why this spec's failed run is not restarted until a person acts: it could not start
    # (StartFailed) or its exit status is unknown (ExitRecordCorrupt); a new run clears it
    held: str | None = None
    backoff_until: str | None = None  # no restart before this (CrashLoopBackOff)
    conditions: list[Condition] = field(default_factory=list)
    # the merge queue's word on this agent's branch (docs/delivery.md "Records"): the verdict on
    # one tip (state, sha, files/output), the intent before moving the target (pending),
    # approvals and rejections, and how often its work was fed back
    delivery: dict[str, Any] = field(default_factory=dict)

    def set_condition(self, type_: str, status: str, reason: str, message: str = "") -> None:
        for cond in self.conditions:
            if cond.type == type_:
                if (cond.status, cond.reason, cond.message) != (status, reason, message):
                    changed = cond.status != status
                    cond.status, cond.reason, cond.message = status, reason, message
                    if changed:
                        cond.lastTransitionTime = now_iso()
                return
        self.conditions.append(Condition(type_, status, reason, message))

    def clear_condition(self, type_: str, reason: str) -> None:
        """Set an existing condition to False (a wait that is over); absent ones stay absent."""
        if any(c.type == type_ for c in self.conditions):
            self.set_condition(type_, "False", reason)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def clone(self) -> SessionRecord:
        """A copy that shares nothing mutable with this record. Every pass copies each ended
        session's record before folding its exit in; `copy.deepcopy` rebuilds each dataclass
        through `__reduce_ex__` and was ~0.2 ms a record (0.2 s a `fleet diff` at 1,000)."""
        # only the fields that are not scalars are copied (most of a record's 40 are scalars),
        # in one dict update: the loop's memo hands every record out this way, each tick. They
        # hold what JSON gave (dicts, lists, scalars), which marshal copies in C, a third
        # faster than walking them in Python; a value it cannot write takes `_copied`. (The
        # instance is made as copy.copy makes it, without its __reduce_ex__ round.)
        new = object.__new__(type(self))
        state = dict(self.__dict__)
        scalar = _SCALAR_TYPES
        nested = {k: v for k, v in state.items() if type(v) not in scalar and k != "conditions"}
        try:
            state.update(marshal.loads(marshal.dumps(nested)))
        except ValueError:  # not JSON's types (a subclass, an object set by code)
            state.update({k: _copied(v) for k, v in nested.items()})
        state["conditions"] = [Condition(c.type, c.status, c.reason, c.message, c.lastTransitionTime)
                               for c in self.conditions]
        new.__dict__ = state
        return new

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionRecord:
        if not isinstance(data, dict):  # `[]` or `3` in a record file: unreadable, as bad JSON is
            raise TypeError(f"a record is a JSON object, not {type(data).__name__}")
        # a record this version wrote has no other keys: filtered only when it has (a newer fleet's)
        values = dict(data) if data.keys() <= _RECORD_FIELDS else {k: v for k, v in data.items() if k in _RECORD_FIELDS}
        values["conditions"] = [Condition(**c) for c in values.get("conditions", [])]
        return cls(**values)


_SCALARS = (str, int, float, bool, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)  # exact types: a subclass is copied as a container would be
# what `from_json` keeps of a file (keys a newer fleet added are left out); `fields()` walked
# the 40 fields for each of a fleet's records every pass
_RECORD_FIELDS = frozenset(f.name for f in fields(SessionRecord))


def _copied(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, scalars: what a record holds besides its
    conditions); anything else goes through copy.deepcopy."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copied(v) for v in value]
    return copy.deepcopy(value)


@dataclass(frozen=True)
class CannotStart:
    """The session host could not start the agent's program (act/session_host.py)."""

    reason: str  # a condition reason: NotFound, PermissionDenied, NotExecutable, CannotStart
    message: str  # "cannot start 'claude': No such file or directory (searched PATH)"

    def to_json(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message}

    @classmethod
    def from_json(cls, data: Any) -> CannotStart | None:
        if not isinstance(data, dict) or not isinstance(data.get("message"), str):
            return None
        return cls(reason=str(data.get("reason") or "CannotStart"), message=data["message"])


@dataclass(frozen=True)
class ExitRecord:
    """Written by the session runner when the agent process exits."""

    pid: int
    exit_code: int
    finished_at: str
    cannot_start: CannotStart | None = None  # the program never ran (exit_code 127)
    # the exit file exists but cannot be read: how the run ended is unknown (pid is 0, exit_code -1)
    corrupt: str | None = None
    # the session's owner variables (act/session_host.py): which run of which spec this was,
    # so a session fleet died before recording is still known as the agent's (observe/snapshot.py)
    session_id: str | None = None
    spec_hash: str | None = None


class StateStore:
    """Records for one fleet. Paths: <home>/state/<fleet>/<agent>.json (+ .exit.json).

    `legacy`: the old home (`.fleet/` of the main checkout), read where the home has no
    file yet; writes always go to the home."""

    def __init__(self, fleet_home: Path, fleet: str, *, legacy: Path | None = None,
                 legacy_tracked: frozenset[Path] = frozenset(), memo: Memo[Any] | None = None) -> None:
        self.home = fleet_home
        self.fleet = fleet
        self.dir = fleet_home / "state" / fleet
        self._dir = os.fspath(self.dir)  # every pass reads each record: joined as strings (pathlib costs more)
        self.log_dir = fleet_home / "logs" / fleet
        # the old home is read only where it is fleet's own: not a file git tracks, never through a symlink
        usable = legacy is not None and legacy.is_dir() and not legacy.is_symlink()
        self.legacy = StateStore(legacy, fleet) if usable and legacy is not None else None
        self._legacy_root = legacy
        self._legacy_tracked = legacy_tracked
        # the loop's (store/memo.py): `all()` and `load_exit` parse a file again only when it
        # changed; not while the old home holds records (they are read there as before)
        self._memo = memo if self.legacy is None or not os.path.isdir(self.legacy._dir) else None

    def _trusted(self, path: Path) -> bool:
        from .home import trusted

        return self._legacy_root is not None and trusted(self._legacy_root, path, self._legacy_tracked)

    def _read(self, path: str, legacy: Path | None) -> str | bytes:
        """The JSON at `path` (bytes: json.loads decodes UTF-8 itself, and a text-mode open
        cost more than the parse), else at its legacy twin (FileNotFoundError if in neither, or
        if the twin is not fleet's own: tracked by git, or a symlink)."""
        from .home import read_legacy

        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            if legacy is None or not self._trusted(legacy):
                raise
            try:
                return read_legacy(legacy)
            except OSError as exc:  # ELOOP: a symlink swapped in
                raise FileNotFoundError(str(legacy)) from exc

    def path(self, agent: str) -> Path:
        return self.dir / f"{agent}.json"

    def exit_path(self, agent: str) -> Path:
        return self.dir / f"{agent}.exit.json"

    def spend_path(self, agent: str) -> Path:
        """What a running claude session's own cost metrics say it spent (act/spend_receiver.py);
        in a directory of its own, as every `*.json` here is a record."""
        return self.dir / "live" / f"{agent}.json"

    def log_path(self, agent: str) -> Path:
        """Where the agent's log is written; a log not moved from the old home yet is read there."""
        path = self.log_dir / f"{agent}.log"
        if self.legacy is not None and not path.exists() and (old := self.legacy.log_path(agent)).exists() \
                and self._trusted(old):
            return old
        return path

    def load(self, agent: str) -> SessionRecord | None:
        try:
            legacy = self.legacy.path(agent) if self.legacy else None
            return SessionRecord.from_json(json.loads(self._read(os.path.join(self._dir, f"{agent}.json"), legacy)))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            # reading never writes (fleet diff must not); save() keeps the bad file aside
            return SessionRecord(agent=agent, fleet=self.fleet,
                                 reason=f"state record {self.path(agent)} was unreadable ({exc}); "
                                        "it is kept as .corrupt on the next apply")

    def all(self) -> dict[str, SessionRecord]:
        """Every record. With the loop's memo, one parsed again only when its file changed,
        each a copy of what is remembered (a pass changes its records in place)."""
        old = [n for n in self.legacy._names() if self._trusted(self.legacy.path(n))] if self.legacy else []
        names = sorted(set(self._names()) | set(old))
        if self._memo is not None:
            memo, started = self._memo, self._memo.started()
            found: dict[str, SessionRecord] = {}
            for n in names:
                try:
                    found[n] = memo.file(f"{self._dir}/{n}.json", _record_of, started).clone()
                except FileNotFoundError:
                    continue
                except (ValueError, TypeError):  # not remembered: read (and reported) as without a memo
                    if (r := self.load(n)) is not None:
                        found[n] = r
            return found
        return {n: r for n in names if (r := self.load(n)) is not None}

    def _names(self) -> list[str]:
        try:
            names = os.listdir(self._dir)
        except (FileNotFoundError, NotADirectoryError):
            return []
        # what glob("*.json") matched (temp files of write_json_atomic end in .tmp)
        return [n[:-5] for n in names if n.endswith(".json") and not n.endswith(".exit.json")]

    def save(self, record: SessionRecord) -> None:
        path = self.path(record.agent)
        if path.exists() and not _readable_json(path):
            path.replace(path.with_suffix(".corrupt"))  # never lose a file, even a broken one
        write_json_atomic(path, record.to_json())

    def load_exits(self, agents: Iterable[str]) -> dict[str, ExitRecord | None]:
        """`load_exit` of each agent, as the files are now. The loop's look took its keys
        before: a session that ended since (after the look began, before the process table was
        read) wrote its exit record, and the watched memo would give the key from before it
        (None: no exit record), so the run would read as killed. Observe reads these last for
        that reason (observe/snapshot.py)."""
        names = list(agents)
        if self._memo is not None:
            self._memo.restat([self._exit_file(agent) for agent in names])
        return {agent: self.load_exit(agent) for agent in names}

    def _exit_file(self, agent: str) -> str:
        return f"{self._dir}/{agent}.exit.json"  # what os.path.join gives (one component), for less

    def load_exit(self, agent: str) -> ExitRecord | None:
        """The agent's exit record; None if there is none. One that exists but cannot be read
        is not "no exit status" (that reads as killed, and restarts a run that may have
        succeeded): it comes back with `corrupt` saying why, and the next persisting pass
        keeps the file aside (`keep_exit_aside`)."""
        path = self._exit_file(agent)
        try:
            if self._memo is not None:  # an ExitRecord is frozen: the remembered one is shared
                return self._memo.file(path, _exit_of)
            legacy = self.legacy.exit_path(agent) if self.legacy else None
            return _exit_of(self._read(path, legacy))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            why = f"{type(exc).__name__}: {exc}" if isinstance(exc, (KeyError, TypeError)) else str(exc)
            return ExitRecord(pid=0, exit_code=-1, finished_at="", corrupt=f"exit record {path} is unreadable ({why})")

    def keep_exit_aside(self, agent: str) -> Path | None:
        """Rename an unreadable exit record to `<agent>.exit.json.corrupt-<UTC time>` (never
        deleted: it is evidence of how a run ended). None if it was already gone."""
        path = self.exit_path(agent)
        aside = path.with_name(f"{path.name}.corrupt-{clock.now().strftime('%Y%m%dT%H%M%S.%fZ')}")
        try:
            path.rename(aside)
        except FileNotFoundError:
            return None
        return aside

    def clear_exit(self, agent: str) -> None:
        self.exit_path(agent).unlink(missing_ok=True)

    def remove(self, agent: str) -> None:
        for p in (self.path(agent), self.exit_path(agent)):
            if p.exists() and not _readable_json(p):
                p.replace(p.with_suffix(".corrupt"))
            p.unlink(missing_ok=True)
        self.spend_path(agent).unlink(missing_ok=True)

    def sweep_temp(self, older_than: float = 0.0) -> None:
        """Drop temp files of writes that were killed before their rename.

        Records are only written under the fleet lock, which the caller holds, so any
        temp file here belongs to a writer that died."""
        cutoff = time.time() - older_than
        try:  # what glob(".*.tmp") matched; scandir: pathlib's glob cost ~1 ms a pass over 2,000 records
            with os.scandir(self._dir) as found:  # ".*.tmp": a dot, anything, ".tmp" (so "..tmp", not ".tmp")
                entries = [e for e in found if len(e.name) >= 5 and e.name.startswith(".") and e.name.endswith(".tmp")]
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
            except FileNotFoundError:
                continue


def _readable_json(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Temp file in the same directory, fsync, rename: a reader sees the old text or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _record_of(text: str | bytes) -> SessionRecord:
    return SessionRecord.from_json(json.loads(text))


def _exit_of(text: str | bytes) -> ExitRecord:
    data = json.loads(text)
    return ExitRecord(pid=int(data["pid"]), exit_code=int(data["exit_code"]), finished_at=str(data["finished_at"]),
                      session_id=data.get("session_id"), spec_hash=data.get("spec_hash"),
                      cannot_start=CannotStart.from_json(data.get("cannot_start")))
