"""What the running control loop last observed, kept for `fleet status` and `fleet ui`.

Under `<home>/status/` (store/home.py), per fleet:

- `<fleet>.json`: the status snapshot the loop writes after every tick (every agent's
  row, the plan `fleet diff` would show, spend, caps), written atomically;
- `<fleet>.loop.json`: the loop's marker, written when `fleet reconcile --watch` starts
  and removed when it stops: its pid and process start time (so a reader can tell a
  live loop from a crashed one, and from a reused pid), the file, last and next tick;
- `<fleet>.history.jsonl`: one line per tick (spend by tier, agents by phase), the
  dashboard's charts; kept to the last `HISTORY_KEEP` lines.

And in the home of the repository that holds the fleet file, `files/<hash>.json` names
the fleet and home a file's loop writes to, so `fleet status FILE` finds the snapshot
without loading (validating) the file: reading a few small files is all it costs.

This is a cache, never the truth: readers check that the loop is alive, the file is
unchanged and the sessions it saw running still run, and observe afresh otherwise
(control/observed_status.py).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..spec.gitfile import gitfile_target
from .home import home_of

# The writers below import records.py (tempfile, shutil) themselves: a reader needs none of it.
HISTORY_KEEP = 2000  # ticks: about a day and a half at one a minute


class StatusStore:
    def __init__(self, home: Path, fleet: str) -> None:
        self.home = home
        self.fleet = fleet
        self.dir = home / "status"

    @property
    def snapshot_path(self) -> Path:
        return self.dir / f"{self.fleet}.json"

    @property
    def loop_path(self) -> Path:
        return self.dir / f"{self.fleet}.loop.json"

    @property
    def history_path(self) -> Path:
        return self.dir / f"{self.fleet}.history.jsonl"

    def write_snapshot(self, data: dict[str, Any]) -> None:
        from .records import write_json_atomic

        write_json_atomic(self.snapshot_path, data)

    def read_snapshot(self) -> dict[str, Any] | None:
        return _read_json(self.snapshot_path)

    def write_loop(self, data: dict[str, Any]) -> None:
        from .records import write_json_atomic

        write_json_atomic(self.loop_path, data)

    def read_loop(self) -> dict[str, Any] | None:
        return _read_json(self.loop_path)

    def clear_loop(self, pid: int) -> None:
        """Remove the marker if it is still this loop's (a newer loop may have replaced it)."""
        data = self.read_loop()
        if data is not None and data.get("pid") == pid:
            self.loop_path.unlink(missing_ok=True)

    def append_history(self, point: dict[str, Any]) -> None:
        """Add one line; rewrite (atomically) to the last HISTORY_KEEP when it grows past twice that."""
        from .records import write_text_atomic

        self.dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(point, sort_keys=True) + "\n"
        with open(self.history_path, "a") as f:
            f.write(line)
        if self.history_path.stat().st_size > HISTORY_KEEP * 2 * len(line):
            lines = self.history_path.read_text().splitlines(keepends=True)
            if len(lines) > HISTORY_KEEP:
                write_text_atomic(self.history_path, "".join(lines[-HISTORY_KEEP:]))

    def read_history(self, limit: int = HISTORY_KEEP) -> list[dict[str, Any]]:
        try:
            lines = self.history_path.read_text().splitlines()
        except OSError:
            return []
        points = []
        for line in lines[-limit:]:
            try:
                points.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a crash mid-write
        return points


def file_key(file: Path) -> str:
    # fsencode: the path's bytes, whether or not they are UTF-8 (the same key as `.encode()` when they are)
    return hashlib.sha256(os.fsencode(str(Path(os.path.realpath(file))))).hexdigest()[:24]


def file_digest(file: Path) -> str | None:
    try:
        return hashlib.sha256(Path(file).read_bytes()).hexdigest()
    except OSError:
        return None


def pointer_path(file: Path) -> Path | None:
    """`<home of the repository holding file>/status/files/<key>.json` (None outside a repository)."""
    common = common_dir_of(Path(os.path.realpath(file)).parent)
    return None if common is None else home_of(common) / "status" / "files" / f"{file_key(file)}.json"


def write_pointer(file: Path, fleet: str, home: Path) -> None:
    from .records import write_json_atomic

    path = pointer_path(file)
    if path is not None:
        write_json_atomic(path, {"file": str(Path(os.path.realpath(file))), "fleet": fleet, "home": str(home)})


def read_pointer(file: Path) -> StatusStore | None:
    path = pointer_path(file)
    data = _read_json(path) if path is not None else None
    if not data or not isinstance(data.get("fleet"), str) or not isinstance(data.get("home"), str):
        return None
    return StatusStore(Path(data["home"]), data["fleet"])


def common_dir_of(directory: Path) -> Path | None:
    """The git common dir of the work tree holding `directory`, read from files as git finds it:
    `.git` is the git dir, or a file `gitdir: X` whose X may hold a `commondir` file."""
    for d in (directory, *directory.parents):
        dot_git = d / ".git"
        if dot_git.is_dir():
            return dot_git.resolve()
        if dot_git.is_file():
            try:
                gitdir = d / gitfile_target(dot_git)
            except OSError:
                return None
            try:
                return (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
            except OSError:
                return gitdir.resolve()
    return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
