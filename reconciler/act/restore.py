"""Bringing an archive back (`fleet restore`), and dropping archives that hold nothing any more
(`fleet archives prune`, and the expiry of retention archives).

An archive (act/archive.py) names what it holds in its `Fleet-*:` lines: the branch and
its tip, the tree's HEAD and path, the index commit, protect. Restoring makes the branch
again at its tip with its ownership marks (act/branch_marks.py), so a
re-declared agent adopts it, and, when a tree was archived, a worktree with the ownership
marker whose files and index are as they were.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import FleetError
from ..observe.gitcmd import Git, GitCommandError
from ..observe.gitrepo import GitRepo
from .archive import RETENTION, STAMP, WORK, Archive, archive_facts, list_archives
from .branch_marks import creating_env, mark_branch, record_identity
from .failpoints import git_config_env
from .worktrees import admin_names, hide_root, mark_owned


@dataclass(frozen=True)
class Restored:
    branch: str
    worktree: Path | None
    lines: list[str]


def find_archive(repo: GitRepo, fleet: str, agent: str, which: str | None) -> Archive:
    """The archive of `agent` named `which` (its time stamp, or its full ref), else the newest."""
    mine = [a for a in list_archives(repo, fleet) if a.agent == agent]
    if which:
        mine = [a for a in mine if which in (a.ref, a.ref.rsplit("/", 1)[1])]
    if not mine:
        known = sorted({a.agent for a in list_archives(repo, fleet)})
        raise FleetError(f"no archive {which + ' ' if which else ''}of agent {agent!r} in fleet {fleet}",
                         hint=f"`fleet archives FILE` lists them (agents with archives: {', '.join(known) or 'none'})")
    return mine[-1]  # refs sort by their time stamp


def restore(repo: GitRepo, archive: Archive, *, fleet: str, branch: str, worktree: Path | None,
            facts: dict[str, list[str]] | None = None) -> Restored:
    """Make `branch` again at the archived tip, marked as `fleet`'s, and, when the archive holds a
    tree and `worktree` is given, that tree at `worktree` (files and index as they were).
    Refuses (nothing changed) when the branch or the path is already taken. `facts`: the
    archive's `Fleet-*:` lines when its message has none (an older ray archive, engines/ray/restore.py)."""
    facts = archive_facts(repo, archive.commit) if facts is None else facts
    tip = (facts.get("Branch") or [""])[0].rpartition(" ")[2] or None
    head = next(iter(facts.get("Head") or []), None)
    start = tip or head
    if start is None:
        raise FleetError(f"archive {archive.ref} names no branch tip or HEAD to restore",
                         hint=f"look inside: git log --graph {archive.ref}")
    if repo.branch_exists(branch):
        raise FleetError(f"branch {branch} exists; fleet restore will not overwrite it",
                         hint=f"delete or rename it first (git branch -m {branch} {branch}-old), or pass another "
                              "archive")
    has_tree = bool(facts.get("Worktree")) and worktree is not None
    if has_tree and worktree is not None:
        _check_free(worktree)
    lines = []
    try:
        # before the branch exists, as create_worktree does
        mark_branch(repo, fleet, branch, protect=facts.get("Protect") == ["true"])
        repo.git.branch(branch, start, env=creating_env())
        record_identity(repo, fleet, branch)
        lines.append(f"branch {branch} at {start[:12]} (owned by fleet {fleet})")
        if has_tree and worktree is not None:
            worktree.parent.mkdir(parents=True, exist_ok=True)
            before = admin_names(repo)
            repo.git.worktree("add", str(worktree), branch)
            hide_root(repo, worktree.parent)
            # the files and the index go into the tree's own admin dir, named to git: a post-checkout
            # hook that pointed its .git elsewhere (another agent's admin dir) had `read-tree` replace
            # that tree's index. The index is made in a new file and moved over the tree's: an `index`
            # the hook made a symlink to another tree's is replaced, not written through (git's lock follows it)
            own = _own_admin_dir(repo, worktree)
            if own.name in before:  # a hook moved another tree here (`git worktree move`): not the new one
                raise _not_own(repo, worktree, "put the archived files and index into")
            fresh = own / "index.fleet-restore"
            fresh.unlink(missing_ok=True)
            tree_git = Git(str(worktree))
            # and no hook runs in what follows (`git restore` runs post-checkout again, and one could make
            # the new index file a link to another tree's): the user's hook ran for the `worktree add`
            env = {"GIT_DIR": str(own), "GIT_WORK_TREE": str(worktree), "GIT_INDEX_FILE": str(fresh),
                   **git_config_env({"core.hooksPath": os.devnull})}
            tree_git.read_tree(start, env=env)  # what `worktree add` checked out, as the restore's starting index
            if facts.get("Kind") != [RETENTION]:  # a retention archive's tree is the HEAD's: nothing to put back
                tree_git.restore(f"--source={archive.commit}", "--worktree", "--", ".", env=env)
            index = next(iter(facts.get("Index") or []), None)
            tree_git.read_tree(index if index else start, env=env)
            if os.path.islink(fresh) or not fresh.is_file():
                raise _not_own(repo, worktree, "put the archived index into")
            os.replace(fresh, own / "index")
            _mark(repo, worktree, fleet=fleet, agent=archive.agent, branch=branch,
                  protect=facts.get("Protect") == ["true"])
            lines.append(f"worktree {worktree} with its files and index as archived")
    except GitCommandError as exc:
        raise FleetError(f"cannot restore {archive.ref}: {exc.stderr.strip()}") from None
    if head and tip and head != tip:
        lines.append(f"its HEAD was detached at {head[:12]}: git -C <tree> checkout {head[:12]}")
    return Restored(branch=branch, worktree=worktree if has_tree else None, lines=lines)


def _check_free(path: Path) -> None:
    """Refuse, before anything is changed, a worktree path git cannot make the tree at: taken by
    a file, a symbolic link that leads nowhere, or a directory with something in it, or below
    a file (a directory above it that is not one)."""
    again = "move it away first, then run the same fleet restore again"
    for above in reversed(path.parents):
        if above.is_symlink() and not above.exists():
            raise FleetError(f"cannot restore a tree at {path}: {above} is a symbolic link to "
                             f"{os.readlink(above)}, which does not exist; {again}")
        if above.exists() and not above.is_dir():
            raise FleetError(f"cannot restore a tree at {path}: {above} is a file, not a directory; {again}")
    if path.is_symlink() and not path.exists():
        raise FleetError(f"cannot restore a tree at {path}: it is a symbolic link to {os.readlink(path)}, "
                         f"which does not exist; {again}")
    if path.exists() and not path.is_dir():
        raise FleetError(f"cannot restore a tree at {path}: it is a file, not a directory; {again}")
    try:
        taken = path.is_dir() and any(path.iterdir())
    except OSError as exc:
        raise FleetError(f"cannot restore a tree at {path}: cannot look inside it ({exc.strerror}); {again}") from None
    if taken:
        raise FleetError(f"{path} exists and is not empty; {again}")


def _own_admin_dir(repo: GitRepo, path: Path) -> Path:
    admin = repo.own_admin_dir(path)
    if admin is None:
        raise _not_own(repo, path, "put the archived files and index into")
    return admin


def _mark(repo: GitRepo, path: Path, *, fleet: str, agent: str, branch: str, protect: bool) -> None:
    if not mark_owned(repo, path, fleet=fleet, agent=agent, branch=branch, protect=protect):
        raise _not_own(repo, path, f"mark as {agent}'s")


def _not_own(repo: GitRepo, path: Path, what: str) -> FleetError:
    return FleetError(f"cannot {what} the restored tree {path}: its .git file does not name its own admin dir in "
                      f"{repo.common_dir / 'worktrees'} (or the tree, its .git or its index is a symlink)",
                      hint="something changed the tree after `git worktree add` (a post-checkout hook?); "
                           "fix it, then restore again")


def archive_time(archive: Archive) -> datetime | None:
    try:
        return datetime.strptime(archive.ref.rsplit("/", 1)[1], STAMP).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def holds_nothing(repo: GitRepo, archive: Archive, base: str) -> str | None:
    """Why dropping `archive` loses nothing (every commit it holds is in `base`, and no file
    differs from its HEAD's), or None when it holds work."""
    if not repo.ref_exists(base):
        return None
    facts = archive_facts(repo, archive.commit)
    index = set(facts.get("Index") or [])
    parents = repo.git.rev_list("--parents", "-n", "1", archive.commit).split()[1:]
    if not parents:
        return None
    tree = repo.git.rev_parse(f"{archive.commit}^{{tree}}")
    if tree != repo.git.rev_parse(f"{parents[0]}^{{tree}}"):
        return None  # files that were never committed
    for p in parents:
        if p in index:
            if repo.git.rev_parse(f"{p}^{{tree}}") != tree:
                return None  # a staged version of its own
            continue
        try:
            repo.git.merge_base("--is-ancestor", p, base)
        except GitCommandError:
            return None
    return f"every commit is in {base}"


def prunable(repo: GitRepo, fleet: str, *, base: str, older_than: float | None, retention: float,
             now: datetime) -> list[tuple[Archive, str]]:
    """(archive, why it may go) of each archive of `fleet` that is older than `older_than` seconds
    (None: only expired retention archives are looked at) and holds nothing `base` lacks, or is a
    retention archive (nothing was at stake when it was made) older than `retention`."""
    out = []
    for archive in list_archives(repo, fleet):
        made = archive_time(archive)
        if made is None:
            continue
        age = (now - made).total_seconds()
        if archive.subject.startswith("fleet retention archive") and age >= retention:
            out.append((archive, "retention expired (nothing was at stake)"))
        elif older_than is not None and age >= older_than and (why := holds_nothing(repo, archive, base)):
            out.append((archive, why))
    return out


def drop(repo: GitRepo, archive: Archive) -> None:
    """Delete the archive ref, only if it still names the commit that was judged."""
    repo.git.update_ref("-d", archive.ref, archive.commit)


__all__ = ["RETENTION", "WORK", "Restored", "archive_time", "drop", "find_archive", "holds_nothing", "prunable",
           "restore"]
