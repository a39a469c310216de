"""Creating and pruning agent worktrees (GitPython), with the ownership marker."""
from __future__ import annotations

import json
from pathlib import Path

import git

from ..errors import FleetError
from ..observe.gitrepo import MARKER, GitRepo, Worktree
from ..spec.desired import DesiredAgent
from ..state import now_iso


def ensure_excluded(repo: GitRepo) -> None:
    """List .fleet/ in .git/info/exclude so the main checkout stays clean (never .gitignore)."""
    exclude = repo.common_dir / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if "/.fleet/" not in lines:
        with exclude.open("a") as f:
            f.write(("\n" if lines and lines[-1] else "") + "# fleet state, logs, locks and worktrees\n/.fleet/\n")


def create_worktree(repo: GitRepo, agent: DesiredAgent, *, fleet: str) -> Path:
    """`git worktree add` on the agent's branch and write the ownership marker.

    An existing branch that this fleet owns (its worktree was removed by hand) is
    checked out again rather than recreated, so its commits are kept.
    """
    agent.worktree.parent.mkdir(parents=True, exist_ok=True)
    try:
        if repo.branch_exists(agent.branch):
            repo.git.worktree("add", str(agent.worktree), agent.branch)
        else:
            repo.git.worktree("add", "-b", agent.branch, str(agent.worktree), agent.base)
    except git.GitCommandError as exc:
        raise FleetError(f"cannot create worktree {agent.worktree}: {exc.stderr.strip()}",
                         hint="see `git worktree list`; a directory or branch may be in the way") from None
    admin = _admin_dir(agent.worktree)
    marker = {"fleet": fleet, "repo": str(repo.common_dir), "agent": agent.name, "branch": agent.branch,
              "created": now_iso()}
    (admin / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return agent.worktree


def _admin_dir(path: Path) -> Path:
    """The worktree's git admin dir, from the `gitdir:` line of its .git file."""
    text = (path / ".git").read_text().strip()
    return Path(text.removeprefix("gitdir:").strip()).resolve()


def remove_worktree(repo: GitRepo, wt: Worktree, *, base: str) -> None:
    """Remove a worktree and its branch. The caller has shown nothing is at stake;
    git itself refuses again if the tree became dirty meanwhile (no --force)."""
    stake = repo.at_stake(wt, base)
    if not stake.safe:
        raise FleetError(f"refusing to prune {wt.path}: {stake.summary()}", exit_code=3)
    try:
        if wt.path.is_dir():
            repo.git.worktree("remove", str(wt.path))
        else:
            repo.git.worktree("prune")
        if wt.branch and repo.branch_exists(wt.branch):
            repo.git.branch("-D", wt.branch)
    except git.GitCommandError as exc:
        raise FleetError(f"cannot prune {wt.path}: {exc.stderr.strip()}", exit_code=3) from None
