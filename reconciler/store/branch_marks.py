"""Which branches a fleet owns: `<home>/branches/<fleet>.json`, one file per fleet (docs/safety.md "Ownership").

Ownership decides which branches fleet may ever delete, so this file is read strictly:

- absent: the fleet owns no branch by it (absent mark = not owned = never deleted);
- anything but a regular file holding exactly this format (a symlink, a directory, bad
  JSON, another fleet's name, a non-string branch): a located `FleetError` that stops the
  pass before it plans, so nothing is deleted;
- written only whole (temp file, fsync, rename: store/records.py `write_json_atomic`), by the
  fleet that owns it, under its fleet lock; one file per fleet, so two fleets of a repository
  never write the same file.

    {"apiVersion": "fleet/v1alpha1", "kind": "BranchMarks", "fleet": "<fleet>",
     "branches": {"<branch>": {"protect": false, "id": "<first line of the branch's reflog>"}, ...}}

A mark outlives a `git branch -D` done by hand (the old config key went with the branch's
config section), so each mark carries the branch's identity: the first line of its reflog
(`<common dir>/logs/refs/heads/<branch>`), recorded right after fleet created the branch. A
branch deleted and made again has a new reflog, so a new first line. A mark counts only while
it matches (`entry_holds`):

- `id` a non-empty string: owned only while the branch's reflog starts with exactly that line;
- `id` "": the branch had no reflog when fleet made it (core.logAllRefUpdates=false): its
  identity cannot be checked, so it is not owned (kept, never deleted: the safe side);
- no `id` (a mark by an older fleet, or one written before the branch was created by a pass
  that crashed before recording it): owned if the branch exists, as before; the next pass
  records the identity of the branch then (act/branch_marks.py `migrate_marks`).

Older fleets kept the marks in the repository config (`branch.<b>.fleetOwner = <fleet>`,
`branch.<b>.fleetProtect = true`), where every git process parses them (O(agents) per git
call). Those are still read, and moved here by `act/branch_marks.py` `migrate_marks`.
"""
from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import FleetError
from .home import home_of
from .memo import Key, stat_key
from .records import write_json_atomic

MARKS_DIR = "branches"  # <home>/branches/<fleet>.json
KIND = "BranchMarks"
API = "fleet/v1alpha1"


@dataclass(frozen=True)
class Marks:
    """Every fleet's marks in one repository, from the files and the config together."""

    claims: dict[str, frozenset[str]]  # branch -> the fleets that mark it as theirs
    protected: frozenset[str]  # branches marked protect (by any fleet)

    def owners(self) -> dict[str, str]:
        """branch -> its one owner. A branch two fleets claim is owned by neither: never deleted."""
        return {b: next(iter(fs)) for b, fs in self.claims.items() if len(fs) == 1}

    @property
    def claimed(self) -> frozenset[str]:
        """Every branch some fleet claims (none of them anchors anything: observe/stake.py)."""
        return frozenset(self.claims)


def marks_dir(common_dir: Path) -> Path:
    return home_of(common_dir) / MARKS_DIR


def marks_path(common_dir: Path, fleet: str) -> Path:
    return marks_dir(common_dir) / f"{fleet}.json"


def _fix(path: Path) -> str:
    return (f"restore {path} (from a backup), or remove it: fleet then owns none of the branches it named "
            "(they show as Blocked, never deleted); `git config branch.<b>.fleetOwner <fleet>` marks one again")


@dataclass(frozen=True)
class Entry:
    """One branch's mark: its protect, and its identity (None: not recorded; "": no reflog)."""

    protect: bool = False
    ident: str | None = None


def branch_identity(common_dir: Path, branch: str) -> str:
    """The first line of `branch`'s reflog; "" when it has none (or it cannot be read)."""
    try:
        # a string path: read once per marked branch per pass, and pathlib's joins cost
        # more than the open itself (~0.05 s a pass at 1,000 branches)
        with open(os.path.join(common_dir, "logs", "refs", "heads", branch), "rb") as f:
            return f.readline().decode("utf-8", "surrogateescape").rstrip("\n")
    except OSError:
        return ""


def entry_holds(common_dir: Path, branch: str, entry: Entry) -> bool:
    """The mark still names the branch fleet made (see the module docstring)."""
    if entry.ident is None:
        return True
    return bool(entry.ident) and branch_identity(common_dir, branch) == entry.ident


def read_fleet_marks(common_dir: Path, fleet: str) -> dict[str, bool]:
    """branch -> protect, from `fleet`'s file; {} when it does not exist. Raises FleetError
    (naming the file) for anything that is not a regular file of exactly the format."""
    return {b: e.protect for b, e in read_fleet_entries(common_dir, fleet).items()}


def read_fleet_entries(common_dir: Path, fleet: str) -> dict[str, Entry]:
    """branch -> its Entry, from `fleet`'s file, as `read_fleet_marks`."""
    path = marks_path(common_dir, fleet)
    _check_dir(path.parent)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return {}
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FleetError(f"{path}: the branch-marks file is a symlink; fleet reads ownership only from "
                             "its own file", hint=_fix(path)) from None
        raise FleetError(f"{path}: cannot read the branch-marks file: {exc.strerror}", hint=_fix(path)) from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise FleetError(f"{path}: the branch-marks file is not a regular file", hint=_fix(path))
        raw = f.read()
    return _parse(path, fleet, raw)


def _check_dir(directory: Path) -> None:
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise FleetError(f"{directory}: where fleet keeps branch marks is not a directory (a symlink or a file)",
                         hint=f"remove {directory}; fleet then owns no branch by file (they show as Blocked, "
                              "never deleted)")


def _parse(path: Path, fleet: str, raw: bytes) -> dict[str, Entry]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise FleetError(f"{path}: the branch-marks file is not valid JSON ({exc})", hint=_fix(path)) from None
    if not isinstance(data, dict) or data.get("kind") != KIND or data.get("apiVersion") != API:
        raise FleetError(f"{path}: not a branch-marks file (kind {KIND}, apiVersion {API})", hint=_fix(path))
    if data.get("fleet") != fleet:
        raise FleetError(f"{path}: the branch-marks file names fleet {data.get('fleet')!r}, not {fleet!r}",
                         hint=_fix(path))
    branches = data.get("branches")
    if not isinstance(branches, dict):
        raise FleetError(f"{path}: `branches` is not a mapping", hint=_fix(path))
    out: dict[str, Entry] = {}
    for branch, mark in branches.items():
        if not (isinstance(branch, str) and _plausible_branch(branch) and isinstance(mark, dict)
                and isinstance(mark.get("protect", False), bool) and isinstance(mark.get("id", ""), str)):
            raise FleetError(f"{path}: bad entry {branch!r}: {mark!r}", hint=_fix(path))
        out[branch] = Entry(mark.get("protect", False), mark.get("id"))
    return out


def _plausible_branch(name: str) -> bool:
    """What `git check-ref-format --branch` would refuse outright (the cheap part of it)."""
    return bool(name) and not name.startswith(("-", "/")) and not name.endswith(("/", ".lock", ".")) \
        and ".." not in name and not any(c in name for c in " ~^:?*[\\\0\n\t")


def write_fleet_marks(common_dir: Path, fleet: str, marks: dict[str, bool]) -> None:
    """Replace `fleet`'s file with `marks` (branch -> protect, no identity), atomically. Call under the fleet lock."""
    write_fleet_entries(common_dir, fleet, {b: Entry(p) for b, p in marks.items()})


def write_fleet_entries(common_dir: Path, fleet: str, marks: dict[str, Entry]) -> None:
    """Replace `fleet`'s file with `marks`, atomically. Call under the fleet lock."""
    path = marks_path(common_dir, fleet)
    _check_dir(path.parent)
    write_json_atomic(path, {"apiVersion": API, "kind": KIND, "fleet": fleet,
                             "branches": {b: {"protect": e.protect, **({} if e.ident is None else {"id": e.ident})}
                                          for b, e in sorted(marks.items())}})


def fleets_with_marks(common_dir: Path) -> list[str]:
    directory = marks_dir(common_dir)
    _check_dir(directory)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(n[:-len(".json")] for n in names if n.endswith(".json") and not n.startswith("."))


def ref_storage_keys(common_dir: Path, stat: Callable[[str], Key] = stat_key) -> list[Key]:
    """The stat keys of where git keeps the refs that are not loose files: `packed-refs` (a
    ref packed, or a packed one deleted) and the reftable's table list (any ref moved).
    `stat`: `stat_key`, or the loop memo's `Memo.stat` (once a look)."""
    common = os.fspath(common_dir)
    return [stat(os.path.join(common, "packed-refs")), stat(os.path.join(common, "reftable", "tables.list"))]


def marks_keys(common_dir: Path, branches: Iterable[str], stat: Callable[[str], Key] = stat_key) -> tuple[Key, ...]:
    """The stat keys (store/memo.py) of what the marks of `branches` were judged by: the marks
    directory (a fleet's file added or removed) and each file in it, every branch's loose ref
    and reflog (its identity, `branch_identity`), `packed-refs` and the reftable's table list
    (a branch deleted or made again while packed). `stat`: as for `ref_storage_keys`."""
    common = os.fspath(common_dir)
    directory = os.fspath(marks_dir(common_dir))
    keys: list[Key] = [stat(directory), *ref_storage_keys(common_dir, stat)]
    try:
        keys += [stat(os.path.join(directory, n)) for n in sorted(os.listdir(directory))]
    except OSError:
        pass
    heads, logs = os.path.join(common, "refs", "heads"), os.path.join(common, "logs", "refs", "heads")
    for branch in branches:  # f-strings: os.path.join's checks cost more than the stat, at 1,000 marks
        keys += [stat(f"{heads}/{branch}"), stat(f"{logs}/{branch}")]
    return tuple(keys)


def read_marks(common_dir: Path, config_lines: str, *, verify: bool = True) -> Marks:
    """Every fleet's marks: the files under `<home>/branches/`, and the config's
    (`git config --get-regexp '^branch\\..*\\.fleet(owner|protect)$'` output, keys lowercased
    as git prints them) for marks not moved yet. Raises FleetError for a bad file.

    `verify=False` skips the identity check (one reflog read per mark): the claims are then a
    superset of the verified ones, enough to rule a branch out."""
    claims: dict[str, set[str]] = {}
    protected: set[str] = set()
    for fleet in fleets_with_marks(common_dir):
        for branch, entry in read_fleet_entries(common_dir, fleet).items():
            if verify and not entry_holds(common_dir, branch, entry):
                continue  # the branch was deleted and made again (or cannot be checked): not the fleet's
            claims.setdefault(branch, set()).add(fleet)
            if entry.protect:
                protected.add(branch)
    owned, config_protected = parse_config_marks(config_lines)
    for branch, fleet in owned.items():
        claims.setdefault(branch, set()).add(fleet)
    protected |= config_protected
    return Marks({b: frozenset(fs) for b, fs in claims.items()}, frozenset(protected))


def parse_config_marks(config_lines: str) -> tuple[dict[str, str], frozenset[str]]:
    """(branch -> fleet, protected branches) from `git config --get-regexp` output."""
    owned: dict[str, str] = {}
    protected: set[str] = set()
    for line in config_lines.splitlines():
        key, _, value = line.partition(" ")
        name, _, var = key[len("branch."):].rpartition(".")
        if var == "fleetowner":
            owned[name] = value
        elif var == "fleetprotect" and value.strip().lower() in ("true", "yes", "on", "1"):
            protected.add(name)
    return owned, frozenset(protected)
