"""The repo as git sees it: worktrees, ownership markers and what a prune would lose.

Every call here is read-only. Only this module and `act/worktrees.py` talk to git.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import git

from ..errors import FleetError
# plain data (observe/model.py), importable from here as before
from .model import Owner, Worktree

if TYPE_CHECKING:
    from .processes import ProcessTable

GIT_WORKERS = min(8, max(2, os.cpu_count() or 1))  # read-only git processes run side by side (status, prune checks)
MARKER = "fleet-owner.json"  # in the worktree's git admin dir (.git/worktrees/<id>/)
_IN_PROGRESS = {"MERGE_HEAD": "merge", "rebase-merge": "rebase", "rebase-apply": "rebase/am",
                "CHERRY_PICK_HEAD": "cherry-pick", "REVERT_HEAD": "revert", "BISECT_LOG": "bisect"}


@dataclass
class AtStake:
    """Work that would be lost by pruning a worktree and its branch. Empty = safe."""

    dirty: list[str] = field(default_factory=list)  # modified/staged/untracked, not ignored
    commits: list[str] = field(default_factory=list)  # "sha subject", not reachable from base/upstream
    stashes: list[str] = field(default_factory=list)
    in_progress: list[str] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)  # "pid cmdline" with their cwd inside the tree
    nested_repos: list[str] = field(default_factory=list)  # untracked git repos inside: an archive can't hold them
    locked: bool = False

    @property
    def safe(self) -> bool:
        return not (self.dirty or self.commits or self.stashes or self.in_progress or self.processes
                    or self.locked)

    @property
    def archivable(self) -> bool:
        """--archive can save all of it: files and commits, but not a lock or a live process."""
        return not (self.locked or self.processes or self.in_progress or self.nested_repos)

    def summary(self) -> str:
        parts = []
        if self.dirty:
            parts.append(f"{len(self.dirty)} uncommitted file(s)")
        if self.commits:
            parts.append(f"{len(self.commits)} unmerged commit(s)")
        if self.stashes:
            parts.append(f"{len(self.stashes)} stash entr{'y' if len(self.stashes) == 1 else 'ies'}")
        parts += [f"{op} in progress" for op in self.in_progress]
        if self.processes:
            parts.append(f"{len(self.processes)} process(es) running in it")
        if self.nested_repos:
            parts.append(f"{len(self.nested_repos)} nested git repo(s)")
        if self.locked:
            parts.append("worktree is locked")
        return ", ".join(parts)


class GitRepo:
    """Read-only view of one repository (its main worktree is the fleet's home)."""

    def __init__(self, path: Path) -> None:
        try:
            self.repo = git.Repo(path)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise FleetError(f"{path} is not a git repository",
                             hint="set spec.repo to your repository (relative to the fleet file), "
                                  "or run `git init` there") from None
        if self.repo.bare:
            raise FleetError(f"{path} is a bare repository", hint="point spec.repo at a checkout")
        self.git = self.repo.git

    @cached_property
    def common_dir(self) -> Path:
        return Path(self.repo.common_dir).resolve()

    @cached_property
    def _plain_index(self) -> bool:
        """Worktree indexes are where `index_has_no_flags` looks and in the format it reads:
        SHA-1 object ids (no extensions.objectFormat) and no GIT_INDEX_FILE override."""
        try:
            config = (self.common_dir / "config").read_text(errors="replace").lower()
        except OSError:
            return False
        return "objectformat" not in config and "GIT_INDEX_FILE" not in os.environ

    @cached_property
    def root(self) -> Path:
        """The main worktree (where .fleet/ lives)."""
        return self.common_dir.parent

    def ref_exists(self, ref: str) -> bool:
        try:
            self.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}")
        except git.GitCommandError:
            return False
        return True

    def worktrees(self) -> tuple[Worktree | None, list[Worktree]]:
        """The main worktree and the linked ones, with owners read from their admin dirs."""
        resolve = _Resolver()
        admin = self._admin_dirs(resolve)
        blocks = self.git.worktree("list", "--porcelain").split("\n\n")
        main = _parse_porcelain(blocks[0], resolve)
        linked: list[Worktree] = []
        for block in blocks[1:]:
            wt = _parse_porcelain(block, resolve)
            if wt is None:
                continue
            wt.admin_dir = admin.get(wt.path)
            wt.owner = read_owner(wt.admin_dir) if wt.admin_dir else None
            linked.append(wt)
        return main, linked

    def owned_branches(self) -> dict[str, str]:
        """branch -> fleet, from `branch.<name>.fleetOwner` in the repo config."""
        try:
            out = self.git.config("--get-regexp", r"^branch\..*\.fleetowner$")
        except git.GitCommandError:  # exit 1: none set
            return {}
        owned: dict[str, str] = {}
        for line in out.splitlines():
            key, _, fleet = line.partition(" ")
            owned[key[len("branch."):-len(".fleetowner")]] = fleet
        return owned

    def _admin_dirs(self, resolve: _Resolver | None = None) -> dict[Path, Path]:
        """worktree path -> its admin dir, via each admin dir's `gitdir` file."""
        resolve = resolve or _Resolver()
        found: dict[Path, Path] = {}
        base = self.common_dir / "worktrees"
        if not base.is_dir():
            return found
        for admin in base.iterdir():
            try:
                gitfile = Path((admin / "gitdir").read_text().strip())
            except OSError:
                continue
            found[resolve(Path(gitfile).parent)] = admin
        return found

    def at_stake(self, wt: Worktree, base: str, *, ignore_groups: frozenset[int] = frozenset(),
                 refs: RefSnapshot | None = None, table: ProcessTable | None = None) -> AtStake:
        """What pruning `wt` and its branch would lose (docs/safety.md, "What blocks a prune").

        `refs` and `table` (read once by an observation of many candidates) save the git
        and /proc reads otherwise repeated per worktree; without them everything is read
        now, as the last check right before a prune does.
        """
        from .processes import processes_in

        stake = AtStake(locked=wt.locked)
        if wt.path.is_dir():
            stake.processes = processes_in(wt.path, ignore_groups=ignore_groups, table=table)
            tree = git.Git(str(wt.path))
            stake.dirty = _status_paths(tree.status("--porcelain=v1", "-z", "--untracked-files=all"))
            if not (self._plain_index and wt.admin_dir is not None
                    and index_has_no_flags(wt.admin_dir / "index")):
                stake.dirty += _hidden_edits(tree, wt.path)
            stake.nested_repos = [p for p in stake.dirty if (wt.path / p / ".git").exists()]
        if wt.admin_dir is not None:
            stake.in_progress = [op for f, op in _IN_PROGRESS.items() if (wt.admin_dir / f).exists()]
        tips = [t for t in (wt.branch and f"refs/heads/{wt.branch}", wt.head) if t]
        if tips and not (refs is not None and refs.merged_tip(wt.branch, wt.head)):
            stake.commits = self.unreachable(tips, base, upstream=self._upstream(wt.branch))
        if wt.branch:
            stake.stashes = self._stashes_of(wt.branch, refs)
        return stake

    def ref_snapshot(self, base: str) -> RefSnapshot:
        """Branch tips, the branches `base` contains, and the stash list: three git calls that
        answer for every prune candidate at once what `at_stake` otherwise asks per worktree."""
        base_ok = self.ref_exists(base)
        tips: dict[str, str] = {}
        for line in self.git.for_each_ref("--format=%(objectname) %(refname)", "refs/heads/").splitlines():
            sha, _, ref = line.partition(" ")
            tips[ref] = sha
        merged: frozenset[str] = frozenset()
        if base_ok:
            try:
                merged = frozenset(self.git.for_each_ref(f"--merged={base}", "--format=%(refname)",
                                                         "refs/heads/").splitlines())
            except git.GitCommandError:
                pass  # then every candidate takes the full check
        return RefSnapshot(tips=tips, merged=merged, stash=self.git.stash("list", "--format=%gd %gs"))

    def unreachable(self, tips: list[str], base: str, *, upstream: str | None = None) -> list[str]:
        """Commits reachable from `tips` but from neither `base` nor `upstream`."""
        exclude = [f"^{r}" for r in (base, upstream) if r and self.ref_exists(r)]
        tips = [t for t in tips if self.ref_exists(t)]
        if not tips:
            return []
        out = self.git.log("--format=%h %s", *tips, *exclude, "--")
        return [line for line in out.splitlines() if line]

    def _upstream(self, branch: str | None) -> str | None:
        if not branch:
            return None
        try:
            return self.git.rev_parse("--abbrev-ref", f"{branch}@{{upstream}}") or None
        except git.GitCommandError:
            return None

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
        return len(_status_paths(git.Git(str(path)).status("--porcelain=v1", "-z", "--untracked-files=all")))

    def tree_counts(self, trees: list[Worktree], base: str) -> list[tuple[int, int | None]]:
        """(`dirty_count`, `ahead_count` or None when detached) of each worktree, side by side:
        read-only git processes, each in its own tree."""
        def counts(wt: Worktree) -> tuple[int, int | None]:
            return self.dirty_count(wt.path), self.ahead_count(wt.branch, base) if wt.branch else None

        if len(trees) < 2:
            return [counts(wt) for wt in trees]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=GIT_WORKERS) as pool:
            return list(pool.map(counts, trees))

    def ahead_count(self, branch: str, base: str) -> int:
        """Commits on `branch` that `base` lacks; 0 when either does not exist (one git call)."""
        try:
            return int(self.git.rev_list("--count", f"{base}^{{commit}}..refs/heads/{branch}^{{commit}}", "--"))
        except git.GitCommandError:
            return 0


def read_owner(admin_dir: Path) -> Owner | None:
    try:
        data = json.loads((admin_dir / MARKER).read_text())
        return Owner(fleet=data["fleet"], repo=data["repo"], agent=data["agent"], branch=data["branch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def branch_at_stake(repo: GitRepo, branch: str, base: str, *, refs: RefSnapshot | None = None) -> AtStake:
    """What deleting a branch that has no worktree would lose."""
    stake = AtStake()
    if not (refs is not None and refs.merged_tip(branch, None)):
        stake.commits = repo.unreachable([f"refs/heads/{branch}"], base, upstream=repo._upstream(branch))
    stake.stashes = repo._stashes_of(branch, refs)
    return stake


@dataclass(frozen=True)
class RefSnapshot:
    """Refs read once per observation (`GitRepo.ref_snapshot`)."""

    tips: dict[str, str]  # refs/heads/<branch> -> commit
    merged: frozenset[str]  # refs/heads/<branch> whose tip `base` contains (empty: base unknown)
    stash: str  # `git stash list --format=%gd %gs`

    def merged_tip(self, branch: str | None, head: str | None) -> bool:
        """True when the branch (and the worktree's HEAD, if given) holds no commit `base`
        lacks: then nothing can be lost, whatever the upstream, and `git log` need not run."""
        ref = f"refs/heads/{branch}" if branch else None
        if ref is None or ref not in self.merged:
            return False
        return head is None or head == self.tips.get(ref)


class _Resolver:
    """`Path.resolve()` for many paths in few directories (every worktree under one root):
    each directory is resolved once, then only the last component is checked for a
    symlink; a symlink, `.` or `..` there takes the full `Path.resolve()`."""

    def __init__(self) -> None:
        self._dirs: dict[str, str] = {}

    def __call__(self, path: Path | str) -> Path:
        parent, name = os.path.split(os.fspath(path))
        if not os.path.isabs(parent) or name in ("", ".", ".."):
            return Path(path).resolve()
        real = self._dirs.get(parent)
        if real is None:
            real = self._dirs[parent] = os.path.realpath(parent)
        full = os.path.join(real, name)
        return Path(path).resolve() if os.path.islink(full) else Path(full)


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
                    locked="locked" in fields, prunable="prunable" in fields, exists=path.is_dir())


def index_has_no_flags(index: Path) -> bool:
    """True only if the index provably marks no file assume-unchanged or skip-worktree, so
    `_hidden_edits` has nothing to find and its `git ls-files -v` can be skipped.

    Reads the index file (Documentation/gitformat-index.txt): versions 2 and 3, SHA-1,
    no split or sparse index. Anything else, an entry with the assume-valid or extended
    bit, or a file that does not parse exactly: False, and the caller asks git.
    """
    try:
        data = index.read_bytes()
    except OSError:
        return False
    if len(data) < 32 or data[:4] != b"DIRC":
        return False
    version, count = int.from_bytes(data[4:8], "big"), int.from_bytes(data[8:12], "big")
    if version not in (2, 3):
        return False
    pos, end = 12, len(data) - 20  # the trailing SHA-1 checksum
    for _ in range(count):
        if pos + 62 > end:
            return False
        flags = (data[pos + 60] << 8) | data[pos + 61]  # after 40 bytes of stat data and the object id
        if flags & 0xC000:  # assume-valid, or extended flags (skip-worktree, intent-to-add)
            return False
        length = flags & 0x0FFF
        if length == 0x0FFF or data[pos + 62 + length] != 0:  # a very long path, or not where it should end
            return False
        pos += (62 + length + 8) & ~7  # the entry, NUL-padded to a multiple of 8 bytes
    while pos < end:  # extensions: 4-byte signature, 4-byte size; lowercase ones (split/sparse index) refuse
        if pos + 8 > end or not 65 <= data[pos] <= 90:
            return False
        pos += 8 + int.from_bytes(data[pos + 4:pos + 8], "big")
    return pos == end


def _hidden_edits(tree: git.Git, root: Path) -> list[str]:
    """Edits git status does not show: files marked assume-unchanged or skip-worktree
    whose content differs from the index (`git worktree remove` would delete them)."""
    flagged = [line[2:] for line in tree.ls_files("-v").splitlines()
               if line[:1].islower() or line[:1] == "S"]
    changed: list[str] = []
    for path in flagged:
        if not (root / path).is_file():
            continue
        staged = tree.ls_files("-s", "--", path).split()[1]
        if tree.hash_object("--", path) != staged:
            changed.append(path)
    return changed


def _status_paths(status: str) -> list[str]:
    """Paths from `git status --porcelain=v1 -z` (renames carry a second, old path)."""
    paths: list[str] = []
    entries = iter(status.split("\0"))
    for entry in entries:
        if not entry:
            continue
        code, path = entry[:2], entry[3:]
        paths.append(path)
        if code[0] in "RC":
            next(entries, None)
    return paths


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
        top = git.Git(str(here)).rev_parse("--show-toplevel")
    except (git.GitCommandError, FileNotFoundError, NotADirectoryError):
        raise FleetError(f"{file} is not inside a git checkout",
                         hint="--base-rev reads the file's history with git; run it in a clone of the repo") from None
    root = Path(top).resolve()
    cmd = git.Git(str(root))
    try:
        commit = cmd.rev_parse("--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    except git.GitCommandError:
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
        text = cmd.cat_file("blob", f"{commit}:{rel}", strip_newline_in_stdout=False)
    return FileAtRevision(rev=rev, commit=commit, root=root, path=rel, text=text, files=tuple(files))
