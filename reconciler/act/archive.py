"""Archive an agent's work under refs/fleet/archive/<fleet>/<agent>/<timestamp> before a prune.

The archive is one commit: its tree is a snapshot of the working tree as it is (tracked
changes and untracked, not-ignored files, taken through a temporary index so the
user's index is untouched), its parents are the tree's HEAD, the branch tip(s) and the
stash entries. Everything the prune would lose is reachable from it.

Both engines archive through `snapshot_commit` and name archives with `archive_ref`: the
local one for a linked worktree (`archive_work`, the ref written in the repo), the Ray
session actor for its clone on a node (the ref pushed to the remote). Plain git
processes, no GitPython at import: the actor imports this module on nodes.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FleetError
from ..observe.gittree import clean_env, last_line, run_git
from ..store import clock
from .failpoints import failpoint

if TYPE_CHECKING:
    from ..observe.gitrepo import GitRepo, Worktree

ARCHIVE_PREFIX = "refs/fleet/archive"
STAMP = "%Y%m%dT%H%M%S%fZ"  # UTC, to the microsecond: two archives of one agent never share a name


@dataclass(frozen=True)
class Archive:
    ref: str
    commit: str
    date: str
    subject: str

    @property
    def agent(self) -> str:
        return self.ref.split("/")[-2]


def archive_ref(fleet: str, agent: str, now: datetime | None = None) -> str:
    """The ref an archive of `agent` made `now` (default: this moment) gets, in every engine."""
    when = (now or clock.now()).astimezone(timezone.utc)
    return f"{ARCHIVE_PREFIX}/{fleet}/{agent}/{when.strftime(STAMP)}"


def snapshot_commit(cwd: Path, parents: Iterable[str | None], subject: str, *, tree: Path | None,
                    env: dict[str, str] | None = None) -> str:
    """Commit everything at stake as one commit, in the repository of `cwd`; its sha.

    Its tree: the files of the working tree `tree` as they are, through a throwaway index
    (so the real index is untouched), or, without a tree, the first parent's. Its parents:
    those of `parents` (HEAD, branch tips, stash entries) that name a commit, each once.
    `env`: extra variables for the commit (an identity). Raises FleetError when a step fails.
    """
    found = _commits(cwd, [p for p in parents if p])
    if not found:
        raise FleetError(f"nothing to archive in {cwd}: no commit found")
    tree_id = _snapshot_tree(tree) if tree is not None and tree.is_dir() else None
    if tree_id is None:
        res = run_git(cwd, "rev-parse", "--verify", f"{found[0]}^{{tree}}")
        if res.returncode != 0:
            raise FleetError(f"cannot read the tree of {found[0]}: {last_line(res.stderr)}")
        tree_id = res.stdout.strip()
    args = [tree_id]
    for p in found:
        args += ["-p", p]
    res = run_git(cwd, "commit-tree", *args, "-m", subject, env=clean_env(**env) if env else None)
    if res.returncode != 0:
        raise FleetError(f"cannot make the archive commit: {last_line(res.stderr)}")
    return res.stdout.strip()


def archive_work(repo: GitRepo, *, fleet: str, agent: str, worktree: Worktree | None, branch: str | None,
                 base: str) -> Archive:
    ref = archive_ref(fleet, agent)
    subject = f"fleet archive of {agent} (fleet {fleet}, branch {branch or 'detached'})"
    try:
        commit = snapshot_commit(repo.common_dir, _parents(repo, worktree, branch), subject,
                                 tree=worktree.path if worktree is not None else None)
    except FleetError as exc:
        if exc.message.startswith("nothing to archive"):
            raise FleetError(f"nothing to archive for {agent}: no commits found") from None
        raise
    failpoint("archive:after-commit")
    repo.git.update_ref(ref, commit)
    failpoint("archive:after-ref")
    tips = [t for t in (branch and f"refs/heads/{branch}", worktree.head if worktree else None) if t]
    lost = [c for c in repo.unreachable(tips, base) if not _reachable(repo.common_dir, c.split()[0], commit)]
    if lost:  # never prune on a partial archive
        raise FleetError(f"archive {ref} does not contain {lost}; not pruning")
    return Archive(ref=ref, commit=commit, date=ref.rsplit("/", 1)[1], subject=subject)


def restore_hint(archive: Archive, branch: str | None) -> str:
    return (f"restore files: git worktree add <dir> {archive.ref}   "
            f"restore branch: git branch {branch or '<name>'} {archive.ref}^1")


def list_archives(repo: GitRepo, fleet: str) -> list[Archive]:
    out = repo.git.for_each_ref(f"{ARCHIVE_PREFIX}/{fleet}/", "--sort=refname",
                                "--format=%(refname) %(objectname) %(creatordate:iso-strict) %(subject)")
    archives = []
    for line in out.splitlines():
        ref, commit, date, subject = (line.split(" ", 3) + [""])[:4]
        archives.append(Archive(ref=ref, commit=commit, date=date, subject=subject))
    return archives


def _parents(repo: GitRepo, worktree: Worktree | None, branch: str | None) -> list[str | None]:
    """The worktree's HEAD, the branch tip and the branch's stash entries."""
    candidates = [worktree.head if worktree else None]
    if branch and repo.branch_exists(branch):
        candidates.append(repo.git.rev_parse(f"refs/heads/{branch}"))
        for line in repo.git.stash("list", "--format=%H %gs").splitlines():
            sha, _, subject = line.partition(" ")
            if f" on {branch}:" in subject or f"On {branch}:" in subject:
                candidates.append(sha)
    return candidates


def _commits(cwd: Path, revs: list[str]) -> list[str]:
    """The commits `revs` name (full shas, in order, each once); the others left out. One git call."""
    if not revs:
        return []
    res = run_git(cwd, "cat-file", "--batch-check=%(objectname) %(objecttype)", input="\n".join(revs) + "\n")
    if res.returncode != 0:
        raise FleetError(f"cannot read commits in {cwd}: {last_line(res.stderr)}")
    out: list[str] = []
    for line in res.stdout.splitlines():
        sha, _, kind = line.partition(" ")
        if kind == "commit" and sha not in out:
            out.append(sha)
    return out


def _snapshot_tree(path: Path) -> str:
    """Tree of the working tree's files as they are, via a throwaway index."""
    with tempfile.TemporaryDirectory(prefix="fleet-archive-") as tmp:
        env = clean_env(GIT_INDEX_FILE=str(Path(tmp) / "index"))
        run_git(path, "read-tree", "HEAD", env=env)  # fails on an unborn HEAD: then start from an empty index
        add = run_git(path, "add", "-A", ".", env=env)
        tree = run_git(path, "write-tree", env=env) if add.returncode == 0 else add
    if add.returncode != 0 or tree.returncode != 0:
        raise FleetError(f"cannot snapshot {path}: {last_line(tree.stderr)}")
    return tree.stdout.strip()


def _reachable(cwd: Path, commit: str, tip: str) -> bool:
    return run_git(cwd, "merge-base", "--is-ancestor", commit, tip).returncode == 0
