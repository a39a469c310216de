"""Archive an agent's work under refs/fleet/archive/<fleet>/<agent>/<timestamp> before a prune.

The archive is one commit: its tree is a snapshot of the worktree as it is (tracked
changes and untracked, not-ignored files, taken through a temporary index so the
user's index is untouched), its parents are the worktree's HEAD, the branch tip and
the branch's stash entries. Everything the prune would lose is reachable from it.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import git

from ..errors import FleetError
from ..observe.gitrepo import GitRepo, Worktree

ARCHIVE_PREFIX = "refs/fleet/archive"


@dataclass(frozen=True)
class Archive:
    ref: str
    commit: str
    date: str
    subject: str

    @property
    def agent(self) -> str:
        return self.ref.split("/")[-2]


def archive_ref(fleet: str, agent: str) -> str:
    """A new archive ref for the agent; one format for every engine (microseconds keep two apart)."""
    return f"{ARCHIVE_PREFIX}/{fleet}/{agent}/{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')}"


def archive_work(repo: GitRepo, *, fleet: str, agent: str, worktree: Worktree | None, branch: str | None,
                 base: str) -> Archive:
    ref = archive_ref(fleet, agent)
    parents = _parents(repo, worktree, branch)
    if not parents:
        raise FleetError(f"nothing to archive for {agent}: no commits found")
    tree = _snapshot_tree(worktree.path) if worktree is not None and worktree.path.is_dir() else None
    tree = tree or repo.git.rev_parse(f"{parents[0]}^{{tree}}")
    subject = f"fleet archive of {agent} (fleet {fleet}, branch {branch or 'detached'})"
    args = [tree]
    for p in parents:
        args += ["-p", p]
    commit = repo.git.commit_tree(*args, "-m", subject)
    repo.git.update_ref(ref, commit)
    tips = [t for t in (branch and f"refs/heads/{branch}", worktree.head if worktree else None) if t]
    lost = [c for c in repo.unreachable(tips, base) if not _reachable(repo, c.split()[0], commit)]
    if lost:  # never prune on a partial archive
        raise FleetError(f"archive {ref} does not contain {lost}; not pruning")
    return Archive(ref=ref, commit=commit, date=ref.rsplit("/", 1)[-1], subject=subject)


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


def _parents(repo: GitRepo, worktree: Worktree | None, branch: str | None) -> list[str]:
    candidates = [worktree.head if worktree else None]
    if branch and repo.branch_exists(branch):
        candidates.append(repo.git.rev_parse(f"refs/heads/{branch}"))
        for line in repo.git.stash("list", "--format=%H %gs").splitlines():
            sha, _, subject = line.partition(" ")
            if f" on {branch}:" in subject or f"On {branch}:" in subject:
                candidates.append(sha)
    seen: list[str] = []
    for c in candidates:
        if c and c not in seen and repo.ref_exists(c):
            seen.append(c)
    return seen


def _snapshot_tree(path: Path) -> str | None:
    """Tree of the worktree's files as they are, via a throwaway index."""
    wt = git.Git(str(path))
    with tempfile.TemporaryDirectory(prefix="fleet-archive-") as tmp:
        index = os.path.join(tmp, "index")
        with wt.custom_environment(GIT_INDEX_FILE=index):
            try:
                wt.read_tree("HEAD")
            except git.GitCommandError:
                pass  # unborn HEAD: start from an empty index
            wt.add("-A", ".")
            return wt.write_tree()


def _reachable(repo: GitRepo, commit: str, tip: str) -> bool:
    try:
        repo.git.merge_base("--is-ancestor", commit, tip)
    except git.GitCommandError:
        return False
    return True
