"""Where fleet keeps its state: `<git common dir>/fleet/`, and the move there from `.fleet/`.

The home holds the state store (`state/<fleet>/`), logs (`logs/<fleet>/`), the slots of
`fleet lock` (`locks/`), the Ray ledger and fetch cache (`ray/<fleet>/`) and the fleet
lock (`<fleet>.lock`, `<fleet>.lock.json`). The git common dir is shared by every worktree
of the repository, so each of them finds the same home, and it is inside `.git/`, so
`git clean` in any checkout cannot reach it (docs/sessions.md "Where things live").

Older fleets kept all of this in `.fleet/` of the main checkout, hidden by a `/.fleet/`
line in `.git/info/exclude`. `migrate` moves it, file by file: a rename on one file
system (atomic: each file is in exactly one place at every moment) or a copy, fsync and
rename followed by unlinking the source across file systems (a crash in between leaves
two identical copies, which the next run recognises). A file that exists in both places
with different contents is never overwritten: the old one is kept beside the new one,
as `<name>.from-dot-fleet`. Running it again, or after a crash, finishes the move.
Agent worktrees (the default `worktrees.root`, `.fleet/worktrees`) are not state and
stay where they are.
"""
from __future__ import annotations

import os
from pathlib import Path

HOME = "fleet"  # <git common dir>/fleet
LEGACY = ".fleet"  # <main checkout>/.fleet, before the move
MOVED = ("state", "logs", "locks", "ray")  # what of the old home is state (not worktrees)
SET_ASIDE = ".from-dot-fleet"


def home_of(common_dir: Path) -> Path:
    return common_dir / HOME


def legacy_of(main_checkout: Path) -> Path:
    return main_checkout / LEGACY


def trusted(legacy: Path, path: Path, tracked: frozenset[Path] = frozenset()) -> bool:
    """Is `path` (under the old home `legacy`) fleet's own state? Not if git tracks it (a pull
    request can commit `.fleet/state/...` or `.fleet/logs/...`), nor if it or any directory
    from `legacy` down to it is a symlink (a committed link would make fleet read, print or
    move a file outside the repository)."""
    if path in tracked:
        return False
    try:
        rel = path.relative_to(legacy)
    except ValueError:
        return False
    here = legacy
    for part in ("", *rel.parts):
        here = here / part if part else here
        if here.is_symlink():
            return False
    return True


def read_legacy(path: Path) -> str:
    """The text of a trusted legacy file, never through a symlink (O_NOFOLLOW: one swapped in
    after `trusted` looked is refused too)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
        return f.read()


def pending(legacy: Path, tracked: frozenset[Path] = frozenset()) -> bool:
    """Is there anything of the old home left to move? (one stat when there is not)"""
    if not legacy.is_dir() or legacy.is_symlink():
        return False
    return any(_legacy_files(legacy, tracked))


def migrate(legacy: Path, home: Path, tracked: frozenset[Path] = frozenset()) -> list[str]:
    """Move the state under `legacy` into `home`; returns a line per file set aside.

    Idempotent and safe to re-run after a crash at any point; never deletes a file
    whose contents are not also in `home`. Takes a repo-wide lock, so two fleets of one
    repo (or two applies) never move the same file at once. Files git tracks (`tracked`)
    and symlinks are not fleet's state (`trusted`): they stay where they are, unread.
    """
    if not pending(legacy, tracked):
        return []
    from filelock import FileLock  # only when there is something to move: `fleet status` never needs it

    home.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    with FileLock(str(home / ".migrate.lock")):
        for src in sorted(_legacy_files(legacy, tracked)):
            note = _move(src, home / src.relative_to(legacy))
            if note:
                notes.append(note)
        for name in MOVED:
            _prune_empty_dirs(legacy / name)
        try:
            legacy.rmdir()  # only if nothing is left (no worktree root inside it)
        except OSError:
            pass
    return notes


def _legacy_files(legacy: Path, tracked: frozenset[Path] = frozenset()) -> list[Path]:
    found: list[Path] = []
    for name in MOVED:
        top = legacy / name
        if top.is_dir() and not top.is_symlink():
            for dirpath, _dirs, files in os.walk(top):  # os.walk does not enter symlinked directories
                found += [Path(dirpath) / f for f in files]
    try:
        found += [p for p in legacy.iterdir() if p.name.endswith((".lock", ".lock.json")) and p.is_file()]
    except OSError:
        pass
    return [p for p in found if trusted(legacy, p, tracked)]


def _move(src: Path, dest: Path) -> str | None:
    import filecmp  # the move only: `fleet status` reading the loop's snapshot imports this module

    dest.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(dest):
        if src.is_file() and dest.is_file() and filecmp.cmp(src, dest, shallow=False):
            src.unlink()  # a crash after the copy, before the unlink: the copy is complete
            return None
        aside = _free_name(dest.with_name(dest.name + SET_ASIDE))
        _rename_or_copy(src, aside)
        return f"{src} differs from {dest}; kept as {aside}"
    _rename_or_copy(src, dest)
    return None


def _rename_or_copy(src: Path, dest: Path) -> None:
    try:
        os.rename(src, dest)  # keeps the inode: a session appending to its log keeps its file
        return
    except OSError as exc:
        import errno

        if exc.errno != errno.EXDEV:
            raise
    import shutil

    tmp = dest.with_name(f".{dest.name}.migrating")
    shutil.copy2(src, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    src.unlink()


def _free_name(path: Path) -> Path:
    candidate, n = path, 1
    while os.path.lexists(candidate):
        candidate = path.with_name(f"{path.name}.{n}")
        n += 1
    return candidate


def _prune_empty_dirs(top: Path) -> None:
    if not top.is_dir() or top.is_symlink():
        return
    for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -len(t[0])):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass
