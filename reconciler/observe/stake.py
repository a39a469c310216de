"""The at-stake rules: what pruning a working tree and its branch would lose (docs/safety.md).

Every engine gathers `TreeFacts` its own way (a linked worktree of the local repo:
`GitRepo.at_stake`; a clone on a Ray node: `engines/ray/actor.py`), both through
`observe/gittree.py`, and `judge` alone turns facts into an `AtStake`. Pure: no git, no
processes, no filesystem (the planner imports this module).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cached_property

# marker in a git dir (a worktree's admin dir, a clone's .git) -> the operation it means
IN_PROGRESS = {"MERGE_HEAD": "merge", "rebase-merge": "rebase", "rebase-apply": "rebase/am",
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
    # ignored files (not archived, do not block) and those of them `gc.protectIgnored` matches (block)
    ignored: list[str] = field(default_factory=list)
    ignored_bytes: int = 0
    protected_ignored: list[str] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        return not (self.dirty or self.commits or self.stashes or self.in_progress or self.processes
                    or self.locked or self.protected_ignored)

    @property
    def archivable(self) -> bool:
        """--archive can save all of it: files and commits, but not a lock, a live process, or a
        protected ignored file (a secret such as `.env` is never put into git objects)."""
        return not (self.locked or self.processes or self.in_progress or self.nested_repos
                    or self.protected_ignored)

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
        if self.protected_ignored:
            parts.append(f"{len(self.protected_ignored)} protected ignored file(s) (gc.protectIgnored)")
        return ", ".join(parts)

    def ignored_summary(self, shown: int = 5) -> str:
        """"N ignored file(s), SIZE: a, b, ..." (what a prune deletes without archiving), or ""."""
        if not self.ignored:
            return ""
        names = ", ".join(self.ignored[:shown]) + (", ..." if len(self.ignored) > shown else "")
        return f"{len(self.ignored)} ignored file(s), {_size(self.ignored_bytes)}: {names}"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


@dataclass(frozen=True)
class TreeFacts:
    """Raw facts about one working tree and its branch, as gathered (nothing judged yet).

    A tree that is gone has no status, hidden edits, nested repos or processes; a branch
    with no tree at all has only `commits` and `stashes`.
    """

    status: tuple[str, ...] = ()  # paths `git status --porcelain --untracked-files=all` lists
    hidden_edits: tuple[str, ...] = ()  # assume-unchanged / skip-worktree files whose content differs
    nested_repos: tuple[str, ...] = ()  # untracked paths that are git repositories themselves
    # "sha subject": commits only this tree's branch/HEAD hold. Locally: reachable from them but
    # from neither base nor the upstream; in a clone on a node: from HEAD or a branch but from
    # no remote-tracking ref (not pushed). Several sources may name one commit (see judge).
    commits: tuple[str, ...] = ()
    stashes: tuple[str, ...] = ()  # stash entries of this tree's branch (of the whole clone on a node)
    markers: tuple[str, ...] = ()  # IN_PROGRESS markers present in the tree's git dir
    processes: tuple[str, ...] = ()  # "pid cmdline" whose cwd is inside, not of a group fleet stops itself
    locked: bool = False  # `git worktree lock`
    ignored: tuple[tuple[str, int], ...] = ()  # (path, size in bytes) of each ignored file in the tree


DEFAULT_PROTECT_IGNORED = (".env", ".env.*")


def protected(path: str, globs: Iterable[str]) -> bool:
    """`path` (repo-relative, '/'-separated) matches one of `globs`: a glob without '/' is
    matched against every component's name (`.env` anywhere), one with '/' against the path."""
    names = path.split("/")
    for glob in globs:
        if "/" in glob.strip("/"):
            if fnmatchcase(path, glob.strip("/")):
                return True
        elif any(fnmatchcase(name, glob.strip("/")) for name in names):
            return True
    return False


def judge(facts: TreeFacts, *, protect_ignored: Iterable[str] = DEFAULT_PROTECT_IGNORED) -> AtStake:
    """What pruning the tree of `facts` and its branch would lose. Ignored files are listed;
    those `protect_ignored` (gc.protectIgnored) matches block."""
    globs = tuple(protect_ignored)
    return AtStake(
        ignored=[p for p, _ in facts.ignored],
        ignored_bytes=sum(size for _, size in facts.ignored),
        protected_ignored=[p for p, _ in facts.ignored if protected(p, globs)],
        # a hidden edit is an uncommitted file that `git status` does not show
        dirty=[*facts.status, *facts.hidden_edits],
        commits=_distinct_commits(facts.commits),
        stashes=list(facts.stashes),
        in_progress=[op for marker, op in IN_PROGRESS.items() if marker in facts.markers],
        processes=list(facts.processes),
        # each is also in `status` (an untracked directory), so it counts as dirty too
        nested_repos=list(facts.nested_repos),
        locked=facts.locked,
    )


def _distinct_commits(commits: Iterable[str]) -> list[str]:
    """Each commit once. Sources abbreviate shas differently (`%h`, or 7 digits), so two
    lines name one commit when one sha is a prefix of the other; one `git log` never lists
    such a pair (its abbreviations are unambiguous), so a single source passes unchanged."""
    seen: dict[str, list[str]] = {}  # first 7 digits -> the shas seen
    out: list[str] = []
    for line in commits:
        sha = line.split(" ", 1)[0]
        bucket = seen.setdefault(sha[:7], [])
        if any(s.startswith(sha) or sha.startswith(s) for s in bucket):
            continue
        bucket.append(sha)
        out.append(line)
    return out


# -- the reachability rule (docs/safety.md, "Which commits are safe") ------------------------

ARCHIVE_REFS = "refs/fleet/archive/"
# delivery (docs/delivery.md): the agent tip a squash or rebase delivered; its commits are not in the
# target as themselves, and this ref keeps them, so they anchor like an archive's
DELIVERED_REFS = "refs/fleet/delivered/"
NOT_A_REMOTE = ("", ".")  # `git push -u . HEAD`: a "remote" that is this repository itself


@dataclass(frozen=True)
class RefFacts:
    """The refs of one repository as the reachability rule reads them (gathered by
    `gittree.ref_facts`; nothing judged yet)."""

    refs: tuple[str, ...] = ()  # every ref name: refs/heads/..., refs/remotes/..., refs/fleet/archive/...
    remotes: tuple[tuple[str, str], ...] = ()  # (remote name, url); a url of "." or "" is this repo itself
    owned: frozenset[str] = frozenset()  # branch names (without refs/heads/) that some fleet owns
    base_ref: str | None = None  # the full ref name `base` resolves to (None: not a ref, or missing)
    base_commit: str | None = None  # the commit `base` names (None: it does not exist)

    @cached_property
    def ref_set(self) -> frozenset[str]:
        """`refs` as a set: every prune candidate asks whether its branch is a ref (a scan of
        the tuple each time was agents x refs)."""
        return frozenset(self.refs)


def anchors(facts: RefFacts, *, base: str | None, branch: str | None, extra: Iterable[str] = ()) -> list[str]:
    """The refs whose commits are safe when `branch` (and its tree) goes: nothing else.

    A commit is safe only if it is reachable from a ref that the fleet does not own and
    that is not the branch itself: the tip of `base`; a remote-tracking ref of a remote
    that has a URL which is not this repository (`.`); an archive ref; a delivered ref
    (refs/fleet/delivered/, docs/delivery.md); or one of `extra`
    (refs a caller knows stay: a branch the tree has checked out that is kept, a delivery
    target). A branch any fleet owns, and `branch`, never anchor anything, whatever
    names them (a `base` or an extra ref that resolves to one).
    """
    excluded = {f"refs/heads/{b}" for b in facts.owned} | ({f"refs/heads/{branch}"} if branch else set())
    out: list[str] = []
    if base and facts.base_commit and facts.base_ref not in excluded:
        out.append(facts.base_ref or facts.base_commit)
    real = sorted((name for name, url in facts.remotes if url.strip() not in NOT_A_REMOTE), key=len, reverse=True)
    for ref in facts.refs:
        if ref.startswith((ARCHIVE_REFS, DELIVERED_REFS)):
            out.append(ref)
        elif ref.startswith("refs/remotes/") and not ref.endswith("/HEAD"):
            rest = ref[len("refs/remotes/"):]
            if any(rest.startswith(name + "/") for name in real):
                out.append(ref)
    out += [r for r in extra if r and r not in excluded and f"refs/heads/{r}" not in excluded]
    return list(dict.fromkeys(out))


def owned_base(facts: RefFacts, base: str) -> str | None:
    """The owned branch `base` resolves to (a validation error: every commit of that agent
    would count as merged), or None."""
    ref = facts.base_ref or ""
    if ref.startswith("refs/heads/") and ref[len("refs/heads/"):] in facts.owned:
        return ref[len("refs/heads/"):]
    return None


def stake_tips(branch: str | None, head: str | None, reflog: Iterable[str] = ()) -> list[str]:
    """What a prune of `branch` and its tree would drop: the branch tip, the tree's HEAD
    (detached or not) and every commit their reflogs name (a `git reset --hard` leaves the
    commits it dropped only there), each once."""
    tips = [t for t in (f"refs/heads/{branch}" if branch else None, head) if t]
    return list(dict.fromkeys([*tips, *(r for r in reflog if r and r.strip("0"))]))
