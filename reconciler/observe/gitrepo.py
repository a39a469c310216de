"""The repo as git sees it: worktrees, ownership markers and what a prune would lose.

Every call here is read-only, through `gitcmd.Git` (git processes, called as GitPython's
`repo.git` was: fleet no longer imports GitPython); what lives in one tree is read by
`gittree.tree_facts` (plain git processes, shared with the Ray engine) and judged by
`stake.judge`. `AtStake` lives in `stake.py` and is
re-exported here.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FleetError
from ..spec.gitfile import gitfile_target
from ..spec.limits import current as current_limits
from ..store.branch_marks import (
    Marks,
    fleets_with_marks,
    marks_keys,
    read_fleet_entries,
    read_marks,
    ref_storage_keys,
)
from ..store.memo import Key, Memo, stat_key
from .gitcmd import Git, GitCommandError
from .gittree import (
    index_has_no_flags,
    leftover_facts,
    plain_index,
    read_git,
    status_paths,
    tree_facts,
)

# plain data (observe/model.py), importable from here as before
from .model import Owner, PruneIntent, Worktree
from .reach import branch_reflog, ref_facts, submodule_commits, tree_reflog, unsafe_commits
from .stake import DEFAULT_PROTECT_IGNORED, AtStake, RefFacts, TreeFacts, anchors, judge, stake_tips

if TYPE_CHECKING:
    from .processes import ProcessTable

# read-only git processes run side by side (status, prune checks): two per core, since each
# thread also spends time in Python between its git calls (999 prune checks on 2 cores:
# 3.4 s with 2 threads, 2.4 s with 4)
GIT_WORKERS = min(8, max(2, 2 * (os.cpu_count() or 1)))
MARKER = "fleet-owner.json"  # in the worktree's git admin dir (.git/worktrees/<id>/)
PRUNE_INTENT = "fleet-pruning.json"  # next to it, while a prune removes the tree (model.PruneIntent)
SCRATCH_MARKER = "fleet-scratch.json"  # admin dir of a fleet's delivery scratch tree (act/delivery.py)
# AtStake and index_has_no_flags moved (to stake.py, gittree.py) and are re-exported from here
__all__ = ["GIT_WORKERS", "MARKER", "PRUNE_INTENT", "AtStake", "FileAtRevision", "GitRepo", "Owner", "RefSnapshot",
           "Worktree", "branch_at_stake", "file_at_revision", "index_has_no_flags", "read_owner", "read_prune_intent"]

def _common_dir_at(path: Path) -> Path:
    """The git common dir of the checkout at `path` (its `.git` directory, or the one a `.git`
    file names and, for a linked worktree, that one's `commondir`); FleetError if `path` is no
    checkout (a bare repository named as such)."""
    dot_git = path / ".git"
    try:
        # only a git dir as git takes one (else git skips it and works on an enclosing repository)
        if dot_git.is_dir() and _is_git_dir(dot_git):
            return dot_git.resolve()
        if dot_git.is_file():
            gitdir = path / gitfile_target(dot_git)
            common = gitdir / "commondir"
            if _is_git_dir(gitdir):
                return (gitdir / common.read_text().strip()).resolve() if common.is_file() else gitdir.resolve()
    except OSError:
        pass
    if (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir():
        raise FleetError(f"{path} is a bare repository", hint="point spec.repo at a checkout")
    raise FleetError(f"{path} is not a git repository",
                     hint="set spec.repo to your repository (relative to the fleet file), or run `git init` there")


def admin_dir_of(tree: Path) -> Path:
    """A linked worktree's admin dir, from the `gitdir:` line of its `.git` file (absolute, or
    relative to the tree as git 2.48's worktree.useRelativePaths writes it); OSError when the
    file cannot be read or is no gitfile (spec/gitfile.py)."""
    return (tree / gitfile_target(tree / ".git")).resolve()


def _is_git_dir(gitdir: Path) -> bool:
    """What git checks before it takes a directory as a git dir: a HEAD, and objects/ and refs/
    (in it, or in the common dir its `commondir` names, for a linked worktree's)."""
    if not (gitdir / "HEAD").is_file():
        return False
    common = gitdir / "commondir"
    base = gitdir / common.read_text().strip() if common.is_file() else gitdir
    return (base / "objects").is_dir() and (base / "refs").is_dir()


class _Unset:
    """`at_stake(branch=...)` not given: the branch the tree has checked out."""


UNSET = _Unset()


class GitRepo:
    """Read-only view of one repository (its main worktree is the fleet's home)."""

    def __init__(self, path: Path, *, memo: Memo[Any] | None = None) -> None:
        self.path = Path(path)
        self._common = _common_dir_at(self.path)  # read from files, as git finds it (no process, no config parse)
        self.git = Git(self.path)
        self._config_marks: tuple[tuple[int, int, int], str] | None = None  # see config_marks
        # the running loop's (store/memo.py): the worktree list and the marks are read again only when they moved
        self.memo = memo

    @cached_property
    def common_dir(self) -> Path:
        return self._common

    @cached_property
    def _plain_index(self) -> bool:
        """Worktree indexes are in the format `index_has_no_flags` reads (`gittree.plain_index`)."""
        return plain_index(self.common_dir)

    @cached_property
    def root(self) -> Path:
        """The main worktree (where .fleet/ lives)."""
        return self.common_dir.parent

    def may_have_refs(self, prefix: str) -> bool:
        """False only where no ref under `prefix` ("refs/.../", shared by every worktree) can
        exist: git's files backend keeps a ref as a loose file under `refs/` or as a line of
        `packed-refs`, so with neither the loose directory nor a packed line, there is none.
        A reftable repository, or anything unreadable, says True (ask git)."""
        common = os.fspath(self.common_dir)
        if os.path.lexists(f"{common}/reftable") or os.path.lexists(f"{common}/{prefix.rstrip('/')}"):
            return True
        try:
            with open(f"{common}/packed-refs", "rb") as f:
                return f" {prefix}".encode() in f.read()
        except FileNotFoundError:
            return False
        except OSError:
            return True

    def ref_exists(self, ref: str) -> bool:
        try:
            self.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}")
        except GitCommandError:
            return False
        return True

    def worktrees(self) -> tuple[Worktree | None, list[Worktree]]:
        """The main worktree and the linked ones, with owners read from their admin dirs.

        With the loop's memo, the last answer is given again while every file it came from is
        as it was (`_tree_keys`): no `git worktree list`, no marker read, on a tick where no
        tree was added, removed, moved, locked, repaired, switched or committed to."""
        if (last := self.remembered_worktrees()) is not None:
            return last
        return self.read_worktrees()

    def read_worktrees(self) -> tuple[Worktree | None, list[Worktree]]:
        """`worktrees()` read now (the memo, if any, is not asked but keeps the answer)."""
        memo = self.memo
        if memo is None:
            return self._read_worktrees()
        started = memo.started()
        name = f"worktrees:{self.common_dir}"
        main, linked = self._read_worktrees()
        # the keys of what was just read, taken after it: anything that changed since `started`
        # is newer than it, so `keep` does not remember the answer (store/memo.py)
        if (keys := _tree_keys(self.common_dir, main, linked, memo.stat)) is not None:
            memo.keep(name, keys, (main, tuple(linked)), started)
        else:
            memo.forget([name])
        return main, linked

    def remembered_worktrees(self) -> tuple[Worktree | None, list[Worktree]] | None:
        """The memo's answer for `worktrees()` if it still holds (no git run), else None. The
        Worktree objects are the ones read then: nothing changes them after the read."""
        if self.memo is None:
            return None
        name = f"worktrees:{self.common_dir}"
        last = self.memo.peek(name)
        if last is not None and (keys := _tree_keys(self.common_dir, last[0], last[1], self.memo.stat)) is not None \
                and self.memo.get(name, keys) is not None:
            return last[0], list(last[1])
        return None

    def _read_worktrees(self) -> tuple[Worktree | None, list[Worktree]]:
        resolve = _Resolver()
        # git lists the trees in a thread while this one reads every admin dir and its markers
        # (three files each, a third of the read at 1,000 trees): the thread only waits on git's
        # pipe, so the two do not contend for the interpreter. A tree added meanwhile has no
        # admin dir read (unowned, as one added just after the list); the memo keeps nothing
        # read within its racy window of the start (`read_worktrees`).
        with ThreadPoolExecutor(max_workers=1) as lister:
            listing = lister.submit(self.git.worktree, "list", "--porcelain")
            admin = self.admin_dirs(resolve)
            markers = {a: _markers(a) for a in admin.values()}
            blocks = listing.result().split("\n\n")
        main = _parse_porcelain(blocks[0], resolve)
        linked: list[Worktree] = []
        for block in blocks[1:]:
            wt = _parse_porcelain(block, resolve)
            if wt is None:
                continue
            admin_dir = admin.get(os.fspath(wt.path))
            if admin_dir is not None:
                wt.admin_dir = Path(admin_dir)
                # a tree gone from disk may be one a prune is removing right now (an unlocked
                # reader: fleet diff, status): its intent, written before the removal, may have
                # come after the markers were read, so they are read again, after git's list
                gone = not wt.exists or wt.prunable
                wt.owner, wt.pruning, wt.scratch = _markers(admin_dir) if gone else markers[admin_dir]
            linked.append(wt)
        return main, linked

    def owned_branches(self) -> dict[str, str]:
        """branch -> fleet, from the marks files (store/branch_marks.py) and the config's old marks."""
        return self.branch_marks()[0]

    def branch_marks(self) -> tuple[dict[str, str], frozenset[str]]:
        """(branch -> its one owning fleet, the branches marked protect): the marks files under
        `<home>/branches/` and the `branch.<b>.fleetOwner`/`fleetProtect` keys not moved out
        of the config yet (one `git config` call). A branch two fleets claim is in neither
        map's owners (never deleted); a bad marks file raises FleetError."""
        marks = self.marks()
        return marks.owners(), marks.protected

    def marks(self) -> Marks:
        """`read_marks` of this repo. With the loop's memo, the last answer is given again while
        the config's marks, the marks files and every marked branch's reflog (its identity)
        are as they were (`marks_keys`)."""
        config = self.config_marks()
        memo = self.memo
        if memo is None:
            return read_marks(self.common_dir, config)
        name = f"marks:{self.common_dir}"
        started = memo.started()
        last = memo.peek(name)
        if last is not None and last[0] == config \
                and memo.get(name, marks_keys(self.common_dir, last[1], memo.stat)) is not None:
            return last[2]
        found = read_marks(self.common_dir, config)
        files = fleets_with_marks(self.common_dir)
        branches = tuple(sorted({b for f in files for b in read_fleet_entries(self.common_dir, f)}))
        memo.keep(name, marks_keys(self.common_dir, branches, memo.stat), (config, branches, found), started)
        return found

    def config_marks(self) -> str:
        """`git config --get-regexp` of the old `branch.<b>.fleetOwner`/`fleetProtect` marks.

        A pass asks three times (the base check, moving the marks, observing them); the answer
        is kept while the repo's config file is the same file (git and editors replace or
        rewrite it, changing its inode, size or mtime), so a pass runs git once for it."""
        try:
            st = os.stat(os.path.join(self.common_dir, "config"))
            key: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            key = None
        if key is not None and self._config_marks is not None and self._config_marks[0] == key:
            return self._config_marks[1]
        try:
            out = self.git.config("--get-regexp", r"^branch\..*\.fleet(owner|protect)$")
        except GitCommandError:  # exit 1: none set
            out = ""
        self._config_marks = (key, out) if key is not None else None
        return out

    def admin_dirs(self, resolve: _Resolver | None = None) -> dict[str, str]:
        """worktree path -> its admin dir (resolved, as strings), via each admin dir's `gitdir` file."""
        resolve = resolve or _Resolver()
        found: dict[str, str] = {}
        try:
            entries = os.scandir(os.path.join(self.common_dir, "worktrees"))
        except (FileNotFoundError, NotADirectoryError):
            return found
        with entries:
            for entry in entries:
                gitfile = _gitdir_file(entry.path)
                if gitfile is not None:
                    found[resolve.real(os.path.dirname(gitfile))] = entry.path
        return found

    def own_admin_dir(self, tree: Path) -> Path | None:
        """The admin dir of the linked worktree `tree` of this repository, as its `.git` file
        names it, if that is one of this repository's admin dirs and names `tree` back (its
        `gitdir`); else None. Before fleet writes an ownership marker there: a `.git` file
        changed after `git worktree add` (by a post-checkout hook) must not make fleet mark
        another tree, of this repository or another, as this agent's. Nor may a symlink: the tree,
        or its `.git`, replaced by a link to another tree's would name that tree's admin dir back,
        so the tree must be a directory at its own name (its parent's real path, then its name)."""
        if os.path.islink(tree) or os.path.islink(tree / ".git"):
            return None
        try:
            admin = admin_dir_of(tree)
        except OSError:
            return None
        gitfile = _gitdir_file(os.fspath(admin))
        home = os.path.realpath(os.path.join(self.common_dir, "worktrees"))
        if gitfile is None or os.path.dirname(os.fspath(admin)) != home:
            return None
        here = os.path.join(os.path.realpath(tree.parent), tree.name, ".git")
        return admin if os.path.realpath(gitfile) == here else None

    def at_stake(self, wt: Worktree, base: str, *, ignore_groups: frozenset[int] = frozenset(),
                 refs: RefSnapshot | None = None, table: ProcessTable | None = None,
                 branch: str | None | _Unset = UNSET, extra_safe: Iterable[str] = (),
                 protect_ignored: Iterable[str] = DEFAULT_PROTECT_IGNORED, tips: list[str] | None = None,
                 env: Mapping[str, str] | None = None, tree: TreeFacts | None = None) -> AtStake:
        """What pruning `wt` and deleting `branch` would lose (docs/safety.md, "What blocks a prune").

        `branch`: the branch the prune deletes (the agent's own, owned one; None: none); by
        default the one the tree has checked out. A branch the tree has checked out that is
        not deleted stays, so it is safe ground (an extra anchor). Commits are judged by the
        reachability rule (`stake.anchors`), the reflogs of the branch and of the tree's HEAD
        and the tree's submodules included. `refs` and `table` (read once by an observation
        of many candidates) save the reads otherwise repeated per worktree. `tips`: what
        `tips(branch, wt.head, wt.admin_dir, refs.facts)` read for this pass's `with_unmerged`
        (the same reading then decides both, and the reflogs are read once); `env`: the pass's
        `gittree.read_env()`; `tree`: `self.tree_facts(wt, ...)` read for this check (by a pool
        while the refs were read), else read here.
        """
        deleted = wt.branch if isinstance(branch, _Unset) else branch
        if wt.pruning is not None:  # a removal was interrupted: judge what it left, not a tree as a tree
            return self._left_by_prune(wt, wt.pruning, base, ignore_groups=ignore_groups, table=table,
                                       branch=deleted, extra_safe=extra_safe)
        if tree is None:
            tree = self.tree_facts(wt, ignore_groups=ignore_groups, table=table, env=env)
        kept = [f"refs/heads/{wt.branch}"] if wt.branch and wt.branch != deleted else []
        commits = self.unsafe(deleted, wt.head, base, admin_dir=wt.admin_dir, refs=refs,
                              extra_safe=[*extra_safe, *kept], tips=tips, env=env)
        if os.path.isdir(wt.path):
            commits += submodule_commits(wt.path, wt.admin_dir)
        stashes = self._stashes_of(deleted, refs) if deleted else []
        return judge(replace(tree, commits=tuple(commits), stashes=tuple(stashes), locked=wt.locked),
                     protect_ignored=protect_ignored)

    def tree_facts(self, wt: Worktree, *, ignore_groups: frozenset[int] = frozenset(),
                   table: ProcessTable | None = None, env: Mapping[str, str] | None = None) -> TreeFacts:
        """What lives in `wt` (`gittree.tree_facts`, ignored files listed) as `at_stake` judges it."""
        return tree_facts(wt.path, wt.admin_dir, plain_index=self._plain_index, ignore_groups=ignore_groups,
                          table=table, ignored=True, env=env)

    def unsafe(self, branch: str | None, head: str | None, base: str, *, admin_dir: Path | None = None,
               refs: RefSnapshot | None = None, extra_safe: Iterable[str] = (), tips: list[str] | None = None,
               env: Mapping[str, str] | None = None) -> list[str]:
        """"sha subject" of each commit a prune of `branch` (and of the tree whose HEAD is `head`
        and admin dir `admin_dir`) would drop that no anchor of the reachability rule reaches.
        `tips`: `self.tips(...)` of exactly these, read by the caller for `with_unmerged` of
        `refs` (only with `refs`: tips without the snapshot they were read against are re-read)."""
        facts = refs.facts if refs is not None else ref_facts(self.common_dir, base)
        if tips is None or refs is None:
            tips = self.tips(branch, head, admin_dir, facts)
        if refs is not None and refs.settles(branch, tips):
            return []  # one `git rev-list` for every candidate found nothing of these unmerged
        return unsafe_commits(self.common_dir, tips, anchors(facts, base=base, branch=branch, extra=extra_safe),
                              env=env)

    def tips(self, branch: str | None, head: str | None, admin_dir: Path | None, facts: RefFacts) -> list[str]:
        """What a prune of `branch` and of the tree (HEAD `head`, admin dir `admin_dir`) would drop."""
        tips = stake_tips(branch, head, [*branch_reflog(self.common_dir, branch), *tree_reflog(admin_dir)])
        return [t for t in tips if not t.startswith("refs/") or t in facts.ref_set]

    def with_unmerged(self, refs: RefSnapshot, base: str, tip_sets: Iterable[list[str]],
                      extra_safe: Iterable[str] = ()) -> RefSnapshot:
        """`refs` with `unmerged` computed for all of `tip_sets` in one `git rev-list`, so that a
        candidate with nothing unmerged (most of a converged fleet's) needs no `git log` of its
        own. A failing call leaves `refs` as it is: each candidate is then checked alone."""
        shared = anchors(refs.facts, base=base, branch=None, extra=extra_safe)
        res = read_git(self.common_dir, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/")
        if res.returncode != 0:
            return refs
        heads = {name: sha for sha, _, name in (line.partition(" ") for line in res.stdout.splitlines()) if name}
        tips = {sha for ts in tip_sets for t in ts
                if (sha := heads.get(t) if t.startswith("refs/") else t) is not None}
        unmerged: frozenset[str] = frozenset()
        if tips:
            res = read_git(self.common_dir, "rev-list", "--ignore-missing", "--stdin",
                           input="\n".join([*sorted(tips), *(f"^{a}" for a in shared)]) + "\n")
            if res.returncode != 0:
                return refs
            unmerged = frozenset(res.stdout.split())
        return replace(refs, unmerged=unmerged, shared=frozenset(shared), heads=heads)

    def _left_by_prune(self, wt: Worktree, intent: PruneIntent, base: str, *, ignore_groups: frozenset[int],
                       table: ProcessTable | None, branch: str | None, extra_safe: Iterable[str]) -> AtStake:
        """What finishing an interrupted prune of `wt` would lose (docs/safety.md, "Repairs").

        The prune had archived everything at stake (every prune writes an archive first)
        before git began deleting. What is left may go if it is what was checked: every file
        still there and every entry of the index has its content in the tree's HEAD, the
        archive's snapshot or its index, and every commit is safe by the reachability rule
        (an archive ref is an anchor). A deleted file loses nothing (its content is in one
        of those); anything new or changed since, a process in the tree or an operation in
        progress still blocks.
        """
        archive = intent.commit if intent.archive and intent.commit and self._names(intent.archive, intent.commit) \
            else None
        safe = [c for c in (wt.head, archive, *self._archive_trees(archive)) if c and self.ref_exists(c)]
        tree = leftover_facts(wt.path, wt.admin_dir, safe, ignore_groups=ignore_groups, table=table)
        kept = [f"refs/heads/{wt.branch}"] if wt.branch and wt.branch != branch else []
        commits = self.unsafe(branch, wt.head, base, admin_dir=wt.admin_dir, extra_safe=[*extra_safe, *kept])
        stashes = self._stashes_of(branch) if branch else []
        if archive:
            stashes = [s for s in stashes if not self._contains(archive, s.split()[0])]
        return judge(replace(tree, commits=tuple(commits), stashes=tuple(stashes), locked=wt.locked))

    def _archive_trees(self, archive: str | None) -> list[str]:
        """The index commit an archive recorded (its `Fleet-Index:` line), to check leftovers against."""
        if not archive:
            return []
        try:
            body = self.git.log("-1", "--format=%B", archive)
        except GitCommandError:
            return []
        return [line.split(":", 1)[1].strip() for line in body.splitlines() if line.startswith("Fleet-Index:")]

    def _names(self, ref: str, commit: str) -> bool:
        """`ref` still names `commit` (an archive deleted since holds nothing any more)."""
        try:
            return self.git.rev_parse("--verify", "--quiet", ref) == commit
        except GitCommandError:
            return False

    def _contains(self, tip: str, rev: str) -> bool:
        """`rev` (a commit, or a stash entry like stash@{0}) is reachable from `tip`."""
        try:
            self.git.merge_base("--is-ancestor", rev, tip)
        except GitCommandError:
            return False
        return True

    def ref_snapshot(self, base: str) -> RefSnapshot:
        """The refs the reachability rule reads and the stash list, read once for every prune
        candidate of an observation."""
        return RefSnapshot(facts=ref_facts(self.common_dir, base), stash=self.git.stash("list", "--format=%gd %gs"))

    def ref_facts(self, base: str | None) -> RefFacts:
        return ref_facts(self.common_dir, base)

    def _stashes_of(self, branch: str, refs: RefSnapshot | None = None) -> list[str]:
        out = refs.stash if refs is not None else self.git.stash("list", "--format=%gd %gs")
        return [line for line in out.splitlines()
                if f" on {branch}:" in line or f"On {branch}:" in line]

    def branch_exists(self, branch: str) -> bool:
        return self.ref_exists(f"refs/heads/{branch}")

    def branch_names(self) -> frozenset[str]:
        """Every local branch, in one call (`branch_exists` for each of many is one call each)."""
        out = self.git.for_each_ref("--format=%(refname)", "refs/heads/")
        return frozenset(line.removeprefix("refs/heads/") for line in out.splitlines() if line)

    def dirty_count(self, path: Path) -> int:
        if not path.is_dir():
            return 0
        return len(status_paths(Git(str(path)).status("--porcelain=v1", "-z", "--untracked-files=all")))

    def tree_counts(self, trees: list[Worktree], base: str) -> list[tuple[int, int | None]]:
        """(`dirty_count`, `ahead_count`) of each worktree, side by side (read-only git
        processes, each in its own tree); ahead is None when detached or not countable."""
        merged = self.merged_into(base) if trees else frozenset()

        def counts(wt: Worktree) -> tuple[int, int | None]:
            if not wt.branch:
                return self.dirty_count(wt.path), None
            # a branch merged into base is 0 ahead: no `rev-list --count` for it (one call for all)
            return self.dirty_count(wt.path), 0 if wt.branch in merged else self.ahead_count(wt.branch, base)

        if len(trees) < 2:
            return [counts(wt) for wt in trees]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=GIT_WORKERS) as pool:
            return list(pool.map(counts, trees))

    def merged_into(self, base: str) -> frozenset[str]:
        """Local branches whose tip is reachable from `base`, in one call; empty when base is unknown."""
        try:
            out = self.git.for_each_ref("--format=%(refname)", f"--merged={base}^{{commit}}", "refs/heads/")
        except GitCommandError:
            return frozenset()
        return frozenset(line.removeprefix("refs/heads/") for line in out.splitlines() if line)

    def ahead_count(self, branch: str, base: str) -> int | None:
        """Commits on `branch` that `base` lacks (one git call); None when they cannot be counted
        (either does not exist, a broken repository): unknown, never shown as 0."""
        try:
            return int(self.git.rev_list("--count", f"{base}^{{commit}}..refs/heads/{branch}^{{commit}}", "--"))
        except (GitCommandError, ValueError):
            return None


def _gitdir_file(admin_dir: str) -> str | None:
    """The tree's `.git` path an admin dir's `gitdir` file names (absolute: a relative one, as
    git 2.48's worktree.useRelativePaths writes, is from the admin dir); None if unreadable.
    Read as bytes, decoded as git's output is (gitcmd: surrogates for what is not UTF-8): a
    tree at a path that is not UTF-8 is matched to its listing."""
    try:
        with open(os.path.join(admin_dir, "gitdir"), "rb") as f:
            gitfile = f.read().strip().decode("utf-8", "surrogateescape")
    except OSError:
        return None
    return gitfile if os.path.isabs(gitfile) else os.path.join(admin_dir, gitfile)


def _markers(admin_dir: str) -> tuple[Owner | None, PruneIntent | None, str | None]:
    return read_owner(admin_dir), read_prune_intent(admin_dir), read_scratch(admin_dir)


def _read_marker(admin_dir: str | Path, name: str) -> Any:
    with open(os.path.join(admin_dir, name), "rb") as f:  # json decodes UTF-8 itself: a text-mode open costs more
        return json.loads(f.read())


def read_owner(admin_dir: str | Path) -> Owner | None:
    try:
        data = _read_marker(admin_dir, MARKER)
        return Owner(fleet=data["fleet"], repo=data["repo"], agent=data["agent"], branch=data["branch"],
                     protect=data.get("protect") is True)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_scratch(admin_dir: str | Path) -> str | None:
    """The fleet whose delivery scratch tree this is, from its marker; None for any other tree."""
    try:
        data = _read_marker(admin_dir, SCRATCH_MARKER)
        return str(data["fleet"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_prune_intent(admin_dir: str | Path) -> PruneIntent | None:
    try:
        data = _read_marker(admin_dir, PRUNE_INTENT)
        return PruneIntent(archive=data.get("archive"), commit=data.get("commit"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError):
        return PruneIntent()  # unreadable: a prune began; nothing archived can be relied on


def branch_at_stake(repo: GitRepo, branch: str, base: str, *, refs: RefSnapshot | None = None,
                    extra_safe: Iterable[str] = (), tips: list[str] | None = None,
                    env: Mapping[str, str] | None = None) -> AtStake:
    """What deleting a branch that has no worktree would lose (its reflog included). `tips`,
    `env`: as for `GitRepo.at_stake`."""
    commits = repo.unsafe(branch, None, base, refs=refs, extra_safe=extra_safe, tips=tips, env=env)
    return judge(TreeFacts(commits=tuple(commits), stashes=tuple(repo._stashes_of(branch, refs))))


@dataclass(frozen=True)
class RefSnapshot:
    """Refs read once per observation (`GitRepo.ref_snapshot`)."""

    facts: RefFacts  # what the reachability rule reads
    stash: str  # `git stash list --format=%gd %gs`
    # `GitRepo.with_unmerged`: the commits reachable from any candidate's tips and from none of
    # the anchors every candidate shares (None: not computed), those anchors, the branch tips
    unmerged: frozenset[str] | None = None
    shared: frozenset[str] = frozenset()
    heads: dict[str, str] = field(default_factory=dict)

    def settles(self, branch: str | None, tips: list[str]) -> bool:
        """No commit of `tips` can be at stake: each is reachable from the shared anchors.

        Exact, not a guess: a tip outside `unmerged` is reachable from the shared anchors, and
        so are all its ancestors; a candidate's own anchors are the shared ones plus the
        branches its tree keeps, minus its own branch, which is why a candidate whose branch is
        among the shared anchors is never settled here (its own check decides)."""
        if self.unmerged is None or (branch is not None and ({branch, f"refs/heads/{branch}"} & self.shared)):
            return False
        for tip in tips:
            sha = self.heads.get(tip) if tip.startswith("refs/") else tip
            if sha is None or sha in self.unmerged:
                return False
        return True


class _Resolver:
    """`Path.resolve()` for many paths in few directories (every worktree under one root):
    each directory is resolved once, then only the last component is checked for a
    symlink; a symlink, `.` or `..` there takes the full `Path.resolve()`."""

    def __init__(self) -> None:
        self._dirs: dict[str, str] = {}

    def __call__(self, path: Path | str) -> Path:
        return Path(self.real(path))

    def real(self, path: Path | str) -> str:
        parent, name = os.path.split(os.fspath(path))
        if not os.path.isabs(parent) or name in ("", ".", ".."):
            return os.fspath(Path(path).resolve())
        real = self._dirs.get(parent)
        if real is None:
            real = self._dirs[parent] = os.path.realpath(parent)
        full = os.path.join(real, name)
        return os.fspath(Path(path).resolve()) if os.path.islink(full) else full


def _tree_keys(common_dir: Path, main: Worktree | None, linked: Iterable[Worktree],
               stat: Callable[[str], Key] = stat_key) -> tuple[Key, ...] | None:
    """The stat keys of every file `git worktree list --porcelain` and the markers read for
    this answer (store/memo.py), or None where they cannot all be named (an admin dir not
    found: read afresh every time).

    Per linked tree: its admin dir (HEAD, `locked`, the prune intent and scratch marker are
    replaced or created there, which moves the directory's mtime), the `gitdir` file and the
    ownership marker in it (both may be rewritten in place), the tree's `.git` file (or the
    tree itself when that is gone: "prunable", deleted by hand) and its branch's loose ref.
    Then the `worktrees/` dir (a tree added or removed), the main HEAD and its branch, and
    `packed-refs` or the reftable's table list (a ref packed, or any ref moved)."""
    common = os.fspath(common_dir)
    refs = os.path.join(common, "refs", "heads")
    keys: list[Key] = [stat(os.path.join(common, "worktrees")), stat(os.path.join(common, "HEAD")),
                       *ref_storage_keys(common_dir, stat)]
    # (joined with f-strings, not os.path.join: a tick asks this of every tree, and every path
    # here is absolute and has no trailing slash, so the two give the same string)
    for wt in [*([main] if main is not None else []), *linked]:
        if wt is not main:
            if wt.admin_dir is None:
                return None
            admin = os.fspath(wt.admin_dir)
            keys += [stat(admin), stat(f"{admin}/gitdir"), stat(f"{admin}/{MARKER}")]
        path = os.fspath(wt.path)
        dotgit = stat(f"{path}/.git")
        keys += [dotgit, stat(path) if dotgit is None else None, stat(f"{refs}/{wt.branch}") if wt.branch else None]
    return tuple(keys)


def _parse_porcelain(block: str, resolve: _Resolver | None = None) -> Worktree | None:
    fields: dict[str, str] = {}
    for line in block.strip().splitlines():
        key, _, value = line.partition(" ")
        fields[key] = value
    if "worktree" not in fields or "bare" in fields:
        return None
    branch = fields.get("branch")
    path = (resolve or _Resolver())(fields["worktree"])
    return Worktree(path=path, head=fields.get("HEAD"), branch=branch.removeprefix("refs/heads/") if branch else None,
                    locked="locked" in fields, prunable="prunable" in fields, exists=path.is_dir(),
                    lock_reason=fields.get("locked") or None)


@dataclass(frozen=True)
class FileAtRevision:
    """A file as it was at a revision of the repo that contains it (for `fleet diff --base-rev`)."""

    rev: str
    commit: str  # the full sha `rev` named
    root: Path  # top level of the checkout containing the file
    path: str  # relative to root, '/'-separated
    text: str | None  # None: the file did not exist at that revision
    files: tuple[str, ...]  # every file of that revision's tree, for forEach globs


def file_at_revision(file: Path, rev: str) -> FileAtRevision:
    """Read `file` at `rev` with `git cat-file`; works on a detached HEAD (a CI checkout of a PR)."""
    here = file.resolve().parent
    try:
        top = Git(str(here)).rev_parse("--show-toplevel")
    except (GitCommandError, FileNotFoundError, NotADirectoryError):
        raise FleetError(f"{file} is not inside a git checkout",
                         hint="--base-rev reads the file's history with git; run it in a clone of the repo") from None
    root = Path(top).resolve()
    cmd = Git(str(root))
    try:
        commit = cmd.rev_parse("--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    except GitCommandError:
        shallow = cmd.rev_parse("--is-shallow-repository") == "true"
        raise FleetError(f"unknown revision {rev!r} in {root}",
                         hint="fetch it first, e.g. `git fetch origin main`; in GitHub Actions check out with "
                              "`fetch-depth: 0`" + (" (this clone is shallow)" if shallow else "")) from None
    rel = file.resolve().relative_to(root).as_posix()
    listing = cmd.ls_tree("-r", "-z", "--full-tree", commit, strip_newline_in_stdout=False)
    files: list[str] = []
    for entry in listing.split("\0"):
        meta, _, path = entry.partition("\t")
        if path and meta.split(" ")[1:2] == ["blob"]:
            files.append(path)
    text = None
    if rel in files:
        limit = current_limits().max_bytes  # read no more than the loader would take
        if int(cmd.cat_file("-s", f"{commit}:{rel}")) > limit:
            raise FleetError(f"{rev}:{rel}: larger than the limit of {limit} bytes",
                             hint="a fleet file is a few KiB; raise the limit with --max-file-size BYTES "
                                  "(or FLEET_MAX_FILE_SIZE=BYTES) if it is meant to be this big")
        text = cmd.cat_file("blob", f"{commit}:{rel}", strip_newline_in_stdout=False)
    return FileAtRevision(rev=rev, commit=commit, root=root, path=rel, text=text, files=tuple(files))
