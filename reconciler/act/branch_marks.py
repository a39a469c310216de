"""Writing a fleet's branch marks (store/branch_marks.py), and moving old ones out of the repo config.

Every function here runs under the fleet's lock (a reconcile pass, `fleet restore`), so
the read-modify-write of the fleet's own marks file cannot race another writer of it.

`migrate_marks` moves this fleet's `branch.<b>.fleetOwner` / `fleetProtect` keys into its
file: the file is written first (whole, fsync'ed), then the keys are unset. A crash
between the two (failpoint `marks:after-file`) leaves both, which read the same; a crash
before leaves the old ones. At every moment one of them says who owns the branch.
"""
from __future__ import annotations

from ..errors import FleetError
from ..observe.gitcmd import GitCommandError
from ..observe.gitrepo import GitRepo
from ..store.branch_marks import parse_config_marks, read_fleet_marks, write_fleet_marks
from .failpoints import failpoint


def mark_branch(repo: GitRepo, fleet: str, branch: str, *, protect: bool = False) -> None:
    """`branch` is `fleet`'s (before it is created: a crash right after still knows it is ours)."""
    marks = read_fleet_marks(repo.common_dir, fleet)
    if marks.get(branch) is None or (protect and not marks[branch]):
        marks[branch] = marks.get(branch, False) or protect
        write_fleet_marks(repo.common_dir, fleet, marks)


def set_protect(repo: GitRepo, fleet: str, branch: str, protect: bool) -> None:
    """Keep the agent's `protect` beside its branch mark (it must outlive the state store). Only
    an existing mark is changed: protect never makes a branch the fleet's."""
    marks = read_fleet_marks(repo.common_dir, fleet)
    if branch in marks and marks[branch] != protect:
        marks[branch] = protect
        write_fleet_marks(repo.common_dir, fleet, marks)
    if not protect:  # an old key left in the config would still read as protect
        _unset(repo, f"branch.{branch}.fleetProtect")


def unmark_branch(repo: GitRepo, fleet: str, branch: str) -> None:
    """After the branch is deleted (as `git branch -D` drops its config section): a branch
    made later under that name is not fleet's."""
    marks = read_fleet_marks(repo.common_dir, fleet)
    if branch in marks:
        del marks[branch]
        write_fleet_marks(repo.common_dir, fleet, marks)


def migrate_marks(repo: GitRepo, fleet: str) -> int:
    """Move `fleet`'s marks from the repo config into its marks file; drop the file's marks of
    branches that no longer exist. The number of config marks moved (0: one git call)."""
    try:
        out = repo.git.config("--get-regexp", r"^branch\..*\.fleet(owner|protect)$")
    except GitCommandError:  # exit 1: none set
        out = ""
    owned, protected = parse_config_marks(out)
    mine = sorted(b for b, f in owned.items() if f == fleet)
    marks = read_fleet_marks(repo.common_dir, fleet)
    if not mine and not marks:
        return 0
    existing = set(repo.branch_names())
    kept = {b: p for b, p in marks.items() if b in existing}
    for branch in mine:
        kept[branch] = kept.get(branch, False) or branch in protected
    if kept != marks:
        write_fleet_marks(repo.common_dir, fleet, kept)
    if not mine:
        return 0
    failpoint("marks:after-file")  # both say the same: the file is read first, the config beside it
    for branch in mine:
        _unset(repo, f"branch.{branch}.fleetOwner")
        if branch in protected:
            _unset(repo, f"branch.{branch}.fleetProtect")
    return len(mine)


def _unset(repo: GitRepo, key: str) -> None:
    try:
        repo.git.config("--unset-all", key)
    except GitCommandError as exc:
        if exc.status != 5:  # 5: the key is not set
            raise FleetError(f"cannot unset {key} in the repo config: {exc.stderr.strip()}") from None
