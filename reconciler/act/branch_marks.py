"""Writing a fleet's branch marks (store/branch_marks.py), and moving old ones out of the repo config.

Every function here runs under the fleet's lock (a reconcile pass, `fleet restore`), so
the read-modify-write of the fleet's own marks file cannot race another writer of it.

`migrate_marks` moves this fleet's `branch.<b>.fleetOwner` / `fleetProtect` keys into its
file: the file is written first (whole, fsync'ed), then the keys are unset. A crash
between the two (failpoint `marks:after-file`) leaves both, which read the same; a crash
before leaves the old ones. At every moment one of them says who owns the branch.

A mark is written before its branch is created and given the branch's identity (the first
line of its reflog, store/branch_marks.py) right after (`record_identity`): a mark whose
identity no longer matches names a branch deleted by hand and made again, which is not the
fleet's; `owns_branch` re-checks that right before fleet deletes a branch.
"""
from __future__ import annotations

import time

from ..errors import FleetError
from ..observe.gitcmd import GitCommandError
from ..observe.gitrepo import GitRepo
from ..store.branch_marks import (
    Entry,
    branch_identity,
    entry_holds,
    marks_keys,
    parse_config_marks,
    read_fleet_entries,
    write_fleet_entries,
)
from .failpoints import failpoint


def mark_branch(repo: GitRepo, fleet: str, branch: str, *, protect: bool = False) -> None:
    """`branch` is `fleet`'s (before it is created: a crash right after still knows it is ours).
    A mark that no longer holds (its branch was deleted and made again) is replaced; callers
    refuse an existing branch that is not the fleet's first (act/worktrees.py `create_worktree`)."""
    marks = read_fleet_entries(repo.common_dir, fleet)
    old = marks.get(branch)
    if old is None or not entry_holds(repo.common_dir, branch, old):
        marks[branch] = Entry(protect)
        write_fleet_entries(repo.common_dir, fleet, marks)
    elif protect and not old.protect:
        marks[branch] = Entry(True, old.ident)
        write_fleet_entries(repo.common_dir, fleet, marks)


def creating_env() -> dict[str, str]:
    """For the git call that creates a branch fleet marks: its reflog's first line gets a date one
    second before now. git's reflog lines carry whole seconds, and `git branch <b>` by the user
    (from the same commit, by the same person) writes the same line as fleet's `worktree add -b`
    in the same second; a branch the user makes later is dated now or after, so it can never
    read as the one fleet made (unless the clock goes back)."""
    return {"GIT_COMMITTER_DATE": f"@{int(time.time()) - 1} +0000"}


def record_identity(repo: GitRepo, fleet: str, branch: str) -> None:
    """Right after fleet made `branch` (or checked it out again): give its mark the branch's
    identity, if it has none yet ("" when the branch has no reflog: then it is never deleted)."""
    marks = read_fleet_entries(repo.common_dir, fleet)
    old = marks.get(branch)
    if old is not None and old.ident is None and repo.branch_exists(branch):
        marks[branch] = Entry(old.protect, branch_identity(repo.common_dir, branch))
        write_fleet_entries(repo.common_dir, fleet, marks)


def owns_branch(repo: GitRepo, fleet: str, branch: str) -> bool:
    """`fleet` marks `branch` and the mark still names this branch (its file's mark, or an old
    config key); read fresh, for the check right before an act."""
    mark = read_fleet_entries(repo.common_dir, fleet).get(branch)
    if mark is not None:
        return entry_holds(repo.common_dir, branch, mark)
    owned, _ = parse_config_marks(_config_marks(repo))
    return owned.get(branch) == fleet


def _config_marks(repo: GitRepo) -> str:
    return repo.config_marks()


def set_protect(repo: GitRepo, fleet: str, branch: str, protect: bool) -> None:
    """Keep the agent's `protect` beside its branch mark (it must outlive the state store). Only
    an existing mark is changed: protect never makes a branch the fleet's."""
    marks = read_fleet_entries(repo.common_dir, fleet)
    if branch in marks and marks[branch].protect != protect:
        marks[branch] = Entry(protect, marks[branch].ident)
        write_fleet_entries(repo.common_dir, fleet, marks)
    if not protect:  # an old key left in the config would still read as protect
        _unset(repo, f"branch.{branch}.fleetProtect")


def unmark_branch(repo: GitRepo, fleet: str, branch: str) -> None:
    """After the branch is deleted (as `git branch -D` drops its config section): a branch
    made later under that name is not fleet's."""
    marks = read_fleet_entries(repo.common_dir, fleet)
    if branch in marks:
        del marks[branch]
        write_fleet_entries(repo.common_dir, fleet, marks)


def migrate_marks(repo: GitRepo, fleet: str) -> int:
    """Move `fleet`'s marks from the repo config into its marks file; drop the file's marks of
    branches that no longer exist, and of branches deleted and made again (identity changed);
    record the identity of marked branches that have none yet (old marks). The number of config
    marks moved (0: one git call)."""
    owned, protected = parse_config_marks(_config_marks(repo))
    mine = sorted(b for b, f in owned.items() if f == fleet)
    # the loop's memo (store/memo.py): a file found with nothing to change is judged again
    # only once it, a marked branch's ref or its reflog moved
    memo, settled = repo.memo, f"marks-settled:{repo.common_dir}:{fleet}"
    started = memo.started() if memo is not None else (0, 0)
    if memo is not None and not mine and (last := memo.peek(settled)) is not None \
            and memo.get(settled, marks_keys(repo.common_dir, last, memo.stat)) is not None:
        return 0
    marks = read_fleet_entries(repo.common_dir, fleet)
    if not mine and not marks:
        if memo is not None:
            memo.keep(settled, marks_keys(repo.common_dir, (), memo.stat), (), started)
        return 0
    existing = set(repo.branch_names())
    kept = {b: e for b, e in marks.items() if b in existing and entry_holds(repo.common_dir, b, e)}
    for branch in mine:
        old = kept.get(branch, Entry())
        kept[branch] = Entry(old.protect or branch in protected, old.ident)
    kept = {b: e if e.ident is not None else Entry(e.protect, branch_identity(repo.common_dir, b))
            for b, e in kept.items()}
    if kept != marks:
        write_fleet_entries(repo.common_dir, fleet, kept)
        if memo is not None:
            memo.restat()
    if not mine:
        if memo is not None:  # what was just written is newer than `started`: kept from the next pass on
            memo.keep(settled, marks_keys(repo.common_dir, sorted(kept), memo.stat), tuple(sorted(kept)), started)
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
