"""Archive an agent's work under refs/fleet/archive/<fleet>/<agent>/<timestamp> before a prune.

Every prune writes one first (archive-first: a retention archive when nothing is at stake,
kept for `gc.archiveRetention`). The archive is one commit: its tree is a snapshot of the
working tree as it is (tracked changes and untracked, not-ignored files, taken through a
temporary index so the user's index is untouched), its parents are the tree's HEAD, the
branch tip, the index as its own commit, the stash entries, reflog-only commits and
submodule snapshots (`archive_work`). Everything the prune would lose is reachable from it.

Both engines archive through `snapshot_commit` and name archives with `archive_ref`: the
local one for a linked worktree (`archive_work`, the ref written in the repo), the Ray
session actor for its clone on a node (the ref pushed to the remote). Plain git
processes, no GitPython at import: the actor imports this module on nodes.
"""
from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FleetError
from ..observe.gittree import git_env, last_line, rev, run_git, write_git
from ..observe.reach import branch_reflog, local_tips, ref_facts, submodules, tree_reflog, unsafe_commits
from ..observe.stake import anchors
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
    # fleet's own snapshot commit: never signed (commit.gpgSign would run a signing program that
    # may wait for a passphrase nobody types, during a prune), and bounded all the same
    res = write_git(cwd, "commit-tree", "--no-gpg-sign", *args, "-m", subject, env=git_env(**env) if env else None)
    if res.returncode != 0:
        raise FleetError(f"cannot make the archive commit: {last_line(res.stderr)}")
    return res.stdout.strip()


WORK, RETENTION = "work", "retention"  # what an archive was made for (its `Fleet-Kind:` line)


def archive_work(repo: GitRepo, *, fleet: str, agent: str, worktree: Worktree | None, branch: str | None,
                 base: str, kind: str = WORK, protect: bool = False, extra_safe: Iterable[str] = ()) -> Archive:
    """Archive everything a prune of `worktree` and `branch` would drop, as one commit under
    `archive_ref(fleet, agent)`; raises FleetError (nothing pruned) if it does not hold it all.

    Its tree: a snapshot of the working tree (tracked changes and untracked files; the
    HEAD's tree when there is no tree). Its parents: the tree's HEAD (detached or not), the
    branch tip, a commit of the index as it was (what was staged, a tree of its own), the
    branch's stash entries, every commit only the reflogs of the branch and of the tree's
    HEAD still name, and a snapshot commit of each checked-out submodule with work of its own
    (its objects fetched into this repository). Its message names each (`Fleet-*:` lines),
    for `fleet restore`. `kind`: RETENTION for the cheap archive a prune with nothing at
    stake keeps for `gc.archiveRetention`.
    """
    ref = archive_ref(fleet, agent)
    head = worktree.head if worktree is not None else None
    tip = repo.git.rev_parse(f"refs/heads/{branch}") if branch and repo.branch_exists(branch) else None
    tree_path = worktree.path if worktree is not None and worktree.path.is_dir() else None
    index = _index_commit(repo, worktree, head) if tree_path is not None else None
    stashes = _stashes(repo, branch) if branch else []
    reflog = _reflog_only(repo, branch, worktree, [c for c in (head, tip) if c], base, extra_safe)
    subs = _submodule_snapshots(tree_path, worktree.admin_dir if worktree else None, agent, repo.common_dir) \
        if tree_path is not None else []
    lines = [f"Fleet-Kind: {kind}", f"Fleet-Fleet: {fleet}", f"Fleet-Agent: {agent}"]
    lines += [f"Fleet-Branch: {branch} {tip}"] if branch and tip else []
    lines += [f"Fleet-Head: {head}"] if head else []
    lines += [f"Fleet-Worktree: {worktree.path}"] if worktree is not None else []
    lines += [f"Fleet-Index: {index}"] if index else []
    lines += ["Fleet-Protect: true"] if protect else []
    lines += [f"Fleet-Submodule: {path} {sha}" for path, sha in subs]
    title = "fleet archive" if kind == WORK else "fleet retention archive"
    subject = f"{title} of {agent} (fleet {fleet}, branch {branch or 'detached'})"
    # a tree with nothing at stake is its HEAD: no snapshot to take (it is what keeps this cheap)
    snap_tree = tree_path if kind == WORK else None
    try:
        commit = snapshot_commit(repo.common_dir, [head, tip, index, *stashes, *reflog, *(s for _, s in subs)],
                                 subject + "\n\n" + "\n".join(lines), tree=snap_tree)
    except FleetError as exc:
        if exc.message.startswith("nothing to archive"):
            raise FleetError(f"nothing to archive for {agent}: no commits found") from None
        raise
    failpoint("archive:after-commit")
    repo.git.update_ref(ref, commit)
    failpoint("archive:after-ref")
    # every commit the prune would drop is now reachable from an anchor (the new archive ref is one)
    lost = repo.unsafe(branch, head, base, admin_dir=worktree.admin_dir if worktree else None,
                       extra_safe=[*extra_safe, *([f"refs/heads/{worktree.branch}"]
                                                  if worktree and worktree.branch and worktree.branch != branch
                                                  else [])])
    if lost:  # never prune on a partial archive
        raise FleetError(f"archive {ref} does not contain {lost}; not pruning", exit_code=3)
    return Archive(ref=ref, commit=commit, date=ref.rsplit("/", 1)[1], subject=subject)


def restore_hint(archive: Archive, branch: str | None, fleet_file: Path | str = "FILE") -> str:
    """How to get an archive back: `fleet restore` (branch, ownership marks and tree in one step)."""
    shown = str(fleet_file)
    if isinstance(fleet_file, Path):
        try:
            shown = os.path.relpath(fleet_file)
        except ValueError:
            pass
        shown = str(fleet_file) if shown.startswith("..") else shown
    return f"restore it: fleet restore {shlex.quote(shown)} {archive.agent} {archive.ref.rsplit('/', 1)[1]}"


def list_archives(repo: GitRepo, fleet: str) -> list[Archive]:
    if not repo.may_have_refs(f"{ARCHIVE_PREFIX}/{fleet}/"):
        return []  # every pass asks (expired retention archives): most fleets have none, and no git runs
    out = repo.git.for_each_ref(f"{ARCHIVE_PREFIX}/{fleet}/", "--sort=refname",
                                "--format=%(refname) %(objectname) %(creatordate:iso-strict) %(subject)")
    archives = []
    for line in out.splitlines():
        ref, commit, date, subject = (line.split(" ", 3) + [""])[:4]
        archives.append(Archive(ref=ref, commit=commit, date=date, subject=subject))
    return archives


def archive_facts(repo: GitRepo, commit: str) -> dict[str, list[str]]:
    """The `Fleet-*:` lines of an archive commit: key (without "Fleet-") -> values."""
    out: dict[str, list[str]] = {}
    for line in repo.git.log("-1", "--format=%B", commit).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.startswith("Fleet-"):
            out.setdefault(key[len("Fleet-"):], []).append(value.strip())
    return out


def _stashes(repo: GitRepo, branch: str) -> list[str]:
    out = []
    for line in repo.git.stash("list", "--format=%H %gs").splitlines():
        sha, _, subject = line.partition(" ")
        if f" on {branch}:" in subject or f"On {branch}:" in subject:
            out.append(sha)
    return out


def _index_commit(repo: GitRepo, worktree: Worktree | None, head: str | None) -> str | None:
    """A commit of the tree's index as it is (what was staged), made from a copy of the index
    file so the real one is not touched; None when the tree has none."""
    if worktree is None or worktree.admin_dir is None or not (worktree.admin_dir / "index").is_file():
        return None
    with tempfile.TemporaryDirectory(prefix="fleet-index-") as tmp:
        copy = Path(tmp) / "index"
        shutil.copyfile(worktree.admin_dir / "index", copy)
        env = git_env(GIT_DIR=str(worktree.admin_dir), GIT_INDEX_FILE=str(copy))
        tree = run_git(worktree.path, "write-tree", env=env)
    if tree.returncode != 0:  # an index with conflicts: the snapshot holds the files; an in-progress op blocks
        return None
    args = [tree.stdout.strip(), *(["-p", head] if head else []), "-m", "fleet archive: the index as it was"]
    res = write_git(repo.common_dir, "commit-tree", "--no-gpg-sign", *args)
    if res.returncode != 0:
        raise FleetError(f"cannot archive the index of {worktree.path}: {last_line(res.stderr)}")
    return res.stdout.strip()


def _reflog_only(repo: GitRepo, branch: str | None, worktree: Worktree | None, tips: list[str], base: str,
                 extra_safe: Iterable[str]) -> list[str]:
    """The fewest reflog commits whose histories hold every commit only the reflogs name."""
    logged = [*branch_reflog(repo.common_dir, branch), *tree_reflog(worktree.admin_dir if worktree else None)]
    if not logged:
        return []
    facts = repo.ref_facts(base)
    safe = [*anchors(facts, base=base, branch=branch, extra=extra_safe), *tips]
    res = run_git(repo.common_dir, "rev-list", "--ignore-missing", "--stdin",
                  input="\n".join([*logged, *(f"^{s}" for s in safe)]) + "\n")
    if res.returncode != 0:
        raise FleetError(f"cannot read the reflogs of {branch or worktree}: {last_line(res.stderr)}")
    only = set(res.stdout.split())
    wanted = list(dict.fromkeys(c for c in logged if c in only))
    if len(wanted) < 2:
        return wanted
    res = run_git(repo.common_dir, "merge-base", "--independent", *wanted)
    return res.stdout.split() if res.returncode == 0 else wanted


def _submodule_snapshots(tree: Path, git_dir: Path | None, agent: str, into: Path) -> list[tuple[str, str]]:
    """(path, commit) of a snapshot of each checked-out submodule that holds work of its own
    (commits no remote-tracking or archive ref of it reaches, or files not committed), its
    objects fetched into this repository's object store."""
    out = []
    for sub in submodules(tree, git_dir):
        tips = local_tips(sub.git_dir, sub.work_tree)
        own = unsafe_commits(sub.work_tree, tips, anchors(ref_facts(sub.work_tree, None), base=None, branch=None))
        dirty = run_git(sub.work_tree, "status", "--porcelain", "--untracked-files=all").stdout.strip()
        if not own and not dirty:
            continue
        if len(tips) > 1:
            res = run_git(sub.work_tree, "merge-base", "--independent", *tips)
            tips = [rev(sub.work_tree, "HEAD") or "", *res.stdout.split()] if res.returncode == 0 else tips
        commit = snapshot_commit(sub.work_tree, tips, f"fleet archive of submodule {sub.path} of {agent}",
                                 tree=sub.work_tree)
        fetched = run_git(into, "-c", "protocol.version=2", "fetch", "--quiet", "--no-tags",
                          "--no-write-fetch-head", str(sub.git_dir), commit)
        if fetched.returncode != 0:
            raise FleetError(f"cannot bring submodule {sub.path}'s commits into the archive: "
                             f"{last_line(fetched.stderr)}")
        out.append((sub.path, commit))
    return out


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
        env = git_env(GIT_INDEX_FILE=str(Path(tmp) / "index"))
        run_git(path, "read-tree", "HEAD", env=env)  # fails on an unborn HEAD: then start from an empty index
        add = run_git(path, "add", "-A", ".", env=env)
        tree = run_git(path, "write-tree", env=env) if add.returncode == 0 else add
    if add.returncode != 0 or tree.returncode != 0:
        raise FleetError(f"cannot snapshot {path}: {last_line(tree.stderr)}")
    return tree.stdout.strip()
