"""Creating and pruning agent worktrees (git, through observe/gitcmd.py), with the ownership marker.

Also what keeps the main checkout's `git status` clean without hiding an agent's files
(`ensure_excluded`: the worktree root's own `.gitignore`, never `.git/info/exclude`), and
`protect` kept where it outlives the state store (`keep_protect`: the marker and the
branch's mark, act/branch_marks.py)."""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FleetError
from ..observe.gitcmd import GitCommandError
from ..observe.gitrepo import MARKER, PRUNE_INTENT, GitRepo, Worktree, branch_at_stake
from ..observe.gittree import GitTimeout, write_timeout
from ..observe.model import ObservedAgent
from ..observe.reach import submodules
from ..observe.stake import DEFAULT_PROTECT_IGNORED
from ..spec.desired import DesiredAgent
from ..store.records import now_iso, write_json_atomic, write_text_atomic
from .branch_marks import creating_env, mark_branch, owns_branch, record_identity, set_protect, unmark_branch
from .failpoints import failpoint, inside_add_env, remove_tree_halfway

if TYPE_CHECKING:
    from .archive import Archive

# What older fleets appended to .git/info/exclude. That file applies to every worktree of the
# repo, so `/.fleet/` also hid `<agent tree>/.fleet/...` and a prune deleted those files as ignored.
LEGACY_EXCLUDE = ("# fleet state, logs, locks and worktrees", "/.fleet/")
ROOT_IGNORE = ".gitignore"
ROOT_IGNORE_TEXT = ("# written by fleet: agent worktrees live here; this hides them from the git status\n"
                    "# of the checkout around them only (an agent's tree reads its own ignore files)\n*\n")


def ensure_excluded(repo: GitRepo, worktrees_root: Path | None = None) -> None:
    """Keep the main checkout's `git status` clean without hiding anything an agent writes.

    State lives in the git common dir (store/home.py), so nothing of it shows. The old
    `/.fleet/` exclude line is removed. The worktree root (when it exists, inside the main
    checkout) gets a `.gitignore` of `*`: git reads it only for paths below that directory
    of the checkout it is in, and an agent's worktree is a checkout of its own whose
    ignore rules start at its own top level, so `<agent tree>/.fleet/worktrees/x` stays
    visible (and at stake). Never edits a tracked or user-written file.
    """
    _drop_legacy_exclude(repo.common_dir / "info" / "exclude")
    if worktrees_root is not None and worktrees_root.is_dir():
        hide_root(repo, worktrees_root)


def hide_root(repo: GitRepo, root: Path) -> None:
    """Write `<root>/.gitignore` (`*`) if `root` is a directory below the main checkout and has none."""
    main = repo.root.resolve()
    if root == main or main not in root.parents:
        return
    ignore = root / ROOT_IGNORE
    if os.path.lexists(ignore):
        return  # ours already, or someone else's: never overwritten
    write_text_atomic(ignore, ROOT_IGNORE_TEXT)


def _drop_legacy_exclude(exclude: Path) -> None:
    try:
        lines = exclude.read_text().splitlines(keepends=True)
    except OSError:
        return
    kept: list[str] = []
    for line in lines:
        if line.rstrip("\r\n") == LEGACY_EXCLUDE[1]:
            if kept and kept[-1].rstrip("\r\n") == LEGACY_EXCLUDE[0]:
                kept.pop()
            continue
        kept.append(line)
    if kept != lines:
        write_text_atomic(exclude, "".join(kept))


def create_worktree(repo: GitRepo, agent: DesiredAgent, *, fleet: str, repair: str | None = None,
                    branch: str | None = None) -> Path:
    """`git worktree add` on the agent's branch and write the ownership markers.

    The branch is marked as this fleet's (act/branch_marks.py) before it is
    created, so a crash right after `git worktree add` leaves it recognisably ours.
    An existing branch of this fleet is checked out again, keeping its commits.
    `repair`: "missing" (the directory was deleted by hand: drop git's stale entry for
    it first) or "interrupted" (a previous apply died inside `git worktree add`; nothing
    ran there yet, so the half-made tree is removed; the branch is kept).
    `branch`: the branch to put the tree on (a repair: the one the tree had), else the agent's.
    A branch that exists and is not this fleet's (by its mark, act/branch_marks.py
    `owns_branch`) is refused before anything is marked: marking it would make a user's
    branch the fleet's, to be deleted with the agent.
    """
    branch = branch or agent.branch
    if repo.branch_exists(branch) and not owns_branch(repo, fleet, branch):
        raise FleetError(f"cannot create worktree {agent.worktree}: branch {branch} exists and is not owned by "
                         f"fleet {fleet}; fleet will not put an agent on it",
                         hint=f"rename that branch (git branch -m {branch} {branch}-mine) or the agent; if it is "
                              f"the fleet's, mark it: see docs/safety.md \"Ownership\"")
    try:
        if repair == "missing":  # only this entry: `git worktree prune` would drop every missing one
            repo.git.worktree("remove", str(agent.worktree))
        elif repair == "interrupted":
            repo.git.worktree("remove", "--force", "--force", str(agent.worktree))
        agent.worktree.parent.mkdir(parents=True, exist_ok=True)
        hide_root(repo, agent.worktree.parent)
        # beside the owner: protect must outlive the state store
        mark_branch(repo, fleet, branch, protect=agent.protect)
        failpoint("create-worktree:before-add")
        env = inside_add_env()  # {} unless that failpoint is armed
        before = admin_names(repo)
        # bounded: a post-checkout hook or a smudge filter (LFS) must not hang the pass and its lock;
        # a tree left half made is repaired by the next pass ("interrupted")
        if repo.branch_exists(branch):
            repo.git.worktree("add", str(agent.worktree), branch, env=env, timeout=write_timeout())
        else:
            repo.git.worktree("add", "-b", branch, str(agent.worktree), agent.base, env={**env, **creating_env()},
                              timeout=write_timeout())
    except GitCommandError as exc:
        if _add_ran(agent.worktree):
            raise AddFailed(f"cannot create worktree {agent.worktree}: {exc.stderr.strip()}",
                            hint="git made the tree, then failed (a post-checkout hook?); the next pass "
                                 "finishes or repairs it: fix what git said, then run fleet again") from None
        raise FleetError(f"cannot create worktree {agent.worktree}: {exc.stderr.strip()}",
                         hint="see `git worktree list`; a directory or branch may be in the way") from None
    except GitTimeout as exc:
        raise AddFailed(exc.message, hint=exc.hint) from None
    failpoint("create-worktree:inside-add")  # only reached when git had no file to check out
    failpoint("create-worktree:after-add")
    record_identity(repo, fleet, branch)  # a branch made again later under this name is not ours
    if not mark_owned(repo, agent.worktree, fleet=fleet, agent=agent.name, branch=branch, protect=agent.protect,
                      existing=before):
        raise AddFailed(f"cannot mark worktree {agent.worktree} as {agent.name}'s: its .git file does not name "
                        f"its own admin dir in {repo.common_dir / 'worktrees'}, or that dir's index is a symlink",
                        hint="something changed the tree, its .git file or its index after `git worktree add` (a "
                             "post-checkout hook?); fix it, then run fleet again: the next pass finishes or repairs "
                             "the tree")
    failpoint("create-worktree:after-marker")
    return agent.worktree


def admin_names(repo: GitRepo) -> frozenset[str]:
    """The names of the repository's admin dirs now (`.git/worktrees/<name>`), taken just before a
    `git worktree add`: the new tree's is none of them."""
    try:
        return frozenset(os.listdir(os.path.join(repo.common_dir, "worktrees")))
    except (FileNotFoundError, NotADirectoryError):
        return frozenset()


def mark_owned(repo: GitRepo, tree: Path, *, fleet: str, agent: str, branch: str, protect: bool,
               existing: frozenset[str] = frozenset()) -> bool:
    """Write the ownership marker of `tree`, just made by fleet's `git worktree add`, into its
    own admin dir (`GitRepo.own_admin_dir`); False, writing nothing, when its `.git` file does
    not name one (changed since the add: the marker would mark another tree as `agent`'s), or its
    index is a symlink, or its admin dir is one of `existing` (`admin_names` before the add: a
    hook that moved another tree to this path with `git worktree move` hands over that tree)."""
    admin = repo.own_admin_dir(tree)
    # an index that is a symlink (a hook's, to another tree's index) would take the agent's `git add`s there
    if admin is None or os.path.islink(admin / "index") or admin.name in existing:
        return False
    marker = {"fleet": fleet, "repo": str(repo.common_dir), "agent": agent, "branch": branch,
              "created": now_iso(), "protect": protect}
    (admin / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return True


class AddFailed(FleetError):
    """`git worktree add` ran and failed or ran out of time, maybe after making the tree (its
    post-checkout hook exits non-zero or hangs; a smudge filter hangs mid-checkout). The
    record's intent (CREATING_WORKTREE) must survive the failure: it is what proves the tree
    fleet's to the next pass, which finishes it or removes what git left and adds it again
    (observe/snapshot.py `_owner_agent`, plan/planner.py "interrupted"). A refusal before git
    ran (a user's branch) is a plain FleetError: no tree of fleet's can be there."""


def _add_ran(path: Path) -> bool:
    """git got as far as making `path` a worktree (its `.git` file exists)."""
    return os.path.lexists(os.path.join(path, ".git"))


def keep_protect(repo: GitRepo, agent: ObservedAgent, protect: bool, branch: str, *, fleet: str) -> None:
    """Write the agent's `protect` where it survives the state store (observe/model.py
    `ObservedAgent.protect_kept`): its worktree's ownership marker and the branch's mark
    (act/branch_marks.py). Only the places that exist, and that say otherwise, are written."""
    wt = agent.worktree
    if agent.protect_kept.get("marker", protect) != protect and wt is not None and wt.admin_dir is not None:
        marker = wt.admin_dir / MARKER
        data = json.loads(marker.read_text())
        data["protect"] = protect
        write_text_atomic(marker, json.dumps(data, indent=2) + "\n")
        agent.protect_kept["marker"] = protect
    if agent.protect_kept.get("branch", protect) != protect:
        set_protect(repo, fleet, branch, protect)
        agent.protect_kept["branch"] = protect


def remove_worktree(repo: GitRepo, wt: Worktree | None, branch: str | None, *, base: str, fleet: str, agent: str,
                    archived: bool = False, protect: bool = False, extra_safe: Iterable[str] = (),
                    protect_ignored: Iterable[str] = DEFAULT_PROTECT_IGNORED) -> Archive | None:
    """Remove a worktree and/or the agent's own branch `branch`, archive first; the archive.

    Re-checks what is at stake right before acting (the tree may have changed since the
    plan): anything at stake refuses (exit 3) unless `archived` and an archive can hold it
    all. Then every removal writes an archive (act/archive.py): of the work, or, with
    nothing at stake, a cheap retention one (kept `gc.archiveRetention`), so no bug in the
    checks can lose a commit. Then the intent (`PRUNE_INTENT`, naming the archive) goes into
    the admin dir before git deletes anything: a crash in the removal leaves it there, and
    the next pass finishes the removal if the archive covers what is left (`GitRepo.at_stake`
    judges such a tree by what it left). Only `branch` is deleted, never a branch the tree
    has checked out instead, nor one checked out in another tree.
    """
    from .archive import RETENTION, WORK, archive_work

    extra_safe = tuple(extra_safe)
    finishing = wt is not None and wt.pruning is not None
    stake = (repo.at_stake(wt, base, branch=branch, extra_safe=extra_safe, protect_ignored=protect_ignored)
             if wt is not None else branch_at_stake(repo, branch or "", base, extra_safe=extra_safe))
    if not stake.safe and not (archived and stake.archivable):
        raise FleetError(f"refusing to prune {wt.path if wt else branch}: {stake.summary()}", exit_code=3)
    saved: Archive | None = None
    if not finishing and (branch or (wt is not None and wt.head)):
        try:
            saved = archive_work(repo, fleet=fleet, agent=agent, worktree=wt, branch=branch, base=base,
                                 kind=RETENTION if stake.safe else WORK, protect=protect, extra_safe=extra_safe)
        except FleetError as exc:
            if not (stake.safe and exc.message.startswith("nothing to archive")):
                raise
    try:
        if wt is not None and wt.admin_dir is not None and not finishing and wt.admin_dir.is_dir():
            write_json_atomic(wt.admin_dir / PRUNE_INTENT, {"archive": saved.ref if saved else None,
                                                            "commit": saved.commit if saved else None,
                                                            "checked": now_iso()})
        failpoint("prune:before-remove")
        if wt is not None and wt.path.is_dir():
            if finishing:
                _relink(wt)
            remove_tree_halfway(wt.path)  # only when the failpoint prune:inside-remove is armed
            # finishing: git's own check would count the files already deleted as changes; a tree
            # with a checked-out submodule git removes only with --force (its commits and files were
            # checked above, and are in the archive)
            force = (archived and not stake.safe) or finishing or bool(submodules(wt.path, wt.admin_dir))
            repo.git.worktree("remove", *(["--force"] if force else []), str(wt.path))
        elif wt is not None:  # its directory is gone: drop just its entry, not every stale one
            repo.git.worktree("remove", str(wt.path))
        failpoint("prune:after-remove")
        # the mark re-checked right before: a branch deleted by hand and made again since the plan is not ours
        if branch and repo.branch_exists(branch) and not _checked_out_elsewhere(repo, branch) \
                and owns_branch(repo, fleet, branch):
            repo.git.branch("-D", branch)
        if branch:  # as `git branch -D` drops the branch's config section: a later branch of that name is not ours
            unmark_branch(repo, fleet, branch)
        failpoint("prune:after-branch-delete")
    except GitCommandError as exc:
        if wt is not None and wt.admin_dir is not None and not finishing and "failed to delete" not in exc.stderr:
            # git refused before deleting anything (its checks come first): no removal began
            (wt.admin_dir / PRUNE_INTENT).unlink(missing_ok=True)
        raise FleetError(f"cannot prune {wt.path if wt else branch}: {exc.stderr.strip()}", exit_code=3) from None
    return saved


def _checked_out_elsewhere(repo: GitRepo, branch: str) -> bool:
    """`branch` is checked out in a worktree that is still there (a user's): it is in use, it stays."""
    _main, linked = repo.worktrees()
    trees = [t for t in ([_main] if _main else []) + linked if t is not None]
    return any(t.branch == branch for t in trees)


def _relink(wt: Worktree) -> None:
    """Put back the tree's `.git` file if the interrupted removal deleted it: `git worktree
    remove` refuses a tree without one (and any git run there would find the enclosing repo)."""
    gitfile = wt.path / ".git"
    if wt.admin_dir is not None and not gitfile.exists():
        # bytes as they were read (spec/gitfile.py): an admin dir whose path is not UTF-8 too
        gitfile.write_bytes(f"gitdir: {wt.admin_dir}\n".encode("utf-8", "surrogateescape"))
