"""The at-stake rules: what pruning a working tree and its branch would lose (docs/safety.md).

Every engine gathers `TreeFacts` its own way (a linked worktree of the local repo:
`GitRepo.at_stake`; a clone on a Ray node: `engines/ray/actor.py`), both through
`observe/gittree.py`, and `judge` alone turns facts into an `AtStake`. Pure: no git, no
processes, no filesystem (the planner imports this module).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

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


def judge(facts: TreeFacts) -> AtStake:
    """What pruning the tree of `facts` and its branch would lose."""
    return AtStake(
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
